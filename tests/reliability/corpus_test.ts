/**
 * The reliability corpus: hostile or mistaken inputs of every kind keg reads (hparams, --set, config.json,
 * weights, tokenizer, requests, statistics, saved edits, datasets, output paths, concurrent runs), each run
 * through the real command line in-process. Every case asserts the exit code, that the message names the
 * cause (file, field, tensor or option), and that nothing was written where outputs were asked for.
 * A positive control first shows the same setup succeeds and writes every output, so each refusal below
 * is the input's doing. Inputs are tiny (a 1-layer GPT-2 through symlinks, 2-step edits): ~1 s per case.
 */
import assert from "node:assert/strict";
import { configWith, FAKE_GPT2, listTree, modelDir, runKeg, writeHparams } from "./_fixture.ts";
import { openSafetensors, type TensorToWrite, writeSafetensors } from "../../lib/model/safetensors.ts";
import { readEdits, writeEditsFile } from "../../lib/edit/edits_io.ts";
import { lockDir } from "../../lib/util/fs.ts";
import { sharedPath } from "../_util.ts";

const CF = sharedPath("data/datasets/counterfact-rome/counterfact.json");
const ready = FAKE_GPT2 !== null && CF !== null;

interface Ctx {
  /** The case's directory; outputs go under `${dir}/o`, which must stay empty on failure. */
  dir: string;
  /** Cheap hparams. */
  hp: string;
  /** A model directory of symlinks to fake-gpt2-tiny. */
  model: string;
  /** Shared inputs made once. */
  shared: Shared;
}

interface Shared {
  root: string;
  model: string;
  hp: string;
  stats: string;
  edits: string;
  data: string;
}

interface Case {
  name: string;
  /** Builds the arguments (and any input files) of the case. */
  args: (c: Ctx) => Promise<string[]> | string[];
  /** Expected exit code (1: error, 2: usage error). */
  code: number;
  /** The message must match (naming the cause). */
  match: RegExp;
  /** Paths (relative to the case dir) that must not exist afterwards, besides `o/` being empty. */
  absent?: string[];
}

const EDIT = ["--prompt", "{} is located in", "--subject", "Angola", "--target", "Antarctica"];
const edit = (c: Ctx, more: string[] = [], hp = c.hp, model = c.model) => [
  "edit",
  "--hparams",
  hp,
  "--model",
  model,
  ...EDIT,
  "--save",
  `${c.dir}/o/save`,
  ...more,
];
const hpWith = (c: Ctx, r: Record<string, string>) => writeHparams(`${c.dir}/hp.yaml`, r);

async function rewriteTensors(
  src: string,
  dst: string,
  change: (t: TensorToWrite) => TensorToWrite,
): Promise<void> {
  const f = await openSafetensors(src);
  const ts: TensorToWrite[] = [];
  for (const name of f.names()) {
    const raw = await f.read(name);
    ts.push(change({ name, dtype: raw.dtype, shape: raw.shape, data: raw.bytes }));
  }
  const meta = f.metadata;
  await f.close();
  await writeSafetensors(dst, ts, Object.keys(meta).length ? meta : undefined);
}

function poison(name: string, value: number) {
  return (t: TensorToWrite): TensorToWrite => {
    if (t.name !== name) return t;
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength).slice();
    new Float32Array(bytes.buffer)[1] = value;
    return { ...t, data: bytes };
  };
}

/** A safetensors file's bytes with its header text replaced (same length, space-padded). */
async function withHeader(
  path: string,
  edit: (h: string) => string,
  extra = new Uint8Array(0),
): Promise<Uint8Array> {
  const bytes = await Deno.readFile(path);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const h = new TextDecoder().decode(bytes.subarray(8, 8 + n));
  const h2 = new TextEncoder().encode(edit(h));
  const out = new Uint8Array(8 + h2.length + bytes.length - 8 - n + extra.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(h2.length), true);
  out.set(h2, 8);
  out.set(bytes.subarray(8 + n), 8 + h2.length);
  out.set(extra, out.length - extra.length);
  return out;
}

const cases: Case[] = [
  // --- hyper-parameters: keys parsed must be honoured or refused
  {
    name: "hparams: unknown key",
    args: async (c) => edit(c, [], await hpWith(c, { v_nm_grad_steps: "3" })),
    code: 1,
    match: /hp\.yaml: v_nm_grad_steps/,
  },
  {
    name: "hparams: rewrite_module_tmp names attention",
    args: async (c) => edit(c, [], await hpWith(c, { rewrite_module_tmp: '"transformer.h.{}.attn.c_proj"' })),
    code: 1,
    match: /hp\.yaml: rewrite_module_tmp: .*attn\.c_proj.*MLP down-projection.*mlp\.c_proj/,
  },
  {
    name: "hparams: rewrite_module_tmp names no module",
    args: async (c) => edit(c, [], await hpWith(c, { rewrite_module_tmp: '"transformer.h.{}.mlp.nope"' })),
    code: 1,
    match: /hp\.yaml: rewrite_module_tmp: .*mlp\.nope/,
  },
  {
    name: "hparams: layer_module_tmp of another family",
    args: async (c) => edit(c, [], await hpWith(c, { layer_module_tmp: '"model.layers.{}"' })),
    code: 1,
    match: /hp\.yaml: layer_module_tmp: .*does not contain transformer\.h\.0\.mlp\.c_proj/,
  },
  {
    name: "hparams: mlp_module_tmp wrong",
    args: async (c) => edit(c, [], await hpWith(c, { mlp_module_tmp: '"transformer.h.{}.ffn"' })),
    code: 1,
    match: /hp\.yaml: mlp_module_tmp:/,
  },
  {
    name: "hparams: attn_module_tmp wrong",
    args: async (c) => edit(c, [], await hpWith(c, { attn_module_tmp: '"transformer.h.{}.self_attn"' })),
    code: 1,
    match: /hp\.yaml: attn_module_tmp: .*attn\.c_proj/,
  },
  {
    name: "hparams: ln_f_module wrong",
    args: async (c) => edit(c, [], await hpWith(c, { ln_f_module: '"transformer.norm"' })),
    code: 1,
    match: /hp\.yaml: ln_f_module: .*transformer\.ln_f\.weight/,
  },
  {
    name: "hparams: lm_head_module wrong",
    args: async (c) => edit(c, [], await hpWith(c, { lm_head_module: '"transformer.head"' })),
    code: 1,
    match: /hp\.yaml: lm_head_module: .*transformer\.wte\.weight/,
  },
  {
    name: "hparams: v_loss_layer outside the model",
    args: async (c) => edit(c, [], await hpWith(c, { v_loss_layer: "5" })),
    code: 1,
    match: /hp\.yaml: v_loss_layer: layer 5 outside 0\.\.0/,
  },
  {
    name: "hparams: layer out of range with --stats (stats not read first)",
    args: async (c) =>
      edit(c, ["--stats", c.shared.stats], await hpWith(c, { layers: "[3]", mom2_adjustment: "true" })),
    code: 1,
    match: /hp\.yaml: layers: layer 3 outside 0\.\.0/,
  },
  {
    name: "hparams: layer out of range with --corpus",
    args: async (c) =>
      edit(c, ["--corpus", `${c.dir}/none.txt`], await hpWith(c, { layers: "[2]", mom2_adjustment: "true" })),
    code: 1,
    match: /hp\.yaml: layers: layer 2 outside/,
  },
  {
    name: "hparams: context templates longer than the model's positions",
    args: async (c) => edit(c, [], await hpWith(c, { context_template_length_params: "[[5000, 10]]" })),
    code: 1,
    match: /hp\.yaml: context_template_length_params: template length 5000 .*1024 positions/,
  },
  {
    name: "hparams: absurd template count",
    args: async (c) => edit(c, [], await hpWith(c, { context_template_length_params: "[[3, 100000]]" })),
    code: 1,
    match: /context_template_length_params: 100000 templates per entry/,
  },
  // --- --set
  {
    name: "--set splits outside brackets (the value after the list is checked)",
    args: (c) => edit(c, ["--set", "context_template_length_params=[[5,5]],v_num_grad_steps=x"]),
    code: 1,
    match: /\(override\): v_num_grad_steps/,
  },
  {
    name: "--set with an unclosed bracket",
    args: (c) => edit(c, ["--set", "layers=[0"]),
    code: 2,
    match: /--set: unclosed bracket/,
  },
  // --- config.json against the weights
  {
    name: "config: n_layer beyond the checkpoint",
    args: async (c) =>
      edit(
        c,
        [],
        c.hp,
        await modelDir(`${c.dir}/m`, FAKE_GPT2!, {
          "config.json": await configWith(FAKE_GPT2!, { n_layer: 2 }),
        }),
      ),
    code: 1,
    match: /lacks .*transformer\.h\.1\./,
  },
  {
    name: "config: n_layer short of the checkpoint (2-layer weights, 1 in config)",
    args: async (c) => {
      const src = sharedPath("models/fixtures/gpt2-tiny")!;
      const m = await modelDir(`${c.dir}/m`, src, { "config.json": await configWith(src, { n_layer: 1 }) });
      return ["generate", "--model", m, "--prompt", "x"];
    },
    code: 1,
    match: /config\.json says 1 layers .* also holds layer 1 \(transformer\.h\.1\.mlp\.c_proj\.weight\)/,
  },
  {
    name: "config: vocab_size larger than the embedding",
    args: async (c) =>
      edit(
        c,
        [],
        c.hp,
        await modelDir(`${c.dir}/m`, FAKE_GPT2!, {
          "config.json": await configWith(FAKE_GPT2!, { vocab_size: 50300 }),
        }),
      ),
    code: 1,
    match:
      /tensor transformer\.wte\.weight has shape \[50257, 2\] but \S*m\/config\.json implies \[50300, 2\].*vocab_size/,
  },
  {
    name: "config: wrong n_embd (blamed on the config, not the stats)",
    args: async (c) =>
      edit(
        c,
        [],
        c.hp,
        await modelDir(`${c.dir}/m`, FAKE_GPT2!, {
          "config.json": await configWith(FAKE_GPT2!, { n_embd: 4, n_head: 1 }),
        }),
      ),
    code: 1,
    match: /tensor transformer\.wte\.weight has shape \[50257, 2\] .*hidden size 4/,
  },
  {
    name: "config: wrong n_inner",
    args: async (c) =>
      edit(
        c,
        [],
        c.hp,
        await modelDir(`${c.dir}/m`, FAKE_GPT2!, {
          "config.json": await configWith(FAKE_GPT2!, { n_inner: 16 }),
        }),
      ),
    code: 1,
    match: /tensor transformer\.h\.0\.mlp\.c_fc\.weight has shape \[2, 8\] .*\[2, 16\].*MLP width 16/,
  },
  {
    name: "config: n_positions beyond the position table",
    args: async (c) =>
      edit(
        c,
        [],
        c.hp,
        await modelDir(`${c.dir}/m`, FAKE_GPT2!, {
          "config.json": await configWith(FAKE_GPT2!, { n_positions: 2048 }),
        }),
      ),
    code: 1,
    match: /tensor transformer\.wpe\.weight has shape \[1024, 2\] .*2048 positions/,
  },
  {
    name: "config: not JSON",
    args: async (c) =>
      edit(c, [], c.hp, await modelDir(`${c.dir}/m`, FAKE_GPT2!, { "config.json": "{ n_layer: 1" })),
    code: 1,
    match: /m\/config\.json/,
  },
  // --- weights
  {
    name: "weights: NaN in the edited weight (edit)",
    args: async (c) => {
      const m = await modelDir(`${c.dir}/m`, FAKE_GPT2!, { "model.safetensors": new Uint8Array(0) });
      await rewriteTensors(
        `${FAKE_GPT2}/model.safetensors`,
        `${m}/model.safetensors`,
        poison("transformer.h.0.mlp.c_proj.weight", NaN),
      );
      return edit(c, [], c.hp, m);
    },
    code: 1,
    match: /tensor transformer\.h\.0\.mlp\.c_proj\.weight holds 1 NaN\/infinite/,
  },
  {
    name: "weights: inf in the embedding (generate)",
    args: async (c) => {
      const m = await modelDir(`${c.dir}/m`, FAKE_GPT2!, { "model.safetensors": new Uint8Array(0) });
      await rewriteTensors(
        `${FAKE_GPT2}/model.safetensors`,
        `${m}/model.safetensors`,
        poison("transformer.wte.weight", Infinity),
      );
      return ["generate", "--model", m, "--prompt", "Hello"];
    },
    code: 1,
    match: /tensor transformer\.wte\.weight holds 1 NaN\/infinite/,
  },
  {
    name: "weights: truncated safetensors",
    args: async (c) => {
      const b = await Deno.readFile(`${FAKE_GPT2}/model.safetensors`);
      return edit(
        c,
        [],
        c.hp,
        await modelDir(`${c.dir}/m`, FAKE_GPT2!, { "model.safetensors": b.subarray(0, b.length - 100) }),
      );
    },
    code: 1,
    match: /m\/model\.safetensors: .*past the end of the data section/,
  },
  {
    name: "weights: trailing bytes after the data",
    args: async (c) => {
      const b = await withHeader(`${FAKE_GPT2}/model.safetensors`, (h) => h, new Uint8Array(16));
      return edit(c, [], c.hp, await modelDir(`${c.dir}/m`, FAKE_GPT2!, { "model.safetensors": b }));
    },
    code: 1,
    match: /m\/model\.safetensors: 16 trailing byte\(s\)/,
  },
  {
    name: "weights: a float shape in the header",
    args: async (c) => {
      const b = await withHeader(
        `${FAKE_GPT2}/model.safetensors`,
        (h) => h.replace('"shape":[1024,2]', '"shape":[1024.0,2]'),
      );
      return edit(c, [], c.hp, await modelDir(`${c.dir}/m`, FAKE_GPT2!, { "model.safetensors": b }));
    },
    code: 1,
    match: /m\/model\.safetensors: tensor "transformer\.wpe\.weight": shape holds 1024\.0/,
  },
  // --- tokenizer
  {
    name: "tokenizer: empty vocabulary",
    args: async (c) => {
      const m = await modelDir(`${c.dir}/m`, FAKE_GPT2!, {
        "vocab.json": "{}",
        "merges.txt": "#version: 0.2\n",
      });
      await Deno.remove(`${m}/tokenizer.json`);
      return edit(c, [], c.hp, m);
    },
    code: 1,
    match: /m\/vocab\.json: the vocabulary is empty/,
  },
  {
    name: "tokenizer: tokenizer.json not JSON",
    args: async (c) => edit(c, [], c.hp, await modelDir(`${c.dir}/m`, FAKE_GPT2!, { "tokenizer.json": "{" })),
    code: 1,
    match: /m\/tokenizer\.json/,
  },
  // --- requests and lengths
  {
    name: "request: prompt longer than the model's positions",
    args: (c) => [
      "edit",
      "--hparams",
      c.hp,
      "--model",
      c.model,
      "--prompt",
      `${"and then ".repeat(600)}{} is located in`,
      "--subject",
      "Angola",
      "--target",
      "Antarctica",
      "--save",
      `${c.dir}/o/save`,
    ],
    code: 1,
    match:
      /command line: request 0 \("Angola"\): the prompt after a 3-token context template with the target is \d+ tokens, more than the model's 1024 positions/,
  },
  {
    name: "request: target longer than the model's positions",
    args: (c) => [
      "edit",
      "--hparams",
      c.hp,
      "--model",
      c.model,
      "--prompt",
      "{} is located in",
      "--subject",
      "Angola",
      "--target",
      "very ".repeat(1100),
      "--save",
      `${c.dir}/o/save`,
    ],
    code: 1,
    match: /request 0 \("Angola"\): .* more than the model's 1024 positions/,
  },
  {
    name: "request: over-length request in a requests file",
    args: async (c) => {
      const p = `${c.dir}/reqs.json`;
      await Deno.writeTextFile(
        p,
        JSON.stringify([
          { prompt: "{} is in", subject: "Peru", target_new: "Asia" },
          { prompt: `${"so ".repeat(1100)}{} is in`, subject: "Chile", target_new: "Asia" },
        ]),
      );
      return ["edit", "--hparams", c.hp, "--model", c.model, "--requests", p, "--save", `${c.dir}/o/save`];
    },
    code: 1,
    match: /reqs\.json: request 1 \("Chile"\): .*more than the model's 1024 positions/,
  },
  {
    name: "request: record without subject in a requests file",
    args: async (c) => {
      const p = `${c.dir}/reqs.json`;
      await Deno.writeTextFile(p, JSON.stringify([{ prompt: "{} is in", target_new: "Asia" }]));
      return ["edit", "--hparams", c.hp, "--model", c.model, "--requests", p, "--save", `${c.dir}/o/save`];
    },
    code: 1,
    match: /reqs\.json.*subject/,
  },
  {
    name: "request: requests file not JSON",
    args: async (c) => {
      const p = `${c.dir}/reqs.json`;
      await Deno.writeTextFile(p, "[{");
      return ["edit", "--hparams", c.hp, "--model", c.model, "--requests", p, "--save", `${c.dir}/o/save`];
    },
    code: 1,
    match: /reqs\.json/,
  },
  {
    name: "request: subject not in the prompt",
    args: (c) => [
      "edit",
      "--hparams",
      c.hp,
      "--model",
      c.model,
      "--prompt",
      "Paris is in",
      "--subject",
      "Rome",
      "--target",
      "Italy",
      "--save",
      `${c.dir}/o/save`,
    ],
    code: 1,
    match: /command line: .*subject/,
  },
  // --- covariance statistics
  {
    name: "stats: missing file",
    args: async (c) =>
      edit(c, ["--stats", `${c.dir}/nope.safetensors`], await hpWith(c, { mom2_adjustment: "true" })),
    code: 1,
    match: /nope\.safetensors: cannot open/,
  },
  {
    name: "stats: NaN in mom2",
    args: async (c) => {
      const p = `${c.dir}/nan.safetensors`;
      const m = new Float32Array(64);
      for (let i = 0; i < 8; i++) m[i * 9] = 1;
      m[3] = NaN;
      await writeSafetensors(p, [{ name: "mom2", dtype: "F32", shape: [8, 8], data: m }], { count: "10" });
      return edit(c, ["--stats", p], await hpWith(c, { mom2_adjustment: "true" }));
    },
    code: 1,
    match: /nan\.safetensors: mom2 holds 1 NaN\/infinite/,
  },
  {
    name: "stats: all-zero mom2",
    args: async (c) => {
      const p = `${c.dir}/zero.safetensors`;
      await writeSafetensors(p, [{ name: "mom2", dtype: "F32", shape: [8, 8], data: new Float32Array(64) }]);
      return edit(c, ["--stats", p], await hpWith(c, { mom2_adjustment: "true" }));
    },
    code: 1,
    match: /zero\.safetensors: mom2 has an all-zero diagonal/,
  },
  {
    name: "stats: mom2 of another layer size",
    args: async (c) => {
      const p = `${c.dir}/shape.safetensors`;
      await writeSafetensors(p, [{ name: "mom2", dtype: "F32", shape: [4, 4], data: new Float32Array(16) }]);
      return edit(c, ["--stats", p], await hpWith(c, { mom2_adjustment: "true" }));
    },
    code: 1,
    match: /shape\.safetensors: mom2 has shape \[4,4\]/,
  },
  {
    name: "stats: corpus file missing",
    args: async (c) =>
      edit(c, ["--corpus", `${c.dir}/none.txt`], await hpWith(c, { mom2_adjustment: "true" })),
    code: 1,
    match: /stats corpus .*none\.txt/,
  },
  {
    name: "stats command: layer out of range",
    args: (
      c,
    ) => ["stats", "--hparams", c.hp, "--model", c.model, "--layer", "4", "--export-npz", `${c.dir}/o/s.npz`],
    code: 1,
    match: /hp\.yaml \(override\)?.*layers: layer 4 outside 0\.\.0|layers: layer 4 outside/,
  },
  {
    name: "stats command: --export-npz is a directory",
    args: async (c) => {
      await Deno.mkdir(`${c.dir}/npzdir`);
      return ["stats", "--hparams", c.hp, "--model", c.model, "--export-npz", `${c.dir}/npzdir`];
    },
    code: 1,
    match: /--export-npz .*npzdir: is a directory/,
  },
  // --- saved edits
  {
    name: "edits: file without count",
    args: async (c) => {
      const src = await openSafetensors(c.shared.edits);
      const { count: _, ...meta } = src.metadata;
      const ts = await Promise.all(
        src.names().map(async (n) => {
          const r = await src.read(n);
          return { name: n, dtype: r.dtype, shape: r.shape, data: r.bytes };
        }),
      );
      await src.close();
      await writeSafetensors(`${c.dir}/nocount.safetensors`, ts, meta);
      return [
        "generate",
        "--model",
        c.model,
        "--prompt",
        "Angola is",
        "--edits",
        `${c.dir}/nocount.safetensors`,
      ];
    },
    code: 1,
    match: /nocount\.safetensors: metadata count is missing/,
  },
  {
    name: "edits: made on another base model",
    args: async (c) => {
      const [e] = await readEdits(c.shared.edits);
      await writeEditsFile(`${c.dir}/other.safetensors`, [{ ...e, fingerprint: "0".repeat(64) }]);
      return [
        "generate",
        "--model",
        c.model,
        "--prompt",
        "Angola is",
        "--edits",
        `${c.dir}/other.safetensors`,
      ];
    },
    code: 1,
    match: /other\.safetensors: edits were made on another base model/,
  },
  {
    name: "edits: not an edits file",
    args: (
      c,
    ) => [
      "generate",
      "--model",
      c.model,
      "--prompt",
      "Angola is",
      "--edits",
      `${FAKE_GPT2}/model.safetensors`,
    ],
    code: 1,
    match: /model\.safetensors: not a keg edits file/,
  },
  {
    name: "edits: directory without the edits file",
    args: (c) => ["generate", "--model", c.model, "--prompt", "Angola is", "--edits", `${c.dir}/o/none`],
    code: 1,
    match: /none\/keg_edits\.safetensors: cannot open/,
  },
  {
    name: "generate: prompt longer than the positions",
    args: (c) => ["generate", "--model", c.model, "--prompt", "word ".repeat(1100)],
    code: 1,
    match: /generate: prompt 0 is 110\d tokens, more than the model's 1024 positions/,
  },
  // --- outputs, checked before any work
  {
    name: "output: --export into a non-empty directory",
    args: async (c) => {
      await Deno.mkdir(`${c.dir}/full`);
      await Deno.writeTextFile(`${c.dir}/full/keep.txt`, "mine");
      return edit(c, ["--export", `${c.dir}/full`]);
    },
    code: 1,
    match: /--export .*full: needs an empty or new directory/,
    absent: ["full/model.safetensors"],
  },
  {
    name: "output: --save names a file",
    args: async (c) => {
      await Deno.writeTextFile(`${c.dir}/afile`, "x");
      return ["edit", "--hparams", c.hp, "--model", c.model, ...EDIT, "--save", `${c.dir}/afile`];
    },
    code: 1,
    match: /--save .*afile: exists and is not a directory/,
  },
  {
    name: "output: --save under a file",
    args: async (c) => {
      await Deno.writeTextFile(`${c.dir}/afile`, "x");
      return ["edit", "--hparams", c.hp, "--model", c.model, ...EDIT, "--save", `${c.dir}/afile/sub`];
    },
    code: 1,
    match: /--save .*afile\/sub: .*afile is not a directory/,
  },
  {
    name: "output: --json is a directory",
    args: async (c) => {
      await Deno.mkdir(`${c.dir}/j`);
      return edit(c, ["--json", `${c.dir}/j`]);
    },
    code: 1,
    match: /--json .*\/j: is a directory/,
  },
  // --- evaluation
  {
    name: "eval: malformed dataset record",
    args: async (c) => {
      const recs = JSON.parse(await Deno.readTextFile(c.shared.data));
      delete recs[1].requested_rewrite.target_new;
      await Deno.writeTextFile(`${c.dir}/bad.json`, JSON.stringify(recs));
      return [
        "eval",
        "--hparams",
        c.hp,
        "--model",
        c.model,
        "--data",
        `${c.dir}/bad.json`,
        "--out",
        `${c.dir}/o/run`,
        "--quiet",
      ];
    },
    code: 1,
    match: /bad\.json: record 1, field "requested_rewrite\.target_new/,
  },
  {
    name: "eval: a scored prompt longer than the positions",
    args: async (c) => {
      const recs = JSON.parse(await Deno.readTextFile(c.shared.data));
      recs[1].neighborhood_prompts = ["word ".repeat(1100)];
      await Deno.writeTextFile(`${c.dir}/long.json`, JSON.stringify(recs));
      return [
        "eval",
        "--hparams",
        c.hp,
        "--model",
        c.model,
        "--data",
        `${c.dir}/long.json`,
        "--out",
        `${c.dir}/o/run`,
        "--quiet",
      ];
    },
    code: 1,
    match: /long\.json: record 1 \(case \d+\): prompt "word word.*more than the model's 1024 positions/,
  },
  {
    name: "eval: --out is a file",
    args: async (c) => {
      await Deno.writeTextFile(`${c.dir}/o/run`, "x");
      return [
        "eval",
        "--hparams",
        c.hp,
        "--model",
        c.model,
        "--data",
        c.shared.data,
        "--out",
        `${c.dir}/o/run`,
        "--quiet",
      ];
    },
    code: 1,
    match: /--out .*o\/run: exists and is not a directory/,
  },
];

Deno.test({
  name: `reliability corpus: ${cases.length + 2} hostile inputs give clear errors and write nothing`,
  ignore: !ready,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async (t) => {
    const root = await Deno.makeTempDir({ prefix: "keg_corpus_" });
    Deno.env.set("KEG_CACHE", `${root}/cache`);
    try {
      const shared: Shared = {
        root,
        model: await modelDir(`${root}/model`, FAKE_GPT2!),
        hp: await writeHparams(`${root}/hp.yaml`),
        stats: `${root}/stats.safetensors`,
        edits: `${root}/save/keg_edits.safetensors`,
        data: `${root}/cf.json`,
      };
      const cf = JSON.parse(await Deno.readTextFile(CF!)).slice(0, 2);
      await Deno.writeTextFile(shared.data, JSON.stringify(cf));
      const eye = new Float32Array(64);
      for (let i = 0; i < 8; i++) eye[i * 9] = 1;
      await writeSafetensors(shared.stats, [{ name: "mom2", dtype: "F32", shape: [8, 8], data: eye }], {
        count: "1",
      });

      // positive control: the same setup edits, saves, exports and writes JSON; generate applies the edits
      const ok = await runKeg([
        ...edit({ dir: root, hp: shared.hp, model: shared.model, shared }, [
          "--export",
          `${root}/export`,
          "--json",
          `${root}/r.json`,
        ]),
      ]);
      assert.equal(ok.code, 0, ok.err);
      await Deno.rename(`${root}/o/save`, `${root}/save`);
      assert.ok((await listTree(`${root}/export`)).includes("model.safetensors"));
      assert.equal((await readEdits(shared.edits)).length, 1);
      const g = await runKeg([
        "generate",
        "--model",
        shared.model,
        "--prompt",
        "Angola is",
        "--max-new",
        "1",
        "--edits",
        `${root}/save`,
      ]);
      assert.equal(g.code, 0, g.err);
      assert.match(g.err, /applied 1 saved edit/);

      for (const [i, k] of cases.entries()) {
        await t.step(k.name, async () => {
          const dir = `${root}/case${i}`;
          await Deno.mkdir(`${dir}/o`, { recursive: true });
          const c: Ctx = { dir, hp: shared.hp, model: shared.model, shared };
          const args = await k.args(c);
          const r = await runKeg(args);
          assert.equal(r.code, k.code, `exit code; stderr: ${r.err}`);
          assert.match(r.err, k.match);
          assert.deepEqual(
            await listTree(`${dir}/o`),
            k.name === "eval: --out is a file" ? ["run"] : [],
            "nothing written",
          );
          for (const p of k.absent ?? []) {
            await assert.rejects(() => Deno.stat(`${dir}/${p}`), Deno.errors.NotFound, `${p} must not exist`);
          }
        });
      }

      // concurrent runs: a second eval into a locked --out is refused and writes nothing there
      await t.step("eval: a second writer on a locked --out", async () => {
        const out = `${root}/locked`;
        const lock = await lockDir(out, "keg eval (test holder)");
        try {
          const r = await runKeg([
            "eval",
            "--hparams",
            shared.hp,
            "--model",
            shared.model,
            "--data",
            shared.data,
            "--out",
            out,
            "--quiet",
          ]);
          assert.equal(r.code, 1);
          assert.match(
            r.err,
            new RegExp(`locked is in use by keg eval \\(test holder\\) \\(pid ${Deno.pid}, started`),
          );
          assert.deepEqual(await listTree(out), [".keg-lock"], "no run.json, no results");
        } finally {
          lock.release();
        }
      });
      // a stale lock (its holder gone: the OS lock is released) is taken over
      await t.step("eval: a stale lock is taken over", async () => {
        const out = `${root}/stale`;
        await Deno.mkdir(out);
        await Deno.writeTextFile(
          `${out}/.keg-lock`,
          JSON.stringify({ pid: 999999, command: "keg eval", started: "then" }),
        );
        const lock = await lockDir(out, "keg eval (new)");
        lock.release();
        assert.match(await Deno.readTextFile(`${out}/.keg-lock`), new RegExp(`"pid":${Deno.pid}`));
      });
    } finally {
      Deno.env.delete("KEG_CACHE");
      await Deno.remove(root, { recursive: true });
    }
  },
});
