import assert from "node:assert/strict";
import {
  type Checkpoint,
  CheckpointError,
  hubCacheDirs,
  openCheckpoint,
  resolveModelDir,
} from "../../lib/model/checkpoint.ts";
import { openSafetensors, SafetensorsError, writeSafetensors } from "../../lib/model/safetensors.ts";
import { sharedPath } from "../_util.ts";

async function expectError<E extends Error>(
  p: Promise<unknown>,
  cls: new (...a: never[]) => E,
  ...parts: string[]
): Promise<E> {
  const err = await p.then(() => null, (e) => e);
  assert.ok(err instanceof cls, `expected ${cls.name}, got ${err}`);
  for (const part of parts) assert.ok(err.message.includes(part), `"${err.message}" lacks "${part}"`);
  return err;
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.realPath(await Deno.makeTempDir());
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Writes a small two-shard checkpoint; returns the tensor names per shard. */
async function writeShards(dir: string): Promise<void> {
  await writeSafetensors(`${dir}/model-00001-of-00002.safetensors`, [
    { name: "a.weight", dtype: "F32", shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
    { name: "b.weight", dtype: "F32", shape: [2], data: new Float32Array([7, 8]) },
  ]);
  await writeSafetensors(`${dir}/model-00002-of-00002.safetensors`, [
    { name: "c.weight", dtype: "F16", shape: [3], data: Float16Array.from([0.5, -1, 2]) },
  ]);
}

function index(map: Record<string, string>): string {
  return JSON.stringify({ metadata: { total_size: 38 }, weight_map: map });
}

Deno.test("single-file checkpoint: names, info, reads", async () => {
  const dir = sharedPath("models/fixtures/gpt2-tiny");
  if (!dir) return;
  const ckpt = await openCheckpoint(dir);
  try {
    assert.equal(ckpt.files.length, 1);
    assert.ok(ckpt.files[0].endsWith("/model.safetensors"));
    assert.ok(ckpt.has("transformer.h.1.mlp.c_proj.weight"));
    assert.ok(!ckpt.has("lm_head.weight"));
    const info = ckpt.info("transformer.h.1.mlp.c_fc.weight");
    assert.deepEqual(info, { dtype: "F32", shape: [64, 256], file: ckpt.files[0], bytes: 64 * 256 * 4 });
    const t = await ckpt.readFloat("transformer.h.1.mlp.c_fc.weight", "f16");
    assert.ok(t.data instanceof Float16Array);
    assert.equal(t.data.length, 64 * 256);
    // 2 layers × 12 tensors + wte, wpe, ln_f.weight, ln_f.bias
    assert.equal(ckpt.names().length, 2 * 12 + 4);
    const file = await openSafetensors(ckpt.files[0]);
    assert.equal(ckpt.totalBytes(), file.size - file.dataStart, "the fixture is packed: all data is tensors");
    await file.close();
    const err = await expectError(
      ckpt.read("transformer.h.0.attn.c_attn"),
      CheckpointError,
      "no tensor",
      "similar:",
    );
    assert.ok(err.message.includes("transformer.h.0.attn.c_attn.weight"));
  } finally {
    await ckpt.close();
  }
});

Deno.test("sharded checkpoint equals the single-file one tensor by tensor", async () => {
  const single = sharedPath("models/fixtures/llama-tiny-gqa");
  const sharded = sharedPath("models/fixtures/llama-tiny-gqa-sharded");
  if (!single || !sharded) return;
  const [a, b] = await Promise.all([openCheckpoint(single), openCheckpoint(sharded)]);
  try {
    assert.equal(b.files.length, 2);
    assert.deepEqual([...b.names()].sort(), [...a.names()].sort());
    for (const name of a.names()) {
      const ra = await a.read(name), rb = await b.read(name);
      assert.deepEqual(rb.shape, ra.shape);
      assert.deepEqual(rb.bytes, ra.bytes, name);
    }
    assert.ok(b.info("model.layers.2.mlp.up_proj.weight").file.endsWith("model-00002-of-00002.safetensors"));
    assert.ok(b.info("model.layers.1.mlp.up_proj.weight").file.endsWith("model-00001-of-00002.safetensors"));
    assert.ok(b.info("lm_head.weight").file.endsWith("model-00002-of-00002.safetensors"));
    const idx = JSON.parse(await Deno.readTextFile(`${sharded}/model.safetensors.index.json`));
    assert.equal(b.totalBytes(), idx.metadata.total_size);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

Deno.test("fingerprint: stable, cheap, and changes when weights change", async () => {
  const src = sharedPath("models/fixtures/gpt2-tiny");
  const f16 = sharedPath("models/fixtures/gpt2-tiny-f16");
  if (!src || !f16) return;
  await withTempDir(async (dir) => {
    const a = await openCheckpoint(src);
    const fp = await a.fingerprint();
    assert.match(fp, /^[0-9a-f]{64}$/);
    assert.equal(await a.fingerprint(), fp);
    const h = await openCheckpoint(f16);
    assert.notEqual(await h.fingerprint(), fp);
    await h.close();
    // a faithful re-save has the same fingerprint; an edit of one matrix (same header) a new one
    const tensors = [];
    for (const name of a.names()) {
      const r = await a.read(name);
      tensors.push({ name, dtype: r.dtype, shape: r.shape, data: r.bytes });
    }
    await Deno.mkdir(`${dir}/same`);
    await writeSafetensors(`${dir}/same/model.safetensors`, tensors, { format: "pt" });
    const same = await openCheckpoint(`${dir}/same`);
    assert.equal(await same.fingerprint(), fp);
    await same.close();
    const target = "transformer.h.1.mlp.c_proj.weight";
    const w = (await a.readFloat(target, "f32")).data;
    const edited = tensors.map((t) =>
      t.name === target ? { ...t, data: new Uint8Array(w.map((x, i) => x + 1e-3 * Math.sin(i)).buffer) } : t
    );
    await Deno.mkdir(`${dir}/edited`);
    await writeSafetensors(`${dir}/edited/model.safetensors`, edited, { format: "pt" });
    const ed = await openCheckpoint(`${dir}/edited`);
    assert.notEqual(await ed.fingerprint(), fp);
    await ed.close();
    await a.close();
  });
});

Deno.test("shard index errors: missing shard, tensor not in its shard, bad weight_map", async () => {
  await withTempDir(async (dir) => {
    await writeShards(dir);
    const idx = `${dir}/model.safetensors.index.json`;
    const good = {
      "a.weight": "model-00001-of-00002.safetensors",
      "b.weight": "model-00001-of-00002.safetensors",
      "c.weight": "model-00002-of-00002.safetensors",
    };
    await Deno.writeTextFile(idx, index(good));
    const ok = await openCheckpoint(dir);
    assert.deepEqual(ok.names(), ["a.weight", "b.weight", "c.weight"]);
    assert.deepEqual(Array.from((await ok.readFloat("c.weight", "f32")).data), [0.5, -1, 2]);
    assert.deepEqual(Array.from((await ok.readFloat("a.weight", "f32", { start: 1, end: 2 })).data), [
      4,
      5,
      6,
    ]);
    await ok.close();

    await Deno.writeTextFile(idx, index({ ...good, "d.weight": "model-00003-of-00003.safetensors" }));
    await expectError(
      openCheckpoint(dir),
      CheckpointError,
      "model.safetensors.index.json",
      "shard model-00003-of-00003.safetensors",
      "is missing",
    );
    await Deno.writeTextFile(idx, index({ ...good, "c.weight": "model-00001-of-00002.safetensors" }));
    await expectError(
      openCheckpoint(dir),
      CheckpointError,
      'tensor "c.weight" in model-00001-of-00002.safetensors, which does not contain it',
    );
    await Deno.writeTextFile(idx, index({ "a.weight": "../elsewhere.safetensors" }));
    await expectError(openCheckpoint(dir), CheckpointError, "must be a file name in the directory");
    await Deno.writeTextFile(idx, JSON.stringify({ metadata: {} }));
    await expectError(openCheckpoint(dir), CheckpointError, "weight_map must be an object");
    await Deno.writeTextFile(idx, "{oops");
    await expectError(openCheckpoint(dir), CheckpointError, "cannot read the shard index");
    // a malformed shard surfaces as a SafetensorsError naming the shard
    await Deno.writeTextFile(idx, index(good));
    const shard2 = `${dir}/model-00002-of-00002.safetensors`;
    const bytes = await Deno.readFile(shard2);
    await Deno.writeFile(shard2, bytes.subarray(0, bytes.length - 2));
    await expectError(
      openCheckpoint(dir),
      SafetensorsError,
      "model-00002-of-00002.safetensors",
      'tensor "c.weight"',
    );
  });
});

Deno.test("directories without safetensors weights get clear errors", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/config.json`, "{}");
    await expectError(openCheckpoint(dir), CheckpointError, "no model.safetensors", "config.json");
    await Deno.writeFile(`${dir}/pytorch_model.bin`, new Uint8Array(4));
    await expectError(
      openCheckpoint(dir),
      CheckpointError,
      "needs safetensors",
      "pytorch_model.bin",
      "save_pretrained",
    );
    await Deno.remove(`${dir}/pytorch_model.bin`);
    await writeShards(dir);
    await expectError(
      openCheckpoint(dir),
      CheckpointError,
      "without an index",
      "model-00001-of-00002.safetensors",
    );
    await expectError(openCheckpoint(`${dir}/nope`), CheckpointError, "not a directory");
  });
});

const HF_VARS = ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HOME"];

async function withEnv(vars: Record<string, string | undefined>, fn: () => Promise<void>): Promise<void> {
  const saved = Object.fromEntries(HF_VARS.map((k) => [k, Deno.env.get(k)]));
  try {
    for (const k of HF_VARS) {
      const v = vars[k];
      if (v === undefined) Deno.env.delete(k);
      else Deno.env.set(k, v);
    }
    await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) Deno.env.delete(k);
      else Deno.env.set(k, v);
    }
  }
}

async function fakeSnapshot(cache: string, repo: string, commit: string, ref?: string): Promise<string> {
  const base = `${cache}/models--${repo.replace("/", "--")}`;
  const snap = `${base}/snapshots/${commit}`;
  await Deno.mkdir(snap, { recursive: true });
  await Deno.writeTextFile(`${snap}/config.json`, "{}");
  if (ref) {
    await Deno.mkdir(`${base}/refs`, { recursive: true });
    await Deno.writeTextFile(`${base}/refs/${ref}`, commit + "\n");
  }
  return snap;
}

Deno.test("resolveModelDir: local directories and a fake HF cache", async () => {
  await withTempDir(async (dir) => {
    // local directory (absolute, and relative to the cwd)
    assert.equal(await resolveModelDir(dir), dir);
    await expectError(resolveModelDir(`${dir}/missing`), CheckpointError, "does not exist");
    await Deno.writeTextFile(`${dir}/file`, "");
    await expectError(resolveModelDir(`${dir}/file`), CheckpointError, "is a file");

    const home = `${dir}/home`;
    const hfHome = `${dir}/hf`;
    const mainSnap = await fakeSnapshot(`${hfHome}/hub`, "org/model", "abc123", "main");
    await fakeSnapshot(`${hfHome}/hub`, "org/model", "def456"); // another snapshot, not main
    await withEnv({ HF_HOME: hfHome, HOME: home }, async () => {
      assert.deepEqual(hubCacheDirs(), [`${hfHome}/hub`, `${home}/.cache/huggingface/hub`]);
      assert.equal(await resolveModelDir("org/model"), mainSnap);
      assert.equal(
        await resolveModelDir("org/model@def456"),
        `${hfHome}/hub/models--org--model/snapshots/def456`,
      );
      // refs/main points at a snapshot that is gone
      await Deno.writeTextFile(`${hfHome}/hub/models--org--model/refs/main`, "zzz");
      await expectError(resolveModelDir("org/model"), CheckpointError, "ref main → zzz, snapshot missing");
      // no refs: the newest snapshot wins
      await Deno.remove(`${hfHome}/hub/models--org--model/refs`, { recursive: true });
      const base = `${hfHome}/hub/models--org--model/snapshots`;
      await Deno.utime(`${base}/abc123`, 1000, 1000);
      await Deno.utime(`${base}/def456`, 2000, 2000);
      assert.equal(await resolveModelDir("org/model"), `${base}/def456`);
      // a bare canonical name (models--gpt2)
      const gpt2 = await fakeSnapshot(`${hfHome}/hub`, "gpt2", "0001");
      assert.equal(await resolveModelDir("gpt2"), gpt2);
      // not cached: the error lists every place it looked
      const err = await expectError(resolveModelDir("other/thing"), CheckpointError, "not found; looked in");
      assert.ok(err.message.includes(`${hfHome}/hub/models--other--thing`));
      assert.ok(err.message.includes(`${home}/.cache/huggingface/hub/models--other--thing`));
      assert.ok(err.message.includes("does not download"));
    });
    // HF_HUB_CACHE takes precedence; ~/.cache/huggingface/hub is the fallback
    const hub = `${dir}/hubcache`;
    const fromHub = await fakeSnapshot(hub, "org/model", "111", "main");
    const fromHome = await fakeSnapshot(`${home}/.cache/huggingface/hub`, "org/other", "222", "main");
    await withEnv({ HF_HUB_CACHE: hub, HF_HOME: hfHome, HOME: home }, async () => {
      assert.equal(hubCacheDirs()[0], hub);
      assert.equal(await resolveModelDir("org/model"), fromHub);
      assert.equal(await resolveModelDir("org/other"), fromHome);
    });
    await withEnv({ HOME: home }, async () => {
      assert.equal(await resolveModelDir("org/other"), fromHome);
      await expectError(
        resolveModelDir("org/model"),
        CheckpointError,
        `${home}/.cache/huggingface/hub/models--org--model`,
      );
      await expectError(resolveModelDir("./not/here"), CheckpointError, "does not exist");
    });
  });
});

Deno.test("a resolved hub snapshot opens as a checkpoint (symlinked blobs, as the HF cache stores them)", async () => {
  await withTempDir(async (dir) => {
    const hub = `${dir}/hub`;
    const snap = await fakeSnapshot(hub, "org/tiny", "c0ffee", "main");
    await Deno.mkdir(`${hub}/models--org--tiny/blobs`);
    const blob = `${hub}/models--org--tiny/blobs/0123abcd`;
    await writeSafetensors(blob, [{ name: "w", dtype: "F32", shape: [2], data: new Float32Array([3, 4]) }]);
    await Deno.symlink("../../blobs/0123abcd", `${snap}/model.safetensors`);
    await withEnv({ HF_HUB_CACHE: hub, HOME: dir }, async () => {
      const ckpt: Checkpoint = await openCheckpoint(await resolveModelDir("org/tiny"));
      assert.deepEqual(Array.from((await ckpt.readFloat("w", "f32")).data), [3, 4]);
      assert.equal(ckpt.dir, snap);
      await ckpt.close();
    });
  });
});
