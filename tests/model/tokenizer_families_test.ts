import assert from "node:assert/strict";
import { loadTokenizer, type Tokenizer } from "../../lib/model/tokenizer.ts";
import { locate } from "../../lib/edit/lookup.ts";

// Llama-3 and Qwen2.5 style byte-level BPE tokenizer.json files (tests/fixtures/tokenizers, written by
// make_tokenizers.ts with the real files' pre-tokenizer regexes, decoder and post-processor shapes).

const DIR = new URL("../fixtures/tokenizers/", import.meta.url).pathname;
const load = (name: string) => loadTokenizer(`${DIR}${name}`);

const tokens = (t: Tokenizer, ids: number[]) => ids.map((i) => t.idToToken(i));

Deno.test("Llama-3 tokenizer.json: <|begin_of_text|> from the post-processor; Qwen: no BOS", async () => {
  const l3 = await load("llama3"), qw = await load("qwen2");
  assert.equal(l3.source, "tokenizer.json");
  assert.equal(l3.addsBos, true);
  assert.equal(l3.bosId, l3.tokenToId("<|begin_of_text|>"));
  assert.equal(l3.eosId, l3.tokenToId("<|end_of_text|>"));
  const plain = l3.encode("Angola is located in", { addBos: false });
  assert.deepEqual(l3.encode("Angola is located in"), [l3.bosId, ...plain]);
  assert.equal(qw.addsBos, false);
  assert.equal(qw.bosId, null);
  assert.equal(qw.eosId, qw.tokenToId("<|endoftext|>"));
  assert.equal(qw.padId, qw.eosId);
  assert.deepEqual(qw.encode("Angola is located in"), qw.encode("Angola is located in", { addBos: false }));
  // every id fits the ../shared Llama-3 / Qwen fixtures' vocabulary of 256
  for (const t of [l3, qw]) assert.ok(t.vocabSize <= 256, `${t.vocabSize}`);
  // special-token strings in the text become their ids; decode drops them on request
  const withEos = qw.encode("Paris<|endoftext|>");
  assert.equal(withEos.at(-1), qw.eosId);
  assert.equal(qw.decode(withEos, { skipSpecialTokens: true }), "Paris");
  assert.equal(l3.decode(l3.encode("Paris"), { skipSpecialTokens: true }), "Paris");
});

Deno.test("the pre-tokenizer regexes: Llama-3 groups digits by three, Qwen splits every digit; byte-level round trip", async () => {
  const l3 = await load("llama3"), qw = await load("qwen2");
  assert.deepEqual(tokens(l3, l3.encode("12345", { addBos: false })), ["123", "45"]);
  assert.deepEqual(tokens(qw, qw.encode("12345")), ["1", "2", "3", "4", "5"]);
  for (const t of [l3, qw]) {
    // a leading space belongs to the following word (ByteLevel's Ġ); contractions are their own token
    assert.equal(tokens(t, t.encode(" Paris", { addBos: false })).join(""), "ĠParis");
    assert.deepEqual(tokens(t, t.encode("It's", { addBos: false })), ["I", "t", "'s"]);
    for (
      const s of [
        "Angola is located in Antarctica.",
        "  two  spaces, then\ttab and\nnewline\n\n",
        "It's 1976; they'll pay 12345 + 45!",
      ]
    ) {
      assert.equal(t.decode(t.encode(s, { addBos: false })), s, JSON.stringify(s));
    }
  }
});

/** The token index holding the last character of text[0, end): by decoding growing id prefixes. */
function tokenAtChar(t: Tokenizer, ids: number[], end: number): number {
  for (let k = 1; k <= ids.length; k++) {
    if (t.decode(ids.slice(0, k), { skipSpecialTokens: true }).length >= end) return k - 1;
  }
  return -1;
}

Deno.test("ROME lookup positions on the Llama-3 (with BOS) and Qwen (without) tokenizers", async () => {
  const l3 = await load("llama3"), qw = await load("qwen2");
  const cases = [
    { template: "{} is located in the continent of", subject: "Angola" },
    { template: "The mother tongue of {} is", subject: "Thomas Joannes Stieltjes" },
    { template: "{} plays", subject: "LeBron James" },
    { template: "Where is {}? It is in", subject: "the Eiffel Tower" },
  ];
  for (const t of [l3, qw]) {
    const bos = t.addsBos ? 1 : 0;
    for (const { template, subject } of cases) {
      const at = template.indexOf("{}");
      const text = template.replace("{}", subject);
      const last = locate(t, template, subject, "subject_last");
      assert.equal(last.text, text);
      assert.deepEqual(last.ids, t.encode(text));
      if (bos) assert.equal(last.ids[0], t.bosId, "the prompt starts with <|begin_of_text|>");
      // independent count: the token that holds the subject's last character (BOS included in the index)
      assert.equal(last.lookup, tokenAtChar(t, last.ids, at + subject.length), `${t.source} ${text}`);
      const first = locate(t, template, subject, "subject_first");
      assert.equal(first.lookup, tokenAtChar(t, first.ids, at + 1), `first: ${text}`);
      assert.ok(first.lookup >= bos && first.lookup <= last.lookup);
      assert.equal(locate(t, template, subject, "last").lookup, last.ids.length - 1);
      // the subject's tokens decode back to the subject (with the joined leading space)
      const sub = t.decode(last.ids.slice(first.lookup, last.lookup + 1), { skipSpecialTokens: true });
      assert.equal(sub.trim(), subject);
    }
  }
});
