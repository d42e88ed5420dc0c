/**
 * NumPy `.npz` archives (a zip of `.npy` arrays): enough to read and write the covariance statistics the
 * reference ROME code saves (`mom2.mom2`, `mom2.count`, …). Reads stored and deflated members; writes
 * stored members. Arrays are little-endian f4/f8/i8/i4/u8 in C order.
 * @module
 */

/** One array of an npz file. */
export interface NpyArray {
  /** numpy dtype string, e.g. "<f4". */
  dtype: string;
  shape: number[];
  /** Values as f64 (integers included; exact up to 2^53). */
  data: Float64Array;
}

/** A malformed npz/npy file. */
export class NpzError extends Error {
  constructor(file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = "NpzError";
  }
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 of bytes (zip's checksum). */
function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

async function inflateRaw(data: Uint8Array): Promise<Uint8Array> {
  const ds = new DecompressionStream("deflate-raw");
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(ds);
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Parses one `.npy` payload. */
function parseNpy(bytes: Uint8Array, where: string): NpyArray {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (!magic.every((b, i) => bytes[i] === b)) throw new NpzError(where, "not a .npy array (bad magic)");
  const major = bytes[6];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hlen = major === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true);
  const hstart = major === 1 ? 10 : 12;
  const header = new TextDecoder().decode(bytes.subarray(hstart, hstart + hlen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) {
    throw new NpzError(where, `unreadable .npy header ${header}`);
  }
  if (fortran === "True") throw new NpzError(where, "Fortran-order arrays are not supported");
  const shape = shapeText.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  const n = shape.reduce((a, b) => a * b, 1);
  const off = hstart + hlen;
  const body = bytes.slice(off);
  let data: Float64Array;
  switch (descr) {
    case "<f4":
      data = Float64Array.from(new Float32Array(body.buffer, 0, n));
      break;
    case "<f8":
      data = new Float64Array(body.buffer, 0, n);
      break;
    case "<i8":
      data = Float64Array.from(new BigInt64Array(body.buffer, 0, n), Number);
      break;
    case "<i4":
      data = Float64Array.from(new Int32Array(body.buffer, 0, n));
      break;
    case "<u8":
      data = Float64Array.from(new BigUint64Array(body.buffer, 0, n), Number);
      break;
    default:
      throw new NpzError(where, `dtype ${descr} is not supported (f4, f8, i4, i8, u8)`);
  }
  return { dtype: descr, shape, data };
}

/** Reads every array of an `.npz` file, keyed by name without `.npy`. */
export async function readNpz(path: string): Promise<Map<string, NpyArray>> {
  const bytes = await Deno.readFile(path);
  const dv = new DataView(bytes.buffer);
  // end of central directory: last 22+ bytes
  let eocd = -1;
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 65557); i--) {
    if (dv.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new NpzError(path, "not a zip/npz file (no end of central directory)");
  const count = dv.getUint16(eocd + 10, true);
  let p = dv.getUint32(eocd + 16, true);
  const out = new Map<string, NpyArray>();
  for (let k = 0; k < count; k++) {
    if (dv.getUint32(p, true) !== 0x02014b50) throw new NpzError(path, "corrupt central directory");
    const method = dv.getUint16(p + 10, true);
    let csize = dv.getUint32(p + 20, true);
    const nameLen = dv.getUint16(p + 28, true), extraLen = dv.getUint16(p + 30, true);
    const commentLen = dv.getUint16(p + 32, true);
    let local = dv.getUint32(p + 42, true);
    const name = new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nameLen));
    // zip64 extra field (numpy writes it for large members)
    let e = p + 46 + nameLen;
    while (e < p + 46 + nameLen + extraLen) {
      const id = dv.getUint16(e, true), size = dv.getUint16(e + 2, true);
      if (id === 1) {
        let q = e + 4;
        if (dv.getUint32(p + 24, true) === 0xffffffff) q += 8;
        if (csize === 0xffffffff) csize = Number(dv.getBigUint64(q, true)), q += 8;
        if (local === 0xffffffff) local = Number(dv.getBigUint64(q, true));
      }
      e += 4 + size;
    }
    p += 46 + nameLen + extraLen + commentLen;
    const lNameLen = dv.getUint16(local + 26, true), lExtraLen = dv.getUint16(local + 28, true);
    const start = local + 30 + lNameLen + lExtraLen;
    const raw = bytes.subarray(start, start + csize);
    const payload = method === 0 ? raw : method === 8 ? await inflateRaw(raw) : null;
    if (!payload) throw new NpzError(path, `${name}: compression method ${method} is not supported`);
    out.set(name.replace(/\.npy$/, ""), parseNpy(payload, `${path}:${name}`));
  }
  return out;
}

function npyBytes(
  a: { dtype: "<f4" | "<i8"; shape: number[]; data: Float32Array | BigInt64Array },
): Uint8Array {
  let header = `{'descr': '${a.dtype}', 'fortran_order': False, 'shape': (${a.shape.join(", ")}${
    a.shape.length === 1 ? "," : ""
  }), }`;
  const pad = 64 - ((10 + header.length + 1) % 64);
  header += " ".repeat(pad % 64) + "\n";
  const h = new TextEncoder().encode(header);
  const out = new Uint8Array(10 + h.length + a.data.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, h.length, true);
  out.set(h, 10);
  out.set(new Uint8Array(a.data.buffer, a.data.byteOffset, a.data.byteLength), 10 + h.length);
  return out;
}

/** Encodes arrays as an uncompressed `.npz` (zip, stored members), as `np.savez` writes. */
export function encodeNpz(
  arrays: Record<string, { dtype: "<f4" | "<i8"; shape: number[]; data: Float32Array | BigInt64Array }>,
): Uint8Array {
  const enc = new TextEncoder();
  const locals: Uint8Array[] = [], centrals: Uint8Array[] = [];
  let offset = 0;
  for (const [key, a] of Object.entries(arrays)) {
    const name = enc.encode(`${key}.npy`);
    const body = npyBytes(a);
    const crc = crc32(body);
    const l = new Uint8Array(30 + name.length);
    const lv = new DataView(l.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, body.length, true);
    lv.setUint32(22, body.length, true);
    lv.setUint16(26, name.length, true);
    l.set(name, 30);
    const c = new Uint8Array(46 + name.length);
    const cv = new DataView(c.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, body.length, true);
    cv.setUint32(24, body.length, true);
    cv.setUint16(28, name.length, true);
    cv.setUint32(42, offset, true);
    c.set(name, 46);
    locals.push(l, body);
    centrals.push(c);
    offset += l.length + body.length;
  }
  const cdSize = centrals.reduce((s, c) => s + c.length, 0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, centrals.length, true);
  ev.setUint16(10, centrals.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  const out = new Uint8Array(offset + cdSize + 22);
  let p = 0;
  for (const part of [...locals, ...centrals, end]) out.set(part, p), p += part.length;
  return out;
}
