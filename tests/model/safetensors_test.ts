import assert from "node:assert/strict";
import {
  openSafetensors,
  SafetensorsError,
  type SafetensorsFile,
  type TensorToWrite,
  writeSafetensors,
} from "../../lib/model/safetensors.ts";
import { randArray, sharedPath } from "../_util.ts";

const enc = new TextEncoder();

/** A safetensors file from a header (object or raw text) and a data section; `len` overrides the length. */
async function rawFile(
  dir: string,
  header: unknown,
  data: Uint8Array | number,
  len?: bigint,
): Promise<string> {
  const text = typeof header === "string" ? header : JSON.stringify(header);
  const h = enc.encode(text);
  const body = typeof data === "number" ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + body.length);
  new DataView(out.buffer).setBigUint64(0, len ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(body, 8 + h.length);
  const path = `${dir}/t${crypto.randomUUID().slice(0, 6)}.safetensors`;
  await Deno.writeFile(path, out);
  return path;
}

async function expectError(p: Promise<unknown>, ...parts: (string | RegExp)[]): Promise<SafetensorsError> {
  const err = await p.then(() => null, (e) => e);
  assert.ok(err instanceof SafetensorsError, `expected a SafetensorsError, got ${err}`);
  for (const part of parts) {
    if (typeof part === "string") assert.ok(err.message.includes(part), `"${err.message}" lacks "${part}"`);
    else assert.match(err.message, part);
  }
  return err;
}

/** f32 → bf16 bits, round to nearest even (independent of lib/: via the f32 bit pattern). */
function bf16Round(x: Float32Array): Float32Array {
  const u = new Uint32Array(Float32Array.from(x).buffer);
  for (let i = 0; i < u.length; i++) {
    const lower = u[i] & 0xffff, upper = u[i] >>> 16;
    const up = lower > 0x8000 || (lower === 0x8000 && (upper & 1) === 1);
    u[i] = ((upper + (up ? 1 : 0)) << 16) >>> 0;
  }
  return new Float32Array(u.buffer);
}

async function readAllF32(f: SafetensorsFile): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const n of f.names()) out.set(n, (await f.readFloat(n, "f32")).data);
  return out;
}

Deno.test("reads the gpt2-tiny fixture: header, metadata, shapes, lazy per-tensor reads", async () => {
  const path = sharedPath("models/fixtures/gpt2-tiny/model.safetensors");
  if (!path) return;
  const f = await openSafetensors(path);
  try {
    assert.deepEqual({ ...f.metadata }, { format: "pt" });
    assert.equal(f.dataStart % 8, 0, "data section is 8-byte aligned");
    const names = f.names();
    assert.ok(names.includes("transformer.wte.weight"));
    assert.ok(!names.includes("lm_head.weight"), "tied lm_head is not stored");
    // file order is sorted-name order for this fixture, and offsets are packed
    assert.deepEqual(names, [...names].sort());
    let end = 0;
    for (const n of names) {
      const e = f.info(n);
      assert.equal(e.dtype, "F32");
      assert.equal(e.dataOffsets[0], end);
      end = e.dataOffsets[1];
    }
    assert.equal(f.dataStart + end, f.size);
    assert.deepEqual(f.info("transformer.h.0.attn.c_attn.weight").shape, [64, 192]);
    const raw = await f.read("transformer.wpe.weight");
    assert.deepEqual(raw.shape, [64, 64]);
    assert.equal(raw.bytes.byteOffset, 0);
    const fl = await f.readFloat("transformer.wpe.weight", "f32");
    assert.deepEqual(Array.from(fl.data), Array.from(new Float32Array(raw.bytes.buffer)));
    assert.equal(fl.overflow, 0);
    // a row range reads exactly those rows
    const rows = await f.readFloat("transformer.wpe.weight", "f32", { start: 3, end: 5 });
    assert.deepEqual(rows.shape, [2, 64]);
    assert.deepEqual(Array.from(rows.data), Array.from(fl.data.subarray(3 * 64, 5 * 64)));
    // the values are real weights: finite, not all equal
    assert.ok(fl.data.every(Number.isFinite));
    assert.ok(new Set(fl.data).size > 1000);
    // concurrent reads on one handle each get their own bytes
    const all = await Promise.all(names.map((n) => f.read(n)));
    for (let i = 0; i < names.length; i++) {
      const again = await f.read(names[i]);
      assert.deepEqual(all[i].bytes, again.bytes, names[i]);
    }
  } finally {
    await f.close();
  }
  await expectError(f.read("transformer.wpe.weight"), "file is closed");
});

Deno.test("F16 and BF16 fixtures convert exactly; f32 → f16 matches the F16 file bit for bit", async () => {
  const p32 = sharedPath("models/fixtures/gpt2-tiny/model.safetensors");
  const p16 = sharedPath("models/fixtures/gpt2-tiny-f16/model.safetensors");
  const pbf = sharedPath("models/fixtures/gpt2-tiny-bf16/model.safetensors");
  if (!p32 || !p16 || !pbf) return;
  const [f32, f16, bf16] = await Promise.all([
    openSafetensors(p32),
    openSafetensors(p16),
    openSafetensors(pbf),
  ]);
  try {
    const orig = await readAllF32(f32);
    assert.deepEqual(f16.names(), f32.names());
    assert.deepEqual(bf16.names(), f32.names());
    for (const [name, x] of orig) {
      assert.equal(f16.info(name).dtype, "F16");
      assert.equal(bf16.info(name).dtype, "BF16");
      // The fixtures are the f32 weights rounded to nearest even (fixtures/README.md), so the widening
      // F16/BF16 → f32 conversion must reproduce that rounding exactly: no tolerance.
      const h = await f16.readFloat(name, "f32");
      assert.deepEqual(Array.from(h.data), Array.from(Float32Array.from(Float16Array.from(x))), name);
      const b = await bf16.readFloat(name, "f32");
      assert.deepEqual(Array.from(b.data), Array.from(bf16Round(x)), name);
      // f32 → f16 on load gives the F16 file's bits
      const down = await f32.readFloat(name, "f16");
      assert.ok(down.data instanceof Float16Array);
      const fileBits = (await f16.read(name)).bytes;
      assert.deepEqual(new Uint8Array(down.data.buffer), fileBits, name);
      // F16 → f16 is the file's bytes unchanged
      const same = await f16.readFloat(name, "f16");
      assert.deepEqual(new Uint8Array(same.data.buffer), fileBits);
      assert.equal(h.overflow + b.overflow + down.overflow + same.overflow, 0);
    }
  } finally {
    await Promise.all([f32.close(), f16.close(), bf16.close()]);
  }
});

Deno.test("readFloat reports values that overflow (and underflow) in the target type", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const vals = [1, 70000, -1e6, 65504, 65519, 65520, -65520, Infinity, -Infinity, NaN, 1e-9, 0, -0, 6e-8];
    const x = new Float32Array(vals);
    const bf = new Uint16Array(
      new Uint32Array(bf16Round(new Float32Array([3e38, -2, 1e5])).buffer).map((u) => u >>> 16),
    );
    const path = `${dir}/o.safetensors`;
    await writeSafetensors(path, [
      { name: "a", dtype: "F32", shape: [vals.length], data: x },
      { name: "b", dtype: "BF16", shape: [3], data: bf },
      { name: "c", dtype: "F64", shape: [3], data: new Float64Array([1e39, -1e-50, 2.5]) },
      { name: "i", dtype: "I64", shape: [2], data: new BigInt64Array([5n, -7n]) },
    ]);
    const f = await openSafetensors(path);
    const a = await f.readFloat("a", "f16");
    // 70000, -1e6, 65520 and -65520 round to ±inf in f16; 65519 rounds down to 65504; ±inf were not finite.
    assert.equal(a.overflow, 4);
    // 1e-9 is below half the smallest f16 subnormal (2^-25 ≈ 3e-8) and becomes 0; 6e-8 survives.
    assert.equal(a.underflow, 1);
    assert.equal(a.data[4], 65504);
    assert.ok(Number.isNaN(a.data[9]));
    assert.equal((await f.readFloat("a", "f32")).overflow, 0);
    const b = await f.readFloat("b", "f16");
    assert.equal(b.overflow, 2, "3e38 and 1e5 overflow f16");
    assert.equal(b.sourceDtype, "BF16");
    const c = await f.readFloat("c", "f32");
    assert.equal(c.overflow, 1);
    assert.equal(c.underflow, 1);
    assert.equal(c.data[2], 2.5);
    const i = await f.read("i");
    assert.deepEqual(Array.from(new BigInt64Array(i.bytes.buffer)), [5n, -7n]);
    await expectError(f.readFloat("i", "f32"), 'tensor "i"', "I64 is not a float type");
    await expectError(f.readFloat("nope", "f32"), 'tensor "nope"', "no such tensor");
    await f.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("malformed files: each gives a SafetensorsError naming the file and the problem", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const good = {
      __metadata__: { format: "pt" },
      w: { dtype: "F32", shape: [5, 6], data_offsets: [0, 120] },
    };
    const ok = await rawFile(dir, good, 120);
    await (await openSafetensors(ok)).close();

    // truncated: the data section is shorter than the offsets claim
    const trunc = await rawFile(dir, good, 100);
    await expectError(
      openSafetensors(trunc),
      trunc,
      'tensor "w"',
      "run past the end of the data section",
      "truncated",
    );
    // a real fixture cut short
    const fixture = sharedPath("models/fixtures/gpt2-tiny/model.safetensors");
    if (fixture) {
      const bytes = await Deno.readFile(fixture);
      const cut = `${dir}/cut.safetensors`;
      await Deno.writeFile(cut, bytes.subarray(0, bytes.length - 1000));
      await expectError(openSafetensors(cut), "cut.safetensors", "run past the end of the data section");
      const cutHeader = `${dir}/cut_header.safetensors`;
      await Deno.writeFile(cutHeader, bytes.subarray(0, 100));
      await expectError(openSafetensors(cutHeader), "header length", "runs past the end of the file");
    }
    // header length past EOF, absurd header length, file shorter than 8 bytes, empty
    await expectError(
      openSafetensors(await rawFile(dir, good, 120, 10_000n)),
      "header length 10000 runs past",
    );
    await expectError(
      openSafetensors(await rawFile(dir, good, 120, 1n << 62n)),
      "exceeds the 100000000-byte limit",
    );
    const tiny = `${dir}/tiny.safetensors`;
    await Deno.writeFile(tiny, new Uint8Array(5));
    await expectError(openSafetensors(tiny), "5 bytes, too short");
    await expectError(openSafetensors(`${dir}/missing.safetensors`), "missing.safetensors", "cannot open");
    // not JSON, not an object, not UTF-8
    await expectError(openSafetensors(await rawFile(dir, "{not json", 0)), "not valid JSON");
    await expectError(openSafetensors(await rawFile(dir, "[1, 2]", 0)), "must be a JSON object");
    const bad = await rawFile(dir, "{}  ", 0);
    const b = await Deno.readFile(bad);
    b[9] = 0xff;
    await Deno.writeFile(bad, b);
    await expectError(openSafetensors(bad), "not valid UTF-8");
    // __metadata__ values must be strings
    await expectError(
      openSafetensors(await rawFile(dir, { ...good, __metadata__: { step: 3 } }, 120)),
      '__metadata__["step"] must be a string',
    );
    // wrong dtype size: the example message of the brief
    const wrong = await rawFile(dir, { w: { dtype: "F32", shape: [5, 6], data_offsets: [0, 100] } }, 100);
    await expectError(
      openSafetensors(wrong),
      `${wrong}: tensor "w": data_offsets [0, 100] hold 100 bytes but F32 [5, 6] needs 120`,
    );
    // a dtype whose element size does not fit the bytes: 60 bytes of F16 [5, 6] is right, of BF16 [5, 7] not
    await expectError(
      openSafetensors(await rawFile(dir, { w: { dtype: "BF16", shape: [5, 7], data_offsets: [0, 60] } }, 60)),
      "hold 60 bytes but BF16 [5, 7] needs 70",
    );
    await expectError(
      openSafetensors(await rawFile(dir, { w: { dtype: "F24", shape: [1], data_offsets: [0, 3] } }, 3)),
      'unknown dtype "F24"',
    );
    await expectError(
      openSafetensors(await rawFile(dir, { w: { dtype: "F32", shape: [2, -1], data_offsets: [0, 8] } }, 8)),
      "shape [2,-1] must be an array of non-negative integers",
    );
    await expectError(
      openSafetensors(await rawFile(dir, { w: { dtype: "F32", shape: [1.5], data_offsets: [0, 8] } }, 8)),
      "non-negative integers",
    );
    await expectError(
      openSafetensors(await rawFile(dir, { w: { dtype: "F32", shape: [2], data_offsets: [8] } }, 8)),
      'tensor "w"',
      "data_offsets [8] must be two",
    );
    await expectError(
      openSafetensors(await rawFile(dir, { w: { dtype: "F32", shape: [0], data_offsets: [8, 0] } }, 8)),
      "begin > end",
    );
    await expectError(
      openSafetensors(await rawFile(dir, { w: [1, 2] }, 0)),
      'tensor "w"',
      "must be an object",
    );
    // overlapping offsets
    const overlap = {
      a: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
      b: { dtype: "F32", shape: [4], data_offsets: [12, 28] },
    };
    await expectError(
      openSafetensors(await rawFile(dir, overlap, 28)),
      'tensor "b": data_offsets [12, 28] overlap tensor "a" at [0, 16]',
    );
    // the tensors must cover the data section exactly (the format forbids holes and trailing bytes)
    const holes = {
      a: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
      c: { dtype: "U8", shape: [], data_offsets: [20, 21] },
    };
    await expectError(
      openSafetensors(await rawFile(dir, holes, 21)),
      'tensor "c": data_offsets [20, 21] leave bytes 16..20 unused',
    );
    await expectError(
      openSafetensors(await rawFile(dir, { a: holes.a }, 24)),
      "8 trailing byte(s) after the last tensor's data",
    );
    // shapes and offsets written as floats are refused (JSON.parse alone would read 4.0 as 4)
    await expectError(
      openSafetensors(await rawFile(dir, '{"a":{"dtype":"F32","shape":[4.0],"data_offsets":[0,16]}}', 16)),
      'tensor "a": shape holds 4.0, which is not written as a non-negative integer',
    );
    await expectError(
      openSafetensors(await rawFile(dir, '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,1.6e1]}}', 16)),
      'tensor "a": data_offsets holds 1.6e1',
    );
    // empty tensors hold no bytes, so they overlap nothing
    const fine = {
      a: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
      e: { dtype: "F32", shape: [0, 3], data_offsets: [8, 8] },
      c: { dtype: "U8", shape: [], data_offsets: [16, 17] },
    };
    const ff = await openSafetensors(await rawFile(dir, fine, 17));
    assert.deepEqual(ff.names(), ["a", "e", "c"]);
    assert.equal((await ff.read("e")).bytes.length, 0);
    assert.deepEqual((await ff.read("c")).shape, []);
    await expectError(ff.read("c", { start: 0, end: 1 }), "row range needs a tensor of rank ≥ 1");
    await expectError(ff.read("a", { start: 2, end: 5 }), "row range [2, 5) is outside [0, 4)");
    await ff.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("reads are lazy: one small tensor of a 3 GiB (sparse) file, past the 2^31 offset", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const big = 3 * 2 ** 30;
    const header = {
      big: { dtype: "U8", shape: [big / 1024, 1024], data_offsets: [0, big] },
      small: { dtype: "F32", shape: [4], data_offsets: [big, big + 16] },
    };
    let text = JSON.stringify(header);
    text += " ".repeat((8 - (text.length % 8)) % 8);
    const path = `${dir}/sparse.safetensors`;
    const f = await Deno.open(path, { write: true, create: true });
    const prefix = new Uint8Array(8);
    new DataView(prefix.buffer).setBigUint64(0, BigInt(text.length), true);
    await f.write(prefix);
    await f.write(enc.encode(text));
    await f.truncate(8 + text.length + big + 16); // sparse: no 3 GiB written to disk
    await f.seek(8 + text.length + big, Deno.SeekMode.Start);
    await f.write(new Uint8Array(new Float32Array([1.5, -2, 3.25, 4]).buffer));
    f.close();
    const st = await openSafetensors(path);
    assert.equal(st.size, 8 + text.length + big + 16);
    const small = await st.readFloat("small", "f32");
    assert.deepEqual(Array.from(small.data), [1.5, -2, 3.25, 4]);
    const rows = await st.read("big", { start: 2 ** 20, end: 2 ** 20 + 2 });
    assert.deepEqual(rows.shape, [2, 1024]);
    assert.equal(rows.bytes.length, 2048);
    await st.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writer round trip: sorted names, 8-byte aligned data, all dtypes, metadata", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/w.safetensors`;
    const tensors: TensorToWrite[] = [
      { name: "z.f32", dtype: "F32", shape: [3, 5], data: randArray(15, 1) },
      { name: "a.f16", dtype: "F16", shape: [7], data: Float16Array.from(randArray(7, 2)) },
      {
        name: "m.bf16",
        dtype: "BF16",
        shape: [2, 2],
        data: new Uint16Array([0x3f80, 0xbf80, 0x4000, 0x7f80]),
      },
      { name: "b.i64", dtype: "I64", shape: [2], data: new BigInt64Array([1n, -1n]) },
      { name: "c.u8", dtype: "U8", shape: [3], data: new Uint8Array([1, 2, 3]) },
      { name: "d.bool", dtype: "BOOL", shape: [1], data: new Uint8Array([1]) },
      { name: "e.scalar", dtype: "F64", shape: [], data: new Float64Array([Math.PI]) },
      { name: "f.empty", dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
    ];
    await writeSafetensors(path, tensors, { format: "pt", note: "keg test" });
    const bytes = await Deno.readFile(path);
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    assert.equal(n % 8, 0);
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
    assert.match(text, /^\{"__metadata__":\{"format":"pt","note":"keg test"\},"a\.f16":/);
    assert.match(text, /\} *$/);
    const f = await openSafetensors(path);
    assert.deepEqual(f.names(), tensors.map((t) => t.name).sort());
    assert.deepEqual({ ...f.metadata }, { format: "pt", note: "keg test" });
    for (const t of tensors) {
      const r = await f.read(t.name);
      assert.equal(r.dtype, t.dtype);
      assert.deepEqual(r.shape, [...t.shape]);
      assert.deepEqual(r.bytes, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), t.name);
    }
    assert.deepEqual(Array.from((await f.readFloat("m.bf16", "f32")).data), [1, -1, 2, Infinity]);
    await f.close();
    // overwriting an existing file replaces it; no temporary files remain
    await writeSafetensors(path, [{ name: "x", dtype: "F32", shape: [1], data: new Float32Array([7]) }]);
    const g = await openSafetensors(path);
    assert.deepEqual(g.names(), ["x"]);
    assert.deepEqual({ ...g.metadata }, {});
    await g.close();
    const left = [];
    for await (const e of Deno.readDir(dir)) left.push(e.name);
    assert.deepEqual(left, ["w.safetensors"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writer reproduces the gpt2-tiny fixture byte for byte", async () => {
  const src = sharedPath("models/fixtures/gpt2-tiny/model.safetensors");
  if (!src) return;
  const dir = await Deno.makeTempDir();
  try {
    const f = await openSafetensors(src);
    const tensors: TensorToWrite[] = [];
    for (const name of f.names()) {
      const r = await f.read(name);
      tensors.push({ name, dtype: r.dtype, shape: r.shape, data: r.bytes });
    }
    await f.close();
    const out = `${dir}/model.safetensors`;
    await writeSafetensors(out, tensors, { format: "pt" });
    assert.deepEqual(await Deno.readFile(out), await Deno.readFile(src));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writer failures leave no file behind", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const target = `${dir}/out.safetensors`;
    const one = (over: Partial<TensorToWrite>): TensorToWrite[] => [
      { name: "w", dtype: "F32", shape: [2, 3], data: new Float32Array(6), ...over },
    ];
    await expectError(
      writeSafetensors(target, one({ shape: [2, 4] })),
      'tensor "w"',
      "holds 24 bytes but F32 [2, 4] needs 32",
    );
    await expectError(
      writeSafetensors(target, one({ dtype: "BF16", shape: [2, 6] })),
      "Float32Array data cannot be written as BF16",
    );
    await expectError(writeSafetensors(target, [...one({}), ...one({})]), "duplicate tensor name");
    await expectError(writeSafetensors(target, one({ name: "__metadata__" })), "reserved");
    await expectError(
      writeSafetensors(target, one({}), { step: 1 } as unknown as Record<string, string>),
      "must be a string",
    );
    // the rename fails (the target is a non-empty directory) after all data was written: the temporary
    // file must be removed and the directory left alone
    const blocked = `${dir}/blocked.safetensors`;
    await Deno.mkdir(blocked);
    await Deno.writeTextFile(`${blocked}/keep`, "x");
    await expectError(writeSafetensors(blocked, one({})), "write failed");
    // the target directory does not exist: nothing is created
    await expectError(writeSafetensors(`${dir}/no/such/dir.safetensors`, one({})), "write failed");
    const left = [];
    for await (const e of Deno.readDir(dir)) left.push(e.name);
    assert.deepEqual(left, ["blocked.safetensors"]);
    assert.equal(await Deno.readTextFile(`${blocked}/keep`), "x");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("integer tensors of the ROME covariance file read raw", async () => {
  const path = sharedPath("models/tiny-gpt2-counterfact/rome_reference/mom2_layer0.safetensors");
  if (!path) return;
  const f = await openSafetensors(path);
  try {
    // header key order differs from data order here ("count" first); metadata carries the sample count
    assert.deepEqual(f.names(), ["count", "mom2"]);
    const c = await f.read("count");
    assert.equal(c.dtype, "I64");
    assert.equal(new BigInt64Array(c.bytes.buffer)[0], BigInt(f.metadata.count));
    const row = await f.readFloat("mom2", "f32", { start: 0, end: 1 });
    assert.deepEqual(row.shape, [1, 1024]);
    assert.ok(row.data[0] > 0, "a covariance diagonal is positive");
  } finally {
    await f.close();
  }
});
