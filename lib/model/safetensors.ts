/**
 * A reader and writer for the safetensors format (https://github.com/huggingface/safetensors), written for
 * keg: no npm package is involved.
 *
 * Layout: an 8-byte little-endian u64 `n`, then `n` bytes of UTF-8 JSON (the header), then the data
 * section. The header maps tensor names to `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to
 * the start of the data section) plus an optional `__metadata__` object of string → string.
 *
 * {@linkcode openSafetensors} validates the whole header up front (every problem is a
 * {@linkcode SafetensorsError} naming the file and the tensor or field) and then reads tensors lazily, one
 * at a time, at their offsets: a multi-GB file is never held in memory. {@linkcode writeSafetensors}
 * writes to a temporary file next to the target and renames it into place, so a failed write never leaves a
 * partial file behind.
 *
 * Tensor data is assumed little-endian, as the format specifies; keg runs on little-endian hosts only.
 * @module
 */
import { bf16ToF32 } from "../gpu/dtype.ts";

/** Element types the safetensors format defines. */
export type SafetensorsDType =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL"
  | "F8_E4M3"
  | "F8_E5M2";

/** Bytes per element of every safetensors dtype. */
export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<SafetensorsDType, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

/** The float dtypes {@linkcode SafetensorsFile.readFloat} converts. */
export const FLOAT_DTYPES: readonly SafetensorsDType[] = ["F64", "F32", "F16", "BF16"];

/** The largest header accepted (the reference implementation's limit): 100 MB. */
export const MAX_HEADER_BYTES = 100_000_000;

/** A malformed safetensors file or a bad request to read or write one. */
export class SafetensorsError extends Error {
  /** The file involved. */
  readonly file: string;
  /** The tensor involved, if any. */
  readonly tensor: string | undefined;
  /** An error about `file` (and `tensor`, if given). */
  constructor(file: string, message: string, tensor?: string) {
    super(`${file}: ${tensor === undefined ? "" : `tensor ${JSON.stringify(tensor)}: `}${message}`);
    this.name = "SafetensorsError";
    this.file = file;
    this.tensor = tensor;
  }
}

/** Where a tensor lives in a safetensors file, as validated from the header. */
export interface SafetensorsEntry {
  /** Element type. */
  readonly dtype: SafetensorsDType;
  /** Shape (row-major); `[]` is a scalar. */
  readonly shape: readonly number[];
  /** `[begin, end)` byte offsets relative to the data section, as in the header. */
  readonly dataOffsets: readonly [number, number];
}

/** A tensor's raw bytes. `bytes` starts at offset 0 of its own ArrayBuffer, so it can be viewed as any array. */
export interface RawTensor {
  /** Element type. */
  dtype: SafetensorsDType;
  /** Shape of what was read (dim 0 is the row count when a row range was requested). */
  shape: number[];
  /** The little-endian element bytes. */
  bytes: Uint8Array<ArrayBuffer>;
}

/** The float array type produced for a conversion target. */
export type FloatArrayFor<T extends "f32" | "f16"> = T extends "f32" ? Float32Array : Float16Array;

/** A tensor converted to f32 or f16 by {@linkcode SafetensorsFile.readFloat}. */
export interface FloatTensor<T extends "f32" | "f16" = "f32" | "f16"> {
  /** The values (a Float32Array for "f32", a Float16Array for "f16"). */
  data: FloatArrayFor<T>;
  /** Shape of what was read. */
  shape: number[];
  /** The dtype stored in the file. */
  sourceDtype: SafetensorsDType;
  /** Finite values that became ±inf in the target type (e.g. |x| ≥ 65520 converted to f16). */
  overflow: number;
  /** Non-zero values that became ±0 in the target type (e.g. |x| < 2^-25 converted to f16). */
  underflow: number;
}

/** A half-open range of rows (along dim 0) to read instead of the whole tensor. */
export interface RowRange {
  /** First row. */
  start: number;
  /** One past the last row. */
  end: number;
}

function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

function isDType(x: unknown): x is SafetensorsDType {
  return typeof x === "string" && Object.hasOwn(SAFETENSORS_DTYPE_BYTES, x);
}

function isNonNegInt(x: unknown): x is number {
  return typeof x === "number" && Number.isSafeInteger(x) && x >= 0;
}

/** Parses and validates a header JSON text; `dataBytes` is the size of the data section. */
function parseHeader(
  file: string,
  text: string,
  dataBytes: number,
): { entries: Map<string, SafetensorsEntry>; metadata: Record<string, string> } {
  let json: unknown;
  // Shapes and offsets must be written as integers (the format's reference reader refuses `256.0` or
  // `1e3`); JSON.parse hides the difference, so the reviver looks at each number's source text.
  let bad: { source: string; field?: string; tensor?: string } | null = null;
  const reviver = (key: string, value: unknown, ctx?: { source?: string }): unknown => {
    if (
      typeof value === "number" && Number.isInteger(value) && value >= 0 && ctx?.source !== undefined &&
      !/^\d+$/.test(ctx.source)
    ) {
      bad ??= { source: ctx.source };
    } else if (bad && !bad.tensor && Array.isArray(value)) bad.field ??= key;
    else if (bad && !bad.tensor && value !== null && typeof value === "object" && bad.field) bad.tensor = key;
    return value;
  };
  try {
    json = JSON.parse(text, reviver as (key: string, value: unknown) => unknown);
  } catch (e) {
    throw new SafetensorsError(file, `header is not valid JSON: ${(e as Error).message}`);
  }
  if (bad) {
    const b = bad as { source: string; field?: string; tensor?: string };
    throw new SafetensorsError(
      file,
      `${b.field ?? "header"} holds ${b.source}, which is not written as a non-negative integer`,
      b.tensor,
    );
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new SafetensorsError(file, "header must be a JSON object");
  }
  const metadata: Record<string, string> = {};
  const entries = new Map<string, SafetensorsEntry>();
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        throw new SafetensorsError(file, "__metadata__ must be an object of strings");
      }
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== "string") {
          throw new SafetensorsError(
            file,
            `__metadata__[${JSON.stringify(k)}] must be a string, got ${typeof v}`,
          );
        }
        metadata[k] = v;
      }
      continue;
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new SafetensorsError(file, "entry must be an object {dtype, shape, data_offsets}", name);
    }
    const { dtype, shape, data_offsets: offsets } = value as Record<string, unknown>;
    if (!isDType(dtype)) {
      throw new SafetensorsError(
        file,
        `unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(SAFETENSORS_DTYPE_BYTES).join(", ")})`,
        name,
      );
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegInt)) {
      throw new SafetensorsError(
        file,
        `shape ${JSON.stringify(shape)} must be an array of non-negative integers`,
        name,
      );
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegInt)) {
      throw new SafetensorsError(
        file,
        `data_offsets ${JSON.stringify(offsets)} must be two non-negative integers [begin, end]`,
        name,
      );
    }
    const [begin, end] = offsets as [number, number];
    if (begin > end) {
      throw new SafetensorsError(file, `data_offsets [${begin}, ${end}] has begin > end`, name);
    }
    if (end > dataBytes) {
      throw new SafetensorsError(
        file,
        `data_offsets [${begin}, ${end}] run past the end of the data section (${dataBytes} bytes; file truncated?)`,
        name,
      );
    }
    const n = numel(shape);
    const need = n * SAFETENSORS_DTYPE_BYTES[dtype];
    if (!Number.isSafeInteger(need)) {
      throw new SafetensorsError(file, `shape ${fmtShape(shape)} is too large`, name);
    }
    if (end - begin !== need) {
      throw new SafetensorsError(
        file,
        `data_offsets [${begin}, ${end}] hold ${end - begin} bytes but ${dtype} ${
          fmtShape(shape)
        } needs ${need}`,
        name,
      );
    }
    entries.set(name, { dtype, shape: Object.freeze([...shape]), dataOffsets: Object.freeze([begin, end]) });
  }
  // No two tensors may share bytes (empty tensors hold none, so they cannot overlap anything).
  const byStart = [...entries].filter(([, e]) => e.dataOffsets[1] > e.dataOffsets[0])
    .sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0]);
  for (let i = 1; i < byStart.length; i++) {
    const [pn, pe] = byStart[i - 1], [cn, ce] = byStart[i];
    if (ce.dataOffsets[0] < pe.dataOffsets[1]) {
      throw new SafetensorsError(
        file,
        `data_offsets [${ce.dataOffsets.join(", ")}] overlap tensor ${JSON.stringify(pn)} at [${
          pe.dataOffsets.join(", ")
        }]`,
        cn,
      );
    }
  }
  // The tensors must cover the data section exactly: no holes and no trailing bytes (the format forbids
  // both, so that a file cannot carry hidden content).
  let at = 0;
  for (const [n, e] of byStart) {
    if (e.dataOffsets[0] !== at) {
      throw new SafetensorsError(
        file,
        `data_offsets [${e.dataOffsets.join(", ")}] leave bytes ${at}..${
          e.dataOffsets[0]
        } unused (holes are not allowed)`,
        n,
      );
    }
    at = e.dataOffsets[1];
  }
  if (at !== dataBytes) {
    throw new SafetensorsError(
      file,
      `${
        dataBytes - at
      } trailing byte(s) after the last tensor's data (the data section is ${dataBytes} bytes, the tensors cover ${at})`,
    );
  }
  return { entries, metadata };
}

async function readFully(
  file: Deno.FsFile,
  buf: Uint8Array,
  position: number,
  what: () => string,
): Promise<void> {
  await file.seek(position, Deno.SeekMode.Start);
  let off = 0;
  while (off < buf.length) {
    const n = await file.read(buf.subarray(off));
    if (n === null) throw new Error(`unexpected end of file after ${off} of ${buf.length} bytes (${what()})`);
    off += n;
  }
}

/** Counts finite source values that became infinite, and non-zero ones that became zero. */
function lossCounts(src: ArrayLike<number>, dst: ArrayLike<number>): { overflow: number; underflow: number } {
  let overflow = 0, underflow = 0;
  for (let i = 0; i < src.length; i++) {
    const d = dst[i];
    if (d === Infinity || d === -Infinity) {
      if (Number.isFinite(src[i])) overflow++;
    } else if (d === 0 && src[i] !== 0 && !Number.isNaN(src[i])) underflow++;
  }
  return { overflow, underflow };
}

/**
 * An open safetensors file with a validated header. Reads are serialised per file (they seek a shared
 * handle), so concurrent `read` calls are safe. Call {@linkcode SafetensorsFile.close} when done.
 */
export class SafetensorsFile {
  /** The path as given to {@linkcode openSafetensors}. */
  readonly path: string;
  /** File size in bytes. */
  readonly size: number;
  /** Byte position of the data section (8 + header length). */
  readonly dataStart: number;
  /** The header's `__metadata__` (empty when absent). */
  readonly metadata: Readonly<Record<string, string>>;
  /** The header JSON text exactly as stored (including padding), e.g. for fingerprints. */
  readonly headerText: string;
  #file: Deno.FsFile | null;
  #entries: Map<string, SafetensorsEntry>;
  #names: string[];
  #queue: Promise<unknown> = Promise.resolve();

  /** Use {@linkcode openSafetensors}. */
  constructor(
    path: string,
    file: Deno.FsFile,
    size: number,
    dataStart: number,
    headerText: string,
    entries: Map<string, SafetensorsEntry>,
    metadata: Record<string, string>,
  ) {
    this.path = path;
    this.#file = file;
    this.size = size;
    this.dataStart = dataStart;
    this.headerText = headerText;
    this.#entries = entries;
    this.metadata = Object.freeze(metadata);
    this.#names = [...entries.keys()].sort((a, b) =>
      entries.get(a)!.dataOffsets[0] - entries.get(b)!.dataOffsets[0] || (a < b ? -1 : a > b ? 1 : 0)
    );
  }

  /** Tensor names in file order (by data offset). */
  names(): string[] {
    return [...this.#names];
  }

  /** Whether the file holds a tensor of this name. */
  has(name: string): boolean {
    return this.#entries.has(name);
  }

  /** The validated header entry of a tensor; throws a SafetensorsError if absent. */
  info(name: string): SafetensorsEntry {
    const e = this.#entries.get(name);
    if (!e) {
      throw new SafetensorsError(this.path, `no such tensor (the file has ${this.#entries.size})`, name);
    }
    return e;
  }

  /**
   * Reads one tensor's bytes from disk (only those bytes), optionally only rows `[start, end)` of dim 0.
   */
  async read(name: string, rows?: RowRange): Promise<RawTensor> {
    const e = this.info(name);
    const shape = [...e.shape];
    let begin = 0, end = e.dataOffsets[1] - e.dataOffsets[0];
    if (rows) {
      if (!shape.length) {
        throw new SafetensorsError(this.path, "a row range needs a tensor of rank ≥ 1", name);
      }
      const n0 = shape[0];
      if (!isNonNegInt(rows.start) || !isNonNegInt(rows.end) || rows.start > rows.end || rows.end > n0) {
        throw new SafetensorsError(
          this.path,
          `row range [${rows.start}, ${rows.end}) is outside [0, ${n0})`,
          name,
        );
      }
      const rowBytes = numel(shape.slice(1)) * SAFETENSORS_DTYPE_BYTES[e.dtype];
      begin = rows.start * rowBytes;
      end = rows.end * rowBytes;
      shape[0] = rows.end - rows.start;
    }
    return { dtype: e.dtype, shape, bytes: await this.readBytes(name, begin, end) };
  }

  /** Reads bytes `[begin, end)` of a tensor's data (offsets relative to the tensor's first byte). */
  async readBytes(name: string, begin: number, end: number): Promise<Uint8Array<ArrayBuffer>> {
    const e = this.info(name);
    const size = e.dataOffsets[1] - e.dataOffsets[0];
    if (!isNonNegInt(begin) || !isNonNegInt(end) || begin > end || end > size) {
      throw new SafetensorsError(this.path, `byte range [${begin}, ${end}) is outside [0, ${size})`, name);
    }
    const bytes = new Uint8Array(end - begin);
    const job = this.#queue.then(async () => {
      if (!this.#file) throw new SafetensorsError(this.path, "file is closed", name);
      try {
        const at = this.dataStart + e.dataOffsets[0] + begin;
        await readFully(this.#file, bytes, at, () => `reading tensor ${JSON.stringify(name)}`);
      } catch (err) {
        if (err instanceof SafetensorsError) throw err;
        throw new SafetensorsError(this.path, (err as Error).message, name);
      }
      return bytes;
    });
    this.#queue = job.catch(() => {});
    return await job;
  }

  /**
   * Reads a float tensor (F32, F16, BF16 or F64) and converts it to f32 or f16 (round to nearest even).
   * BF16 → f32 and F16 → f32 are exact. The result counts values that overflow to ±inf or underflow to
   * ±0 in the target type, so callers can warn about an f16 run of a bf16 checkpoint.
   */
  async readFloat<T extends "f32" | "f16">(name: string, to: T, rows?: RowRange): Promise<FloatTensor<T>> {
    if (to !== "f32" && to !== "f16") {
      throw new SafetensorsError(
        this.path,
        `conversion target must be "f32" or "f16", got ${JSON.stringify(to)}`,
        name,
      );
    }
    const e = this.info(name);
    if (!FLOAT_DTYPES.includes(e.dtype)) {
      throw new SafetensorsError(
        this.path,
        `dtype ${e.dtype} is not a float type (${FLOAT_DTYPES.join(", ")})`,
        name,
      );
    }
    const raw = await this.read(name, rows);
    const buf = raw.bytes.buffer;
    let src: Float32Array<ArrayBuffer> | Float16Array<ArrayBuffer> | Float64Array<ArrayBuffer>;
    switch (e.dtype) {
      case "F32":
        src = new Float32Array(buf);
        break;
      case "F16":
        src = new Float16Array(buf);
        break;
      case "F64":
        src = new Float64Array(buf);
        break;
      default:
        src = bf16ToF32(new Uint16Array(buf)) as Float32Array<ArrayBuffer>;
    }
    let data: Float32Array<ArrayBuffer> | Float16Array<ArrayBuffer>;
    if (to === "f32") data = src instanceof Float32Array ? src : Float32Array.from(src);
    else data = src instanceof Float16Array ? src : Float16Array.from(src);
    const loss = src === data ? { overflow: 0, underflow: 0 } : lossCounts(src, data);
    return { data: data as FloatArrayFor<T>, shape: raw.shape, sourceDtype: e.dtype, ...loss };
  }

  /** Closes the file handle (waits for reads in flight). Idempotent. */
  async close(): Promise<void> {
    await this.#queue;
    this.#file?.close();
    this.#file = null;
  }
}

/**
 * Opens a safetensors file and validates its header: the 8-byte length (≤ {@linkcode MAX_HEADER_BYTES} and
 * within the file), UTF-8 JSON object, `__metadata__` of strings, and for every tensor a known dtype, a
 * shape of non-negative integers, `data_offsets` inside the data section whose size equals
 * numel × dtype size, and no overlap with another tensor. Throws a {@linkcode SafetensorsError} naming
 * the file (and the tensor or field) on any problem.
 */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    throw new SafetensorsError(path, `cannot open: ${(e as Error).message}`);
  }
  try {
    const stat = await file.stat();
    if (!stat.isFile) throw new SafetensorsError(path, "not a regular file");
    const size = stat.size;
    if (size < 8) {
      throw new SafetensorsError(path, `file is ${size} bytes, too short for the 8-byte header length`);
    }
    const lenBuf = new Uint8Array(8);
    await readFully(file, lenBuf, 0, () => "reading the header length");
    const n64 = new DataView(lenBuf.buffer).getBigUint64(0, true);
    if (n64 > BigInt(MAX_HEADER_BYTES)) {
      throw new SafetensorsError(
        path,
        `header length ${n64} exceeds the ${MAX_HEADER_BYTES}-byte limit (corrupt file?)`,
      );
    }
    const n = Number(n64);
    if (8 + n > size) {
      throw new SafetensorsError(
        path,
        `header length ${n} runs past the end of the file (${size} bytes; truncated or not a safetensors file?)`,
      );
    }
    if (n < 2) throw new SafetensorsError(path, `header length ${n} is too small for a JSON object`);
    const headerBytes = new Uint8Array(n);
    await readFully(file, headerBytes, 8, () => "reading the header");
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
    } catch {
      throw new SafetensorsError(path, "header is not valid UTF-8");
    }
    const { entries, metadata } = parseHeader(path, text, size - 8 - n);
    return new SafetensorsFile(path, file, size, 8 + n, text, entries, metadata);
  } catch (e) {
    file.close();
    if (e instanceof SafetensorsError) throw e;
    throw new SafetensorsError(path, (e as Error).message);
  }
}

/** One tensor to write with {@linkcode writeSafetensors}. */
export interface TensorToWrite {
  /** Tensor name (not `__metadata__`; unique within the file). */
  name: string;
  /** Element type stored in the file. */
  dtype: SafetensorsDType;
  /** Shape (row-major). */
  shape: readonly number[];
  /**
   * The element bytes: a Uint8Array of raw little-endian bytes, or a typed array matching the dtype
   * (Float32Array for F32, Float16Array or Uint16Array for F16, Uint16Array for BF16, Float64Array for F64,
   * Int32Array for I32, …).
   */
  data: ArrayBufferView;
}

const VIEW_DTYPES: Record<string, readonly SafetensorsDType[]> = {
  Float64Array: ["F64"],
  Float32Array: ["F32"],
  Float16Array: ["F16"],
  Uint16Array: ["F16", "BF16", "U16"],
  BigInt64Array: ["I64"],
  BigUint64Array: ["U64"],
  Int32Array: ["I32"],
  Uint32Array: ["U32"],
  Int16Array: ["I16"],
  Int8Array: ["I8"],
};

function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Writes tensors to a safetensors file: the header lists `__metadata__` (if given) then tensors in sorted
 * name order, packed contiguously in that order, and is padded with spaces so the data section starts at a
 * multiple of 8 bytes. Data goes to `path + ".tmp-<random>"`, which is synced and renamed to `path`; on any
 * failure the temporary file is removed and `path` is left as it was.
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  const sorted = [...tensors].sort((a, b) => compareNames(a.name, b.name));
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") {
        throw new SafetensorsError(path, `__metadata__[${JSON.stringify(k)}] must be a string`);
      }
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (let i = 0; i < sorted.length; i++) {
    const t = sorted[i];
    if (t.name === "__metadata__") {
      throw new SafetensorsError(path, "the name __metadata__ is reserved", t.name);
    }
    if (i > 0 && sorted[i - 1].name === t.name) {
      throw new SafetensorsError(path, "duplicate tensor name", t.name);
    }
    if (!isDType(t.dtype)) {
      throw new SafetensorsError(path, `unknown dtype ${JSON.stringify(t.dtype)}`, t.name);
    }
    if (!Array.isArray(t.shape) || !t.shape.every(isNonNegInt)) {
      throw new SafetensorsError(
        path,
        `shape ${JSON.stringify(t.shape)} must be non-negative integers`,
        t.name,
      );
    }
    if (!ArrayBuffer.isView(t.data)) throw new SafetensorsError(path, "data must be a typed array", t.name);
    const kind = t.data.constructor.name;
    const allowed = VIEW_DTYPES[kind];
    if (allowed && !allowed.includes(t.dtype)) {
      throw new SafetensorsError(path, `${kind} data cannot be written as ${t.dtype}`, t.name);
    }
    const need = numel(t.shape) * SAFETENSORS_DTYPE_BYTES[t.dtype];
    if (t.data.byteLength !== need) {
      throw new SafetensorsError(
        path,
        `data holds ${t.data.byteLength} bytes but ${t.dtype} ${fmtShape(t.shape)} needs ${need}`,
        t.name,
      );
    }
    header[t.name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + need] };
    offset += need;
  }
  let json = JSON.stringify(header);
  let headerBytes = new TextEncoder().encode(json);
  const pad = (8 - (headerBytes.length % 8)) % 8;
  if (pad) {
    json += " ".repeat(pad);
    headerBytes = new TextEncoder().encode(json);
  }
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(headerBytes.length), true);

  const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  let file: Deno.FsFile | null = null;
  try {
    file = await Deno.open(tmp, { write: true, createNew: true });
    const writeAll = async (bytes: Uint8Array) => {
      let off = 0;
      while (off < bytes.length) off += await file!.write(bytes.subarray(off));
    };
    await writeAll(prefix);
    await writeAll(headerBytes);
    for (const t of sorted) {
      await writeAll(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    }
    await file.syncData();
    file.close();
    file = null;
    await Deno.rename(tmp, path);
  } catch (e) {
    try {
      file?.close();
    } catch { /* already closed */ }
    await Deno.remove(tmp).catch(() => {});
    throw new SafetensorsError(path, `write failed: ${(e as Error).message}`);
  }
}
