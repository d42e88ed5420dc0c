/**
 * Saved edits: keg's one on-disk format for {@link AppliedEdit}s, a safetensors file (`keg-edits-v2`) that
 * `keg edit --save` writes, `generate --edits` reads and a sequential evaluation keeps per record to resume.
 *
 * | tensor / metadata key   | content                                                   |
 * | ----------------------- | --------------------------------------------------------- |
 * | `edit.NNNN.u`           | F32 [rank, d_in], key-side factors                        |
 * | `edit.NNNN.r`           | F32 [rank, d_out], value-side factors (ΔW = Σ uᵢ rᵢᵀ)     |
 * | `edit.NNNN.layer`       | the layer                                                 |
 * | `edit.NNNN.tensor`      | checkpoint name of the edited weight                      |
 * | `edit.NNNN.method`      | rome, r-rome, p-rome, memit, …                            |
 * | `edit.NNNN.requests`    | JSON list of the requests the delta serves                |
 * | `edit.NNNN.batch`       | entries of one multi-layer editor call share it           |
 * | `format`, `count`       | `keg-edits-v2`, the number of entries                     |
 * | `base_fingerprint`      | the base model's fingerprint (every entry's)              |
 * | `hparams`               | the hyper-parameters, JSON (informative)                  |
 *
 * Files of the earlier `keg-edits-v1` layout (rank-one vectors, one request each) are read too. A file
 * whose count is missing or does not match its tensors is refused (never "0 edits applied").
 * @module
 */
import { openSafetensors, type TensorToWrite, writeSafetensors } from "../model/safetensors.ts";
import type { LoadedModel } from "../model/load.ts";
import { f32ToBf16 } from "../gpu/dtype.ts";
import { writeDirAtomic } from "../util/fs.ts";
import { type AppliedEdit, checkDelta, editableWeight, rankOneDelta } from "./applied.ts";
import { type EditRequest, normalizeRequest } from "./request.ts";

/** File name of the deltas inside a save directory. */
export const DELTAS_FILE = "keg_edits.safetensors";

/** The format tag of files written now. */
export const EDITS_FORMAT = "keg-edits-v2";

const key = (i: number) => `edit.${String(i).padStart(4, "0")}`;

/**
 * Writes edits (in order) to a safetensors file at `path` (write-then-rename; stale temporary files of an
 * earlier killed write beside it are removed first). Every edit must come from the same base model.
 */
export async function writeEditsFile(
  path: string,
  edits: readonly AppliedEdit[],
  hparams?: unknown,
): Promise<void> {
  const fps = new Set(edits.map((e) => e.fingerprint));
  if (fps.size > 1) throw new Error(`${path}: the edits come from ${fps.size} different base models`);
  const tensors: TensorToWrite[] = [];
  const meta: Record<string, string> = { format: EDITS_FORMAT, count: String(edits.length) };
  if (edits.length) meta.base_fingerprint = edits[0].fingerprint;
  if (hparams !== undefined) meta.hparams = JSON.stringify(hparams);
  edits.forEach((e, i) => {
    const p = key(i);
    checkDelta(e.delta, `${path}: ${p}`);
    const d = e.delta;
    tensors.push({ name: `${p}.u`, dtype: "F32", shape: [d.rank, d.dIn], data: d.u });
    tensors.push({ name: `${p}.r`, dtype: "F32", shape: [d.rank, d.dOut], data: d.r });
    meta[`${p}.layer`] = String(e.layer);
    meta[`${p}.tensor`] = e.weightName;
    meta[`${p}.method`] = e.method;
    meta[`${p}.requests`] = JSON.stringify(e.requests);
    meta[`${p}.batch`] = String(e.batch);
  });
  await removeStaleTemps(path);
  await writeSafetensors(path, tensors, meta);
}

async function removeStaleTemps(path: string): Promise<void> {
  const slash = path.lastIndexOf("/");
  const dir = slash < 0 ? "." : path.slice(0, slash) || "/";
  const base = path.slice(slash + 1);
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && e.name.startsWith(`${base}.tmp-`)) {
        await Deno.remove(`${dir}/${e.name}`).catch(() => {});
      }
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** Writes the edits to `dir/keg_edits.safetensors` (creating `dir`); returns the file's path. */
export async function saveEdits(
  dir: string,
  edits: readonly AppliedEdit[],
  hparams?: unknown,
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/${DELTAS_FILE}`;
  await writeEditsFile(path, edits, hparams);
  return path;
}

function intMeta(file: string, m: Record<string, string>, k: string): number {
  const s = m[k];
  if (s === undefined) throw new Error(`${file}: metadata ${k} is missing`);
  if (!/^\d+$/.test(s)) {
    throw new Error(`${file}: metadata ${k} must be a non-negative integer, got ${JSON.stringify(s)}`);
  }
  return Number(s);
}

function strMeta(file: string, m: Record<string, string>, k: string): string {
  const s = m[k];
  if (s === undefined || s === "") throw new Error(`${file}: metadata ${k} is missing`);
  return s;
}

function jsonMeta(file: string, m: Record<string, string>, k: string): unknown {
  const s = strMeta(file, m, k);
  try {
    return JSON.parse(s);
  } catch (e) {
    throw new Error(`${file}: metadata ${k} is not valid JSON (${(e as Error).message})`);
  }
}

/**
 * Reads saved edits (a file, or a directory holding `keg_edits.safetensors`). With `model`, each edit is
 * checked to fit it: same base model, an editable weight of that name at that layer, matching sizes.
 */
export async function readEdits(path: string, model?: LoadedModel): Promise<AppliedEdit[]> {
  const file = path.endsWith(".safetensors") ? path : `${path}/${DELTAS_FILE}`;
  const f = await openSafetensors(file);
  try {
    const m = f.metadata ?? {};
    const v1 = m.format === "keg-edits-v1";
    if (m.format !== EDITS_FORMAT && !v1) {
      throw new Error(`${file}: not a keg edits file (metadata format ${JSON.stringify(m.format ?? null)})`);
    }
    const count = intMeta(file, m, "count");
    const names = new Set(f.names());
    const expected = new Set<string>();
    for (let i = 0; i < count; i++) expected.add(`${key(i)}.u`), expected.add(`${key(i)}.r`);
    const extra = [...names].filter((n) => !expected.has(n));
    const missing = [...expected].filter((n) => !names.has(n));
    if (extra.length || missing.length) {
      throw new Error(
        `${file}: metadata count ${count} does not match the tensors (${
          missing.length
            ? `missing ${missing.slice(0, 3).join(", ")}`
            : `unexpected ${extra.slice(0, 3).join(", ")}`
        })`,
      );
    }
    const fingerprint = count ? strMeta(file, m, "base_fingerprint") : (m.base_fingerprint ?? "");
    if (model && count && fingerprint !== model.fingerprint) {
      throw new Error(
        `${file}: edits were made on another base model (fingerprint ${fingerprint}, this is ${model.fingerprint})`,
      );
    }
    const out: AppliedEdit[] = [];
    for (let i = 0; i < count; i++) {
      const p = key(i);
      const where = `${file}: ${p}`;
      const u = await f.readFloat(`${p}.u`, "f32"), r = await f.readFloat(`${p}.r`, "f32");
      for (const [n, t] of [["u", u], ["r", r]] as const) {
        if (t.sourceDtype !== "F32") throw new Error(`${where}.${n}: must be F32, is ${t.sourceDtype}`);
        if (t.shape.length !== (v1 ? 1 : 2)) {
          throw new Error(`${where}.${n}: shape [${t.shape}] has the wrong rank`);
        }
      }
      const delta = v1 ? rankOneDelta(u.data, r.data) : {
        rank: u.shape[0],
        dIn: u.shape[1],
        dOut: r.shape[1],
        u: u.data,
        r: r.data,
      };
      if (!v1 && r.shape[0] !== u.shape[0]) {
        throw new Error(`${where}: u has rank ${u.shape[0]} but r has rank ${r.shape[0]}`);
      }
      checkDelta(delta, where);
      const rawReqs = v1 ? [jsonMeta(file, m, `${p}.request`)] : jsonMeta(file, m, `${p}.requests`);
      if (!Array.isArray(rawReqs) || !rawReqs.length) {
        throw new Error(`${where}.requests: expected a non-empty list`);
      }
      const requests: EditRequest[] = rawReqs.map((q, j) => normalizeRequest(q, `${where}.requests[${j}]`));
      const e: AppliedEdit = {
        method: v1 ? (m[`${p}.update`] ?? "rome") : strMeta(file, m, `${p}.method`),
        layer: intMeta(file, m, `${p}.layer`),
        weightName: strMeta(file, m, `${p}.tensor`),
        delta,
        requests,
        fingerprint,
        batch: v1 ? i : intMeta(file, m, `${p}.batch`),
      };
      if (model) editableWeight(model, e.layer, e.weightName);
      out.push(e);
    }
    return out;
  } finally {
    await f.close();
  }
}

/**
 * Writes the model as a full checkpoint in its original layout: the same shard files (and index), the same
 * dtypes, every tensor copied byte for byte except the edited weights, which are read back from the GPU
 * and converted to their stored dtype (f32 → F16/BF16 round to nearest even). Also copies config.json and
 * tokenizer files. Everything goes into a temporary directory beside `outDir` that is renamed into place
 * at the end: a kill leaves no `outDir` (or the empty one that was there), never a partial checkpoint.
 */
export async function exportCheckpoint(
  model: LoadedModel,
  outDir: string,
  edits: readonly AppliedEdit[],
): Promise<void> {
  const ck = model.checkpoint;
  const replacements = new Map<string, Float32Array>();
  for (const e of edits) {
    if (replacements.has(e.weightName)) continue;
    replacements.set(e.weightName, await editableWeight(model, e.layer, e.weightName).w.read());
  }
  for (const name of replacements.keys()) {
    const dt = ck.info(name).dtype;
    if (dt !== "F32" && dt !== "F16" && dt !== "BF16") {
      throw new Error(`export: ${name} is stored as ${dt}; only F32/F16/BF16 weights can be edited`);
    }
  }
  const byFile = new Map<string, string[]>();
  for (const n of ck.names()) {
    const f = ck.info(n).file;
    byFile.set(f, [...(byFile.get(f) ?? []), n]);
  }
  await writeDirAtomic(outDir, async (tmp) => {
    for (const file of ck.files) {
      const tensors: TensorToWrite[] = [];
      for (const name of byFile.get(file) ?? []) {
        const info = ck.info(name);
        const rep = replacements.get(name);
        if (!rep) {
          const raw = await ck.read(name);
          tensors.push({ name, dtype: raw.dtype, shape: raw.shape, data: raw.bytes });
        } else if (info.dtype === "F32") {
          tensors.push({ name, dtype: "F32", shape: info.shape, data: rep });
        } else if (info.dtype === "F16") {
          tensors.push({ name, dtype: "F16", shape: info.shape, data: Float16Array.from(rep) });
        } else {
          tensors.push({ name, dtype: "BF16", shape: info.shape, data: f32ToBf16(rep) });
        }
      }
      const src = await openSafetensors(file);
      const meta = src.metadata;
      await src.close();
      await writeSafetensors(
        `${tmp}/${file.split("/").pop()}`,
        tensors,
        Object.keys(meta).length ? meta : undefined,
      );
    }
    for await (const e of Deno.readDir(ck.dir)) {
      if (e.isFile && !e.name.endsWith(".safetensors")) {
        await Deno.copyFile(`${ck.dir}/${e.name}`, `${tmp}/${e.name}`);
      }
    }
  });
}
