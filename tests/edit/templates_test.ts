import assert from "node:assert/strict";
import { loadModel } from "../../lib/model/load.ts";
import { contextTemplates } from "../../lib/edit/templates.ts";
import { locate } from "../../lib/edit/lookup.ts";
import { sharedPath } from "../_util.ts";

Deno.test("context templates: '{}' first, sampled '… . {}' prefixes, deterministic per seed, cached per model", async () => {
  const dir = sharedPath("models/tiny-gpt2-counterfact");
  if (!dir) return;
  // (its own cache folder by option: KEG_CACHE is process-wide and other test modules run alongside)
  const cache = await Deno.makeTempDir();
  const model = await loadModel(dir, { quiet: true });
  try {
    const tok = model.tokenizer!;
    const opts = { lengthParams: [[5, 5], [7, 5]] as [number, number][], seed: 0 };
    const a = await contextTemplates(model.net, tok, opts);
    assert.equal(a.length, 11);
    assert.equal(a[0], "{}");
    const seeds = ["The", "Therefore", "Because", "I", "You"];
    a.slice(1).forEach((t, i) => {
      assert.ok(t.endsWith(". {}"), t);
      assert.ok(t.startsWith(seeds[i % 5]), `${t} starts with its seed word`);
      assert.equal(t.split("{}").length, 2, "exactly one slot");
    });
    // 5-token and 7-token samples
    assert.equal(tok.encode(a[1].slice(0, -4)).length, 5);
    assert.deepEqual(await contextTemplates(model.net, tok, opts), a, "same seed, same templates");
    assert.notDeepEqual(
      await contextTemplates(model.net, tok, { ...opts, seed: 1 }),
      a,
      "another seed differs",
    );
    const cacheOpts = { ...opts, fingerprint: model.fingerprint, cacheDir: `${cache}/templates` };
    const cached = await contextTemplates(model.net, tok, cacheOpts);
    assert.deepEqual(cached, a);
    const mine = [...Deno.readDirSync(`${cache}/templates`)].map((f) => `${cache}/templates/${f.name}`);
    assert.equal(mine.length, 1, "one cache file");
    assert.deepEqual(JSON.parse(Deno.readTextFileSync(mine[0])), a, "holding these templates");
    // and a later call reads it: a changed file comes back as written
    Deno.writeTextFileSync(mine[0], JSON.stringify(["{}", "cached. {}"]));
    assert.deepEqual(await contextTemplates(model.net, tok, cacheOpts), ["{}", "cached. {}"]);
    // lookup positions on the token level (the oracle's subject_last rule)
    const p = locate(tok, "The city. {} is located in", "Angola", "subject_last");
    assert.equal(p.lookup, tok.encode("The city. Angola").length - 1);
    assert.equal(
      locate(tok, "{} is located in", "Angola", "last").lookup,
      tok.encode("Angola is located in").length - 1,
    );
    assert.equal(
      locate(tok, "The city. {} is", "Angola", "subject_first").lookup,
      tok.encode("The city.").length,
    );
    assert.throws(() => locate(tok, "no slot here", "Angola", "last"), /no "\{\}"/);
  } finally {
    await model.dispose();
    await Deno.remove(cache, { recursive: true });
  }
});
