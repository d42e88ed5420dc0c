import assert from "node:assert/strict";
import {
  cleanUpTokenization,
  loadTokenizer,
  type Tokenizer,
  TokenizerError,
} from "../../lib/model/tokenizer.ts";
import { sharedPath } from "../_util.ts";

async function expectError(p: Promise<unknown>, ...parts: string[]): Promise<void> {
  const err = await p.then(() => null, (e) => e);
  assert.ok(err instanceof TokenizerError, `expected a TokenizerError, got ${err}`);
  for (const part of parts) assert.ok(err.message.includes(part), `"${err.message}" lacks "${part}"`);
}

/** Both tokenizers of a directory: tokenizer.json (npm package) and vocab.json + merges.txt (keg's BPE). */
async function both(dir: string): Promise<[Tokenizer, Tokenizer]> {
  const [a, b] = await Promise.all([loadTokenizer(dir), loadTokenizer(dir, { source: "bpe" })]);
  assert.equal(a.source, "tokenizer.json");
  assert.equal(b.source, "vocab.json+merges.txt");
  return [a, b];
}

/** Every {text, ids} pair in an oracle.json (the ids come from the HF tokenizer used to build it). */
function textIdPairs(
  x: unknown,
  out: { text: string; ids: number[] }[] = [],
): { text: string; ids: number[] }[] {
  if (Array.isArray(x)) { for (const v of x) textIdPairs(v, out); }
  else if (x && typeof x === "object") {
    const o = x as Record<string, unknown>;
    if (typeof o.text === "string" && Array.isArray(o.ids)) {
      out.push({ text: o.text, ids: o.ids as number[] });
    }
    for (const v of Object.values(o)) textIdPairs(v, out);
  }
  return out;
}

Deno.test("GPT-2 tokenizers reproduce the input ids of reference.json and the ROME oracle", async () => {
  for (const model of ["tiny-gpt2-counterfact", "tiny-llama-counterfact"]) {
    const dir = sharedPath(`models/${model}`);
    if (!dir) continue;
    const toks = await both(dir);
    const ref = JSON.parse(await Deno.readTextFile(`${dir}/reference.json`));
    const oracle = JSON.parse(await Deno.readTextFile(`${dir}/rome_reference/oracle.json`));
    const pairs = [
      ...ref.references.map((r: { prompt: string; input_ids: number[] }) => ({
        text: r.prompt,
        ids: r.input_ids,
      })),
      ...textIdPairs(oracle),
    ];
    assert.ok(pairs.length >= 200, `${model}: ${pairs.length} pairs`);
    for (const tok of toks) {
      assert.equal(tok.addsBos, false, "GPT-2 tokenizers add no BOS (facts.json: prompts without BOS)");
      for (const { text, ids } of pairs) {
        assert.deepEqual(tok.encode(text), ids, `${tok.source}: ${JSON.stringify(text)}`);
      }
      // targets get a leading space: ids = enc(" " + target) (rome_reference/README.md)
      for (const e of oracle.edits) {
        assert.deepEqual(tok.encode(" " + e.request.target_new), e.target_new_ids);
        assert.deepEqual(tok.encode(" " + e.request.target_true), e.target_true_ids);
      }
      // reference.json's top-10 tokens decode to the listed strings
      for (const r of ref.references) {
        assert.deepEqual(r.top10_ids.map((id: number) => tok.decode([id])), r.top10_tokens);
      }
    }
  }
});

Deno.test("tokenizer.json and vocab.json + merges.txt agree on CounterFact prompts and edge cases", async () => {
  const dir = sharedPath("data/tokenizers/gpt2");
  const data = sharedPath("data/datasets/counterfact-rome/counterfact.json");
  if (!dir || !data) return;
  const [a, b] = await both(dir);
  const records = JSON.parse(await Deno.readTextFile(data));
  const texts: string[] = [];
  for (const r of records) {
    const rw = r.requested_rewrite;
    texts.push(rw.prompt.replace("{}", rw.subject), " " + rw.target_new.str, " " + rw.target_true.str);
    texts.push(...r.paraphrase_prompts, ...r.neighborhood_prompts, ...r.generation_prompts);
  }
  assert.ok(texts.length > 3000, `${texts.length} texts`);
  // whitespace runs, contractions, digits, Unicode letters/numbers, emoji, special tokens, and the characters
  // where JavaScript's \s differs from HF's (Oniguruma) whitespace: U+FEFF is not whitespace, U+0085 is
  texts.push(
    "",
    " ",
    "  hello   world\n\n foo's 123 café 東京 don't",
    "I'LL it'S we'Ve they're",
    "3.14159 1,000,000 Ⅻ ½ ²",
    "🤗 emoji 👍🏽 ",
    "x  \t\n y\r\n",
    "Hello<|endoftext|> world<|endoftext|>",
    "a \ufeff!x",
    "a\u0085!b \u0085 c",
    "\u00a0\u3000x\u2028y",
  );
  for (const t of texts) {
    const ia = a.encode(t), ib = b.encode(t);
    assert.deepEqual(ib, ia, JSON.stringify(t));
    assert.equal(b.decode(ib), a.decode(ia), JSON.stringify(t));
    assert.equal(a.decode(ia), cleanUpTokenization(t), JSON.stringify(t));
  }
  // the U+FEFF case tells the two whitespace definitions apart: " \ufeff!" is one pre-token in HF
  assert.deepEqual(a.encode("a \ufeff!x"), [64, 27332, 119, 123, 0, 87]);
});

Deno.test("GPT-2 conventions: leading space, special tokens, BOS on request, decode", async () => {
  const dir = sharedPath("data/tokenizers/gpt2");
  if (!dir) return;
  for (const tok of await both(dir)) {
    assert.deepEqual(tok.encode(" Paris"), [6342]);
    assert.notDeepEqual(tok.encode("Paris"), [6342]);
    assert.equal(tok.encode("The capital is Paris").at(-1), 6342);
    assert.equal(tok.bosId, 50256);
    assert.equal(tok.eosId, 50256);
    assert.equal(tok.padId, null);
    assert.equal(tok.vocabSize, 50257);
    assert.equal(tok.addsBos, false);
    assert.deepEqual(tok.encode("Hi", { addBos: true }), [50256, 17250]);
    assert.deepEqual(tok.encode("a<|endoftext|>b"), [64, 50256, 65]);
    assert.equal(tok.decode([64, 50256, 65]), "a<|endoftext|>b");
    assert.equal(tok.decode([64, 50256, 65], { skipSpecialTokens: true }), "ab");
    assert.equal(tok.tokenToId("ĠParis"), 6342);
    assert.equal(tok.idToToken(6342), "ĠParis");
    // half of a multi-byte character decodes to U+FFFD, like HF's errors="replace"
    const cafe = tok.encode(" 東");
    assert.ok(cafe.length > 1);
    assert.equal(tok.decode(cafe.slice(0, 1)).at(-1), "\ufffd");
    assert.equal(tok.decode([]), "");
    assert.throws(() => tok.decode([50257]), TokenizerError);
    assert.throws(() => tok.decode([-1]), TokenizerError);
  }
});

Deno.test("OpenAI's encoder.json + vocab.bpe names work for the BPE files", async () => {
  const src = sharedPath("data/tokenizers/gpt2");
  if (!src) return;
  const dir = await Deno.makeTempDir();
  try {
    // symlinks, not copies of ../shared files
    await Deno.symlink(`${src}/encoder.json`, `${dir}/encoder.json`);
    await Deno.symlink(`${src}/vocab.bpe`, `${dir}/vocab.bpe`);
    const tok = await loadTokenizer(dir);
    assert.equal(tok.source, "vocab.json+merges.txt");
    assert.deepEqual(tok.encode("Angola is located in"), [13450, 5708, 318, 5140, 287]);
    // without tokenizer_config.json no special tokens are known
    assert.equal(tok.bosId, null);
    assert.equal(tok.addsBos, false);
    assert.throws(() => tok.encode("x", { addBos: true }), TokenizerError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A tiny Llama-style tokenizer.json: Metaspace pre-tokenizer, BPE, TemplateProcessing "<s> $A". */
function llamaStyleJson(): unknown {
  const vocab: Record<string, number> = {
    "<unk>": 0,
    "<s>": 1,
    "</s>": 2,
    "▁": 3,
    "a": 4,
    "b": 5,
    "▁a": 6,
    "ab": 7,
    "▁ab": 8,
  };
  const special = (id: number, content: string) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: "1.0",
    added_tokens: [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
    normalizer: null,
    pre_tokenizer: { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false },
    post_processor: {
      type: "TemplateProcessing",
      single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      pair: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
      special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
    },
    decoder: { type: "Metaspace", replacement: "▁", prepend_scheme: "first", split: false },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: "<unk>",
      fuse_unk: true,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: ["▁ a", "a b", "▁a b"],
    },
  };
}

Deno.test("Llama-style BOS: from the post-processor, overridden by add_bos_token", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(llamaStyleJson()));
    // no tokenizer_config.json: BOS found from the post-processor template
    let tok = await loadTokenizer(dir);
    assert.equal(tok.bosId, 1);
    assert.equal(tok.addsBos, true);
    assert.deepEqual(tok.encode("ab"), [1, 8]);
    assert.deepEqual(tok.encode("ab", { addBos: false }), [8]);
    assert.equal(tok.decode([1, 8], { skipSpecialTokens: true }), "ab");
    // with a config naming the tokens, and add_bos_token absent → post-processor decides
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      JSON.stringify({ bos_token: "<s>", eos_token: "</s>" }),
    );
    tok = await loadTokenizer(dir);
    assert.equal(tok.addsBos, true);
    assert.equal(tok.eosId, 2);
    assert.deepEqual(tok.encode("a ab"), [1, 6, 8]);
    // add_bos_token: false wins (as transformers' LlamaTokenizerFast updates its post-processor)
    await Deno.writeTextFile(
      `${dir}/tokenizer_config.json`,
      JSON.stringify({
        bos_token: { content: "<s>", special: true },
        eos_token: "</s>",
        add_bos_token: false,
      }),
    );
    tok = await loadTokenizer(dir);
    assert.equal(tok.addsBos, false);
    assert.deepEqual(tok.encode("ab"), [8]);
    assert.deepEqual(tok.encode("ab", { addBos: true }), [1, 8]);
    // a bos_token that is not in the vocabulary
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify({ bos_token: "<bos>" }));
    await expectError(loadTokenizer(dir), 'bos_token "<bos>" is not in the vocabulary');
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("missing or unusable tokenizer files give clear errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await expectError(loadTokenizer(dir), "no tokenizer", "tokenizer.json", "vocab.json + merges.txt");
    await Deno.writeFile(`${dir}/tokenizer.model`, new Uint8Array(4));
    await expectError(loadTokenizer(dir), "SentencePiece tokenizer.model", "save_pretrained");
    await expectError(loadTokenizer(dir, { source: "bpe" }), "of kind bpe");
    await Deno.writeTextFile(`${dir}/tokenizer.json`, "{ broken");
    await expectError(loadTokenizer(dir), "tokenizer.json: not valid JSON");
    await Deno.writeTextFile(`${dir}/vocab.json`, JSON.stringify({ a: 0, b: 1, ab: 2 }));
    await Deno.writeTextFile(`${dir}/merges.txt`, "#version: 0.2\na b\nnot-a-merge\n");
    await expectError(loadTokenizer(dir, { source: "bpe" }), 'merges: line 2 "not-a-merge"');
    await Deno.writeTextFile(`${dir}/merges.txt`, "#version: 0.2\na b\n");
    const tok = await loadTokenizer(dir, { source: "bpe" });
    assert.deepEqual(tok.encode("ab"), [2]);
    assert.throws(() => tok.encode("ba c"), /not in vocab\.json/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
