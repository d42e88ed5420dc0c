import assert from "node:assert/strict";
import { type EvalRecord, parseDataset } from "../../lib/eval/datasets/mod.ts";
import {
  computeNGramEntropy,
  containsAnswerMatch,
  efficacyMagnitude,
  efficacyScore,
  harmonicMean,
  locality,
  meanNll,
  multiHopAccuracy,
  multiHopCorrect,
  neighborhoodMagnitude,
  neighborhoodScore,
  nGramEntropy,
  normalizeAnswer,
  normalizedAnswerMatch,
  paraphraseMagnitude,
  paraphraseScore,
  type RecordMetrics,
  romeScore,
  roundHalfEven,
  splitSentences,
  summarize,
  teacherForcedAccuracy,
  teacherForcedLabels,
  teacherForcedPredictions,
  tokenAccuracy,
  treebankTokenize,
  wordTokenize,
} from "../../lib/eval/metrics.ts";

// Hand-computed values are checked to 1e-12: the formulas are a handful of float64 operations.
const close = (a: number, b: number, tol = 1e-12) => assert.ok(Math.abs(a - b) <= tol, `${a} != ${b}`);

Deno.test("locality: agreement of pre/post argmax tokens (EasyEdit's example)", () => {
  // [29, 234, 334] vs [29, 234, 333]: 2 of 3 positions agree → 66.67 %
  close(locality([29, 234, 334], [29, 234, 333]), 2 / 3);
  assert.equal(roundHalfEven(locality([29, 234, 334], [29, 234, 333]) * 100, 2), 66.67);
  assert.equal(locality([5], [5]), 1);
  assert.equal(locality(new Int32Array([1, 2]), [3, 4]), 0);
  assert.throws(() => locality([1, 2], [1]), RangeError);
});

Deno.test("token accuracy and the teacher-forced slices of prompt + ' ' + target", () => {
  assert.equal(tokenAccuracy([1, 2, 3, 4], [1, 2, 0, 4]), 0.75);
  assert.ok(Number.isNaN(tokenAccuracy([], [])));
  assert.throws(() => tokenAccuracy([1], [1, 2]), RangeError);
  // sequence of 5 tokens, prompt = first 3: the targets are ids[3], ids[4]; they are predicted by the
  // argmax at positions 2 and 3
  const ids = [10, 11, 12, 13, 14];
  const argmax = [0, 0, 13, 7, 99];
  assert.deepEqual(teacherForcedPredictions(argmax, 3), [13, 7]);
  assert.deepEqual(teacherForcedLabels(ids, 3), [13, 14]);
  assert.equal(teacherForcedAccuracy(argmax, ids, 3), 0.5);
  assert.equal(teacherForcedAccuracy([11, 12, 13, 14, 0], ids, 1), 1); // promptLen 1: all 4 targets right
  assert.throws(() => teacherForcedPredictions(argmax, 0), RangeError);
  assert.throws(() => teacherForcedAccuracy(argmax, ids.slice(1), 2), RangeError);
});

Deno.test("word tokenizer follows NLTK's word_tokenize", () => {
  assert.deepEqual(treebankTokenize(`Hello, world. It's "nice" (really)! Don't go.`), [
    "Hello",
    ",",
    "world.",
    "It",
    "'s",
    "``",
    "nice",
    "''",
    "(",
    "really",
    ")",
    "!",
    "Do",
    "n't",
    "go",
    ".",
  ]);
  assert.deepEqual(treebankTokenize("I cannot believe you're gonna win -- wanna bet?"), [
    "I",
    "can",
    "not",
    "believe",
    "you",
    "'re",
    "gon",
    "na",
    "win",
    "--",
    "wan",
    "na",
    "bet",
    "?",
  ]);
  assert.deepEqual(treebankTokenize("Price: 3,000 for $5 & 50%..."), [
    "Price",
    ":",
    "3,000",
    "for",
    "$",
    "5",
    "&",
    "50",
    "%",
    "...",
  ]);
  // word_tokenize splits sentences first, so the inner "world." loses its period; abbreviations keep theirs
  assert.deepEqual(wordTokenize("Hello world. The U.S. is big. Mr. Smith went."), [
    "Hello",
    "world",
    ".",
    "The",
    "U.S.",
    "is",
    "big",
    ".",
    "Mr.",
    "Smith",
    "went",
    ".",
  ]);
  assert.deepEqual(splitSentences("Is it? Yes!  J. R. R. Tolkien wrote it."), [
    "Is it?",
    "Yes!",
    "J. R. R. Tolkien wrote it.",
  ]);
  assert.deepEqual(wordTokenize(""), []);
});

Deno.test("n-gram entropy: EasyEdit's compute_n_gram_entropy on known strings", () => {
  // "the cat sat on the mat": 6 tokens.
  //   5 bigrams, all distinct → H2 = log2 5 = 2.321928095; 4 trigrams, all distinct → H3 = log2 4 = 2.
  //   mean(2/3·2.321928095, 4/3·2) = (1.547952063 + 2.666666667) / 2 = 2.107309365
  close(computeNGramEntropy("the cat sat on the mat"), (2 / 3 * Math.log2(5) + 4 / 3 * 2) / 2);
  close(computeNGramEntropy("the cat sat on the mat"), 2.107309364962454, 1e-12);
  // "a b a b a": bigrams ab×2, ba×2 → H2 = 1; trigrams aba×2, bab×1 → H3 = −(2/3·log2 2/3 + 1/3·log2 1/3)
  //   = 0.918295834; mean(2/3·1, 4/3·0.918295834) = (0.666666667 + 1.224394445) / 2 = 0.945530556
  close(computeNGramEntropy("a b a b a"), 0.9455305560363263);
  // "Hello, world! Hello, world!" → Hello , world ! Hello , world ! (8 tokens)
  //   bigrams (7): (Hello ,)×2 (, world)×2 (world !)×2 (! Hello)×1 → H2 = 3·2/7·log2(7/2) + 1/7·log2 7
  //   = 1.950212064; trigrams (6): ×2, ×2, ×1, ×1 → H3 = 2·1/3·log2 3 + 2·1/6·log2 6 = 1.918295834
  //   mean(2/3·H2, 4/3·H3) = (1.300141376 + 2.557727779) / 2 = 1.928934578
  const h2 = 6 / 7 * Math.log2(7 / 2) + Math.log2(7) / 7, h3 = 2 / 3 * Math.log2(3) + Math.log2(6) / 3;
  close(computeNGramEntropy("Hello, world! Hello, world!"), (2 / 3 * h2 + 4 / 3 * h3) / 2);
  close(computeNGramEntropy("Hello, world! Hello, world!"), 1.9289345776745752);
  // a single repeated token has no uncertainty; fewer tokens than n gives 0 for that n
  assert.equal(computeNGramEntropy("a a a a"), 0);
  assert.equal(computeNGramEntropy("one"), 0);
  // "a b c": bigrams ab, bc → H2 = 1; one trigram → H3 = 0 → (2/3·1 + 0) / 2 = 1/3
  close(computeNGramEntropy("a b c"), 1 / 3);
  // the corpus value is the mean over texts
  close(nGramEntropy(["the cat sat on the mat", "a b a b a"]), (2.107309364962454 + 0.9455305560363263) / 2);
  assert.ok(Number.isNaN(nGramEntropy([])));
  // geometric aggregation: gmean(2/3·1, 4/3·0.918…) for "a b a b a"; 0 as soon as one term is 0
  close(computeNGramEntropy("a b a b a", { agg: "geom" }), Math.sqrt(2 / 3 * 4 / 3 * 0.9182958340544896));
  assert.equal(computeNGramEntropy("a b c", { agg: "geom" }), 0);
});

Deno.test("ROME metrics from mean per-token NLLs: ES/EM, PS/PM, NS/NM and S", () => {
  close(meanNll([-1, -2, -3]), 2);
  assert.throws(() => meanNll([]), RangeError);
  const rewrite = [{ targetNew: 1, targetTrue: 2 }];
  assert.equal(efficacyScore(rewrite), 1);
  close(efficacyMagnitude(rewrite), Math.exp(-1) - Math.exp(-2)); // 0.367879 − 0.135335 = 0.232544
  const para = [{ targetNew: 0.5, targetTrue: 0.4 }, { targetNew: 1, targetTrue: 3 }];
  assert.equal(paraphraseScore(para), 0.5);
  // ((0.606531 − 0.670320) + (0.367879 − 0.049787)) / 2 = 0.127151
  close(paraphraseMagnitude(para), 0.12715149324028624, 1e-15);
  // neighborhood: the true target must stay likelier; a tie counts as failure (strict <)
  const neigh = [{ targetNew: 2, targetTrue: 1 }, { targetNew: 1, targetTrue: 1 }];
  assert.equal(neighborhoodScore(neigh), 0.5);
  close(neighborhoodMagnitude(neigh), (Math.exp(-1) - Math.exp(-2)) / 2);
  assert.equal(efficacyScore([{ targetNew: 1, targetTrue: 1 }]), 0); // tie: not a success either
  assert.ok(Number.isNaN(efficacyScore([])));
  // S = hmean(1, 0.5, 0.5) = 3 / (1 + 2 + 2) = 0.6
  close(romeScore(1, paraphraseScore(para), neighborhoodScore(neigh)), 0.6);
});

Deno.test("harmonic mean: zeros, empties, negatives", () => {
  close(harmonicMean([1, 2, 4]), 3 / (1 + 1 / 2 + 1 / 4));
  assert.equal(harmonicMean([0.9, 0, 0.8]), 0);
  assert.equal(harmonicMean([0.5]), 0.5);
  assert.ok(Number.isNaN(harmonicMean([])));
  assert.ok(Number.isNaN(harmonicMean([1, NaN])));
  assert.throws(() => harmonicMean([1, -1]), RangeError);
});

Deno.test("roundHalfEven matches np.around", () => {
  assert.equal(roundHalfEven(0.125, 2), 0.12);
  assert.equal(roundHalfEven(0.375, 2), 0.38);
  assert.equal(roundHalfEven(-0.125, 2), -0.12);
  assert.equal(roundHalfEven(2.5, 0), 2);
  assert.equal(roundHalfEven(3.5, 0), 4);
  assert.equal(roundHalfEven(0.135, 2), 0.14); // 0.135 is 0.13500000000000000888 in binary
  assert.equal(roundHalfEven(1.005, 2), 1); // 1.005 is 1.00499999999999989342
  assert.ok(Number.isNaN(roundHalfEven(NaN, 2)));
});

Deno.test("summarize: EasyEdit's and ROME's layouts", () => {
  const records: RecordMetrics[] = [
    {
      caseId: 0,
      time: 2,
      pre: {
        rewriteAcc: [0],
        rephraseAcc: [0.5],
        rewritePromptsProbs: [{ targetNew: 3, targetTrue: 1 }],
        paraphrasePromptsProbs: [{ targetNew: 2, targetTrue: 1 }, { targetNew: 1, targetTrue: 2 }],
        neighborhoodPromptsProbs: [{ targetNew: 3, targetTrue: 1 }],
        ngramEntropy: 5,
      },
      post: {
        rewriteAcc: [1],
        rephraseAcc: [1],
        locality: { neighborhood: [2 / 3] },
        portability: { reasoning: [0.5, 1] },
        rewritePromptsProbs: [{ targetNew: 0.5, targetTrue: 2 }],
        paraphrasePromptsProbs: [{ targetNew: 1, targetTrue: 2 }, { targetNew: 1, targetTrue: 0.5 }],
        neighborhoodPromptsProbs: [{ targetNew: 3, targetTrue: 1 }],
        ngramEntropy: 6,
        multiHopCorrect: true,
      },
    },
    {
      caseId: 1,
      time: 4,
      pre: {
        rewriteAcc: [0],
        rephraseAcc: [0],
        rewritePromptsProbs: [{ targetNew: 2, targetTrue: 1 }],
        paraphrasePromptsProbs: [{ targetNew: 2, targetTrue: 1 }],
        neighborhoodPromptsProbs: [{ targetNew: 2, targetTrue: 1 }],
      },
      post: {
        rewriteAcc: [0.5],
        rephraseAcc: [0],
        locality: { neighborhood: [1, 0] },
        rewritePromptsProbs: [{ targetNew: 1, targetTrue: 1 }],
        paraphrasePromptsProbs: [{ targetNew: 0.2, targetTrue: 1 }],
        neighborhoodPromptsProbs: [{ targetNew: 0.5, targetTrue: 1 }],
        multiHopCorrect: false,
      },
    },
  ];
  const s = summarize(records);
  assert.equal(s.num_cases, 2);
  assert.deepEqual(s.easyedit.pre, { rewrite_acc: 0, rephrase_acc: 0.25, fluency: 5 });
  // locality: mean over records of each record's mean: (2/3 + (1+0)/2) / 2; portability only in record 0
  assert.deepEqual(s.easyedit.post, {
    rewrite_acc: 0.75,
    rephrase_acc: 0.5,
    locality: { neighborhood_acc: (2 / 3 + 0.5) / 2 },
    portability: { reasoning_acc: 0.75 },
    fluency: 6,
    multi_hop_acc: 0.5,
  });
  const nan = (v: [number, number]) => [v[0], Number.isNaN(v[1]) ? "nan" : v[1]];
  // ROME: per record success / diff, then (mean, std)×100 rounded to 2 decimals. By hand, e.g.
  //   pre_rewrite_diff: e^−3 − e^−1 = −0.318092, e^−2 − e^−1 = −0.232544 → mean −0.275318, std 0.042774
  //   post_paraphrase_success: record 0 [2>1 ✓, 0.5>1 ✗] = 0.5, record 1 [1>0.2 ✓] = 1 → 75 ± 25
  //   post_score = hmean(0.5, 0.75, 0.5) = 3 / (2 + 4/3 + 2) = 0.5625; pre_score = hmean(0, …) = 0
  //   (the diffs were also checked against numpy's mean/std/around on the same numbers)
  assert.deepEqual(Object.fromEntries(Object.entries(s.rome).map(([k, v]) => [k, nan(v)])), {
    post_neighborhood_diff: [3.97, 27.84],
    post_neighborhood_success: [50, 50],
    post_ngram_entropy: [600, 0],
    post_paraphrase_diff: [22.39, 22.7],
    post_paraphrase_success: [75, 25],
    post_rewrite_diff: [23.56, 23.56],
    post_rewrite_success: [50, 50],
    post_score: [56.25, "nan"],
    pre_neighborhood_diff: [27.53, 4.28],
    pre_neighborhood_success: [100, 0],
    pre_ngram_entropy: [500, 0],
    pre_paraphrase_diff: [-11.63, 11.63],
    pre_paraphrase_success: [25, 25],
    pre_rewrite_diff: [-27.53, 4.28],
    pre_rewrite_success: [0, 0],
    pre_score: [0, "nan"],
    time: [3, 1],
  });
  // zsRE-style accuracies feed S when there are no NLL comparisons
  const z = summarize([{
    caseId: 0,
    post: {
      rewritePromptsCorrect: [1, 0],
      paraphrasePromptsCorrect: [1],
      neighborhoodPromptsCorrect: [1, 1],
    },
  }]);
  assert.deepEqual(z.rome.post_score[0], roundHalfEven(harmonicMean([0.5, 1, 1]) * 100, 2));
  assert.deepEqual(summarize([]), { num_cases: 0, easyedit: { pre: {}, post: {} }, rome: {} });
});

Deno.test("MQuAKE multi-hop accuracy: any question's answer matching the new answer or an alias", async () => {
  const recs: EvalRecord[] = parseDataset(
    [0, 1, 2].map((i) => ({
      case_id: i,
      requested_rewrite: [{
        prompt: "{} was performed by",
        subject: "Hey Jude",
        target_new: { str: "Madonna" },
        target_true: { str: "The Beatles" },
      }],
      questions: ["q1", "q2", "q3"],
      answer: "English",
      answer_alias: ["English language"],
      new_answer: "Arabic",
      new_answer_alias: ["ar", "Arabic language"],
    })),
    "mquake.json",
  );
  const mh = recs[0].multiHop!;
  assert.equal(multiHopCorrect(mh, ["French", " Arabic language "]), true);
  assert.equal(multiHopCorrect(mh, ["arabic"]), false); // MQuAKE's match is exact
  assert.equal(multiHopCorrect(mh, ["arabic"], { match: normalizedAnswerMatch }), true);
  assert.equal(multiHopCorrect(mh, ["English"], { target: "original" }), true);
  assert.equal(multiHopCorrect(mh, ["The answer is Arabic."], { match: containsAnswerMatch }), true);
  assert.equal(normalizeAnswer("The  Beatles!"), "beatles");

  // case 0 answers the second question right, case 1 none, case 2 the first; asking stops at a match
  const asked: string[] = [];
  const answers: Record<string, string> = { "0:q2": "Arabic language", "2:q1": "Arabic" };
  const res = await multiHopAccuracy(recs, (q, r) => {
    asked.push(`${r.caseId}:${q}`);
    return Promise.resolve(answers[`${r.caseId}:${q}`] ?? "English");
  });
  assert.deepEqual(res.correct, [true, false, true]);
  close(res.accuracy, 2 / 3);
  assert.deepEqual(asked, ["0:q1", "0:q2", "1:q1", "1:q2", "1:q3", "2:q1"]);
  await assert.rejects(
    multiHopAccuracy(
      parseDataset([{
        src: "x?",
        subject: "x",
        alt: "a",
        answers: ["b"],
        rephrase: "x",
        loc: "nq question: y",
        loc_ans: "z",
      }]),
      () => "",
    ),
    RangeError,
  );
});
