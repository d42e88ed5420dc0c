import assert from "node:assert/strict";
import {
  DatasetError,
  type DatasetFormat,
  detectFormat,
  type EvalRecord,
  fillTemplate,
  loadDataset,
  parseDataset,
} from "../../lib/eval/datasets/mod.ts";
import { sharedPath } from "../_util.ts";

const DS = "data/datasets/";

/** Every normalised record must be self-consistent whatever its format. */
function checkInvariants(recs: EvalRecord[], format: DatasetFormat): void {
  for (const r of recs) {
    assert.equal(r.format, format);
    assert.equal(r.request.prompt.split("{}").length, 2, `case ${r.caseId}: one "{}" in ${r.request.prompt}`);
    assert.ok(
      r.request.subject.trim() && r.request.targetNew.trim(),
      `case ${r.caseId}: empty subject/target`,
    );
    for (const l of [...r.localityPrompts, ...r.portability]) {
      assert.ok(l.prompt.trim() && l.groundTruth.trim() && l.key);
    }
  }
}

/** Loads `rel` under ../shared; null (skip) when missing locally. */
async function loadShared(rel: string, format?: DatasetFormat): Promise<[EvalRecord[], unknown[]] | null> {
  const p = sharedPath(DS + rel);
  if (!p) return null;
  const raw = JSON.parse(await Deno.readTextFile(p)) as unknown[];
  const recs = await loadDataset(p); // auto-detected
  if (format) assert.equal(detectFormat(raw, p), format);
  return [recs, raw];
}

Deno.test("EasyEdit flat CounterFact: the three shared splits load with the README's counts", async () => {
  for (
    const [file, n] of [["counterfact-edit.json", 7500], ["counterfact-train.json", 7500], [
      "counterfact-val.json",
      1439,
    ]] as const
  ) {
    const got = await loadShared(`counterfact-easyedit/${file}`, "counterfact-easyedit");
    if (!got) return;
    const [recs, raw] = got;
    assert.equal(recs.length, n, file);
    checkInvariants(recs, "counterfact-easyedit");
    // the template filled with the subject gives back the file's prompt, for every record (one subject
    // is "Joey BadA$$": String.replace would turn "$$" into "$", fillTemplate does not)
    recs.forEach((r, i) => {
      const src = raw[i] as Record<string, string>;
      assert.equal(fillTemplate(r.request.prompt, r.request.subject), src.prompt);
      assert.equal(r.caseId, src.case_id);
    });
  }
  const [recs] = (await loadShared("counterfact-easyedit/counterfact-val.json"))!;
  assert.deepEqual(recs.at(-1), {
    caseId: 21910,
    format: "counterfact-easyedit",
    request: {
      prompt: "{} performs on the",
      subject: "Gamal Abdel-Rahim",
      targetNew: "guitar",
      groundTruth: "piano",
    },
    rephrasePrompts: ["Gamal Abdel-Rahim is known for"],
    localityPrompts: [{
      prompt: "Götz Alsmann, performing on the",
      groundTruth: "piano",
      key: "neighborhood",
    }],
    neighborhoodPrompts: ["Götz Alsmann, performing on the"],
    attributePrompts: [],
    generationPrompts: [],
    portability: [],
  });
});

Deno.test("ROME CounterFact: 375 records, prompts and targets mapped", async () => {
  const got = await loadShared("counterfact-rome/counterfact.json", "counterfact-rome");
  if (!got) return;
  const [recs] = got;
  assert.equal(recs.length, 375);
  checkInvariants(recs, "counterfact-rome");
  const r = recs[0];
  assert.equal(r.caseId, 20952);
  assert.deepEqual(r.request, {
    prompt: "{} is located in",
    subject: "Angola",
    targetNew: "Antarctica",
    groundTruth: "Africa",
  });
  assert.equal(r.rephrasePrompts.length, 2);
  assert.equal(r.neighborhoodPrompts.length, 10);
  assert.equal(r.attributePrompts[0], "Australian Antarctic Territory is located in");
  assert.equal(r.generationPrompts.length, 10);
  assert.deepEqual(r.localityPrompts[0], {
    prompt: "South Africa is a part of the continent of",
    groundTruth: "Africa",
    key: "neighborhood",
  });
  const last = recs.at(-1)!;
  assert.equal(last.caseId, 13382);
  assert.deepEqual(last.request, {
    prompt: "{} is produced by",
    subject: "Cadillac V-12",
    targetNew: "Apple",
    groundTruth: "Cadillac",
  });
});

Deno.test("ZsRE (MEND): 750 records load as 749 (EasyEdit skips the empty alt at index 394)", async () => {
  const got = await loadShared("zsre-mend/zsre_mend_train-1k.json", "zsre");
  if (!got) return;
  const [recs, raw] = got;
  assert.equal(raw.length, 750);
  assert.equal(recs.length, 749);
  checkInvariants(recs, "zsre");
  assert.equal(recs.findIndex((r) => r.caseId === 394), -1);
  assert.equal(recs[394].caseId, 395); // ids stay the file index
  assert.deepEqual(recs[0].request, {
    prompt: "What is the name of the constellation which {} belongs?",
    subject: "Delta Serpentis",
    targetNew: "Virgo",
    groundTruth: "Serpens",
  });
  assert.deepEqual(recs[0].localityPrompts, [{
    prompt: "nq question: subjects transferred from state list to concurrent list",
    groundTruth: "Education",
    key: "neighborhood",
  }]);
  assert.deepEqual(recs[394].request.groundTruth, "Dill Records"); // answers[0], not pred
});

Deno.test("MQuAKE: 322 cases, four rewrites each, multi-hop fields", async () => {
  const got = await loadShared("mquake-hard/MQuAKE-hard.json", "mquake");
  if (!got) return;
  const [recs] = got;
  assert.equal(recs.length, 322);
  checkInvariants(recs, "mquake");
  for (const r of recs) {
    assert.equal(r.multiHop!.requests.length, 4);
    assert.equal(r.multiHop!.requests[0], r.request);
    assert.equal(r.multiHop!.questions.length, 3);
    assert.equal(r.portability.length, 3);
    assert.equal(r.multiHop!.singleHops.length, 4);
    assert.equal(r.multiHop!.newSingleHops.length, 4);
  }
  const r = recs[0];
  assert.equal(r.caseId, 7417);
  assert.deepEqual(r.request, {
    prompt: "{} was performed by",
    subject: "Hey Jude",
    targetNew: "Madonna",
    groundTruth: "The Beatles",
  });
  assert.deepEqual(r.rephrasePrompts, ["Who performed Hey Jude?"]);
  assert.equal(r.multiHop!.newAnswer, "Arabic");
  assert.deepEqual(r.multiHop!.newAnswerAliases, ["ar", "Arabian language", "Arabic language"]);
  assert.equal(r.multiHop!.answer, "English");
  assert.deepEqual(r.multiHop!.newSingleHops[1], {
    question: "Who is the director of Madonna?",
    cloze: "The director of Madonna is",
    answer: "Narendra Modi",
    answerAliases: [
      "Modi",
      "Modi Ji",
      "Modiji",
      "NaMo",
      "Narendra Bhai",
      "Narendra Damodardas Modi",
      "Narendrabhai",
      "Narendrabhai Damodardas Modi",
    ],
  });
  assert.deepEqual(r.portability[0].groundTruth, "Arabic");
  const last = recs.at(-1)!;
  assert.equal(last.caseId, 9213);
  assert.deepEqual(last.multiHop!.requests[3], {
    prompt: "The capital of {} is",
    subject: "Italy",
    targetNew: "Duluth",
    groundTruth: "Rome",
  });
});

Deno.test("limit takes the first N records; known_1000 is refused by name", async () => {
  const p = sharedPath(DS + "counterfact-rome/counterfact.json");
  if (!p) return;
  const recs = await loadDataset(p, { limit: 3 });
  assert.deepEqual(recs.map((r) => r.caseId), (await loadDataset(p)).slice(0, 3).map((r) => r.caseId));
  assert.equal((await loadDataset(p, { limit: 0 })).length, 0);
  const k = sharedPath(DS + "known_1000/known_1000.json");
  if (!k) return;
  await assert.rejects(
    loadDataset(k),
    (e: unknown) => e instanceof DatasetError && /known_1000/.test(e.message),
  );
  // a forced wrong format fails on the first record, naming the field it looked for
  await assert.rejects(
    loadDataset(p, { format: "zsre" }),
    (e: unknown) => e instanceof DatasetError && e.index === 0 && e.field === "subject",
  );
});

// ------------------------------------------------------------------------------------------------------
// malformed records: the FIRST bad record is named by file, index and field

const flat = (o: Record<string, unknown> = {}) => ({
  case_id: 1,
  prompt: "The mother tongue of Danielle Darrieux is",
  subject: "Danielle Darrieux",
  target_new: "English",
  ground_truth: "French",
  rephrase_prompt: "Where Danielle Darrieux is from, people speak the language of",
  locality_prompt: "Michel Rocard is a native speaker of",
  locality_ground_truth: "French",
  ...o,
});
const rome = (rw: Record<string, unknown> = {}, o: Record<string, unknown> = {}) => ({
  case_id: 7,
  requested_rewrite: {
    prompt: "{} is located in",
    subject: "Angola",
    target_new: { str: "Antarctica", id: "Q51" },
    target_true: { str: "Africa", id: "Q15" },
    ...rw,
  },
  paraphrase_prompts: ["Angola belongs to the continent of"],
  neighborhood_prompts: ["Ghana is in"],
  attribute_prompts: [],
  generation_prompts: ["Angola's surroundings include"],
  ...o,
});
const zsre = (o: Record<string, unknown> = {}) => ({
  subject: "WEFS",
  src: "When was WEFS established?",
  rephrase: "When has WEFS been established?",
  alt: "1997",
  answers: ["1987"],
  loc: "nq question: who voiced gaston in beauty and the beast 1991",
  loc_ans: "Richard White",
  ...o,
});
const mquake = (o: Record<string, unknown> = {}) => ({
  case_id: 3,
  requested_rewrite: [rome().requested_rewrite, {
    prompt: "The official language of {} is",
    subject: "Antarctica",
    target_new: { str: "Arabic" },
    target_true: { str: "English" },
    question: "What is the official language of Antarctica?",
  }],
  questions: ["What is the official language of the continent of Angola?"],
  answer: "French",
  answer_alias: [],
  new_answer: "Arabic",
  new_answer_alias: ["Arabic language"],
  ...o,
});
const knowedit = (o: Record<string, unknown> = {}) => ({
  subject: "Frederic Piesch",
  prompt: "The name of the position held by Frederic Piesch is",
  target_new: "Archbishop of León, Mexico",
  ground_truth: "mayor of Vienna",
  ...o,
});

function expectError(
  data: unknown[],
  format: DatasetFormat,
  index: number,
  field: string | null,
  reason?: RegExp,
) {
  assert.throws(
    () => parseDataset(data, "bad.json", { format }),
    (e: unknown) => {
      assert.ok(e instanceof DatasetError, String(e));
      assert.equal(e.file, "bad.json");
      assert.equal(e.index, index, e.message);
      assert.equal(e.field, field, e.message);
      if (reason) assert.match(e.reason, reason);
      assert.match(e.message, new RegExp(`^bad\\.json: record ${index}`));
      return true;
    },
  );
}

Deno.test("malformed EasyEdit CounterFact records name file, index and field", () => {
  // the first bad record wins: index 1 is bad, index 2 is bad too
  expectError(
    [flat(), flat({ target_new: "" }), flat({ prompt: 3 })],
    "counterfact-easyedit",
    1,
    "target_new",
    /empty/,
  );
  const { rephrase_prompt: _, ...noRephrase } = flat();
  expectError([flat(), noRephrase], "counterfact-easyedit", 1, "rephrase_prompt", /missing/);
  expectError(
    [flat({ ground_truth: ["French"] })],
    "counterfact-easyedit",
    0,
    "ground_truth",
    /expected a string, got an array/,
  );
  expectError(
    [flat(), flat(), flat({ subject: "Catherine Deneuve" })],
    "counterfact-easyedit",
    2,
    "subject",
    /does not occur/,
  );
  expectError([flat(), 42], "counterfact-easyedit", 1, null, /expected an object/);
  expectError([flat({ case_id: "x" })], "counterfact-easyedit", 0, "case_id");
  expectError(
    [flat({ prompt: "{} and {} speak", subject: "x" })],
    "counterfact-easyedit",
    0,
    "prompt",
    /2 "\{\}"/,
  );
});

Deno.test("malformed ROME CounterFact records name nested fields", () => {
  expectError(
    [rome(), rome({ target_new: { str: " " } })],
    "counterfact-rome",
    1,
    "requested_rewrite.target_new.str",
    /empty/,
  );
  expectError(
    [rome({ prompt: "Angola is located in" })],
    "counterfact-rome",
    0,
    "requested_rewrite.prompt",
    /exactly one/,
  );
  expectError(
    [rome({ target_true: "Africa" })],
    "counterfact-rome",
    0,
    "requested_rewrite.target_true",
    /object/,
  );
  expectError(
    [rome({}, { paraphrase_prompts: ["ok", 5] })],
    "counterfact-rome",
    0,
    "paraphrase_prompts[1]",
    /string/,
  );
  expectError([rome({}, { neighborhood_prompts: undefined })], "counterfact-rome", 0, "neighborhood_prompts");
  const { requested_rewrite: _, ...noRw } = rome();
  expectError([rome(), noRw], "counterfact-rome", 1, "requested_rewrite", /missing/);
});

Deno.test("malformed ZsRE and MQuAKE records", () => {
  expectError([zsre(), zsre({ subject: "KEXP" })], "zsre", 1, "subject", /does not occur/);
  expectError([zsre({ answers: [] })], "zsre", 0, "answers", /empty array/);
  expectError([zsre({ loc: "who voiced gaston" })], "zsre", 0, "loc", /nq question/);
  expectError([zsre({ alt: " " })], "zsre", 0, "alt", /empty/); // only exactly "" is skipped
  assert.deepEqual(parseDataset([zsre({ alt: "" }), zsre()], "z.json").map((r) => r.caseId), [1]);
  expectError([mquake(), mquake({ requested_rewrite: [] })], "mquake", 1, "requested_rewrite", /empty/);
  const bad = mquake();
  (bad.requested_rewrite[1] as Record<string, unknown>).target_new = { str: "" };
  expectError([bad], "mquake", 0, "requested_rewrite[1].target_new.str", /empty/);
  expectError([mquake({ new_answer_alias: "Arabic language" })], "mquake", 0, "new_answer_alias", /array/);
  expectError(
    [mquake({ single_hops: [{ question: "q", cloze: "c", answer: "a" }] })],
    "mquake",
    0,
    "single_hops[0].answer_alias",
  );
});

Deno.test("file-level errors: not an array, empty, unknown keys, unreadable, invalid JSON", async () => {
  assert.throws(
    () => parseDataset({ a: 1 }, "x.json"),
    (e: unknown) => e instanceof DatasetError && e.index === null,
  );
  assert.throws(() => parseDataset([], "x.json"), /no records/);
  assert.throws(() => parseDataset([{ foo: 1 }], "x.json"), /unknown dataset format \(keys: foo\)/);
  const dir = await Deno.makeTempDir();
  try {
    const bad = `${dir}/bad.json`;
    await Deno.writeTextFile(bad, JSON.stringify([flat(), flat({ locality_ground_truth: null })]));
    await assert.rejects(loadDataset(bad), (e: unknown) => {
      assert.ok(e instanceof DatasetError);
      assert.equal(e.message, `${bad}: record 1, field "locality_ground_truth": expected a string, got null`);
      return true;
    });
    await Deno.writeTextFile(`${dir}/trunc.json`, "[{");
    await assert.rejects(loadDataset(`${dir}/trunc.json`), /invalid JSON/);
    await assert.rejects(
      loadDataset(`${dir}/missing.json`),
      (e: unknown) => e instanceof DatasetError && /cannot read/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("auto-detection picks each format from the first record", () => {
  assert.equal(detectFormat([flat()]), "counterfact-easyedit");
  assert.equal(detectFormat([rome()]), "counterfact-rome");
  assert.equal(detectFormat([zsre()]), "zsre");
  assert.equal(detectFormat([mquake()]), "mquake");
  assert.equal(detectFormat([knowedit()]), "knowedit");
  assert.equal(detectFormat([{ concept: "c", text: "about c", labels: "l" }]), "knowedit");
});

// ------------------------------------------------------------------------------------------------------
// KnowEdit: no sample in ../shared, so a small inline fixture in the shapes KnowEdit.md documents

const KNOWEDIT_FIXTURE = [
  // wiki_counterfact style: string answers
  knowedit({
    portability: {
      Subject_Aliasing: [{
        prompt: "The name of the position held by Frederic of Pieschen is",
        ground_truth: "Archbishop of León, Mexico",
      }],
    },
    locality: {
      Relation_Specificity: [{ prompt: "The gender of Frederic Piesch is", ground_truth: "male" }],
      Forgetfulness: [{
        prompt: "The position held by Frederic Piesch, besides the new one, is",
        ground_truth: "mayor of Vienna",
      }],
    },
  }),
  // wiki_recent style: no ground_truth, alias lists, a blank answer EasyEdit drops
  {
    subject: "Leo Arons",
    prompt: "The place of death of Leo Arons is",
    target_new: "Berlin",
    portability: {
      Reasoning: [
        {
          prompt: "The continent of the place of death of Leo Arons is",
          ground_truth: [["Europe", "European continent"]],
        },
        { prompt: "An unanswerable question about Leo Arons is", ground_truth: [[" "]] },
      ],
      Logical_Generalization: [{ prompt: "Is Leo Arons still alive?", ground_truth: [["no"], ["false"]] }],
    },
    locality: {
      Relation_Specificity: [{
        prompt: "The field of work of Leo Arons is",
        ground_truth: [["experimental physics"]],
      }],
    },
  },
  // ZsRE style: list ground_truth, rephrase_prompt
  {
    subject: "Epaspidoceras",
    target_new: "Noctuidae",
    prompt: "Which family does Epaspidoceras belong to?",
    ground_truth: ["Aspidoceratidae"],
    rephrase_prompt: "What family are Epaspidoceras?",
    locality: {
      Relation_Specificity: [{ prompt: "The taxon rank of Epaspidoceras is", ground_truth: ["genus"] }],
    },
    portability: {
      Reasoning: [{
        prompt: "The common name of the family Epaspidoceras belongs to is",
        ground_truth: "Owlet moths",
      }],
    },
  },
];

Deno.test("KnowEdit (inline fixture): nested answers, null ground truth, categories as keys", () => {
  const recs = parseDataset(KNOWEDIT_FIXTURE, "knowedit.json");
  assert.equal(recs.length, 3);
  checkInvariants(recs, "knowedit");
  assert.deepEqual(recs[0].request, {
    prompt: "The name of the position held by {} is",
    subject: "Frederic Piesch",
    targetNew: "Archbishop of León, Mexico",
    groundTruth: "mayor of Vienna",
  });
  assert.deepEqual(recs[0].localityPrompts.map((l) => [l.key, l.groundTruth]), [
    ["Relation_Specificity", "male"],
    ["Forgetfulness", "mayor of Vienna"],
  ]);
  assert.deepEqual(recs[0].portability.map((l) => l.key), ["Subject_Aliasing"]);
  assert.equal(recs[1].request.groundTruth, null);
  assert.deepEqual(recs[1].portability, [
    {
      prompt: "The continent of the place of death of Leo Arons is",
      groundTruth: "Europe",
      key: "reasoning",
    },
    { prompt: "Is Leo Arons still alive?", groundTruth: "no", key: "Logical_Generalization" },
  ]);
  assert.deepEqual(recs[1].localityPrompts[0].groundTruth, "experimental physics");
  assert.equal(recs[2].request.groundTruth, "Aspidoceratidae");
  assert.deepEqual(recs[2].rephrasePrompts, ["What family are Epaspidoceras?"]);
  assert.deepEqual(recs.map((r) => r.caseId), [0, 1, 2]);

  expectError([knowedit(), knowedit({ target_new: "" })], "knowedit", 1, "target_new", /empty/);
  expectError([knowedit({ subject: "Piesch, Frederic" })], "knowedit", 0, "subject", /does not occur/);
  expectError(
    [knowedit({ locality: { Forgetfulness: [{ prompt: "p" }] } })],
    "knowedit",
    0,
    "locality.Forgetfulness[0].ground_truth",
    /missing/,
  );
  expectError(
    [knowedit({ portability: { Reasoning: [{ prompt: "p", ground_truth: [[]] }] } })],
    "knowedit",
    0,
    "portability.Reasoning[0].ground_truth[0]",
    /empty list/,
  );
  expectError([knowedit({ portability: [] })], "knowedit", 0, "portability", /object/);
  expectError([knowedit({ ground_truth: 5 })], "knowedit", 0, "ground_truth", /string/);
});
