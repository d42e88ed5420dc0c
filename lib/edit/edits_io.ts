/**
 * Saved edits: the rank-one factors (f32) of each edit in a safetensors file, with metadata naming the
 * base model's fingerprint, layer, tensor, request and hyper-parameters. Loading them onto the same base
 * model reproduces the edited weights; {@link RomeEditor.restore} removes them exactly.
 * @module
 */
import { openSafetensors, type TensorToWrite, writeSafetensors } from "../model/safetensors.ts";
import type { LoadedModel } from "../model/load.ts";
import { applyRankOne } from "./update.ts";
import { f32ToBf16 } from "../gpu/dtype.ts";
import type { EditResult } from "./rome.ts";

/** File name of the deltas inside a save directory. */
export const DELTAS_FILE = "keg_edits.safetensors";

/** One saved edit. */
export interface SavedEdit {
  weightName: string;
  layer: number;
  u: Float32Array;
  r: Float32Array;
  request: unknown;
}

/** Writes the edits (in order) to `dir/keg_edits.safetensors` (write-then-rename). */
export async function saveEdits(
  dir: string,
  model: LoadedModel,
  edits: EditResult[],
  hparams: unknown,
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const tensors: TensorToWrite[] = [];
  const meta: Record<string, string> = {
    format: "keg-edits-v1",
    base_fingerprint: model.fingerprint,
    base_dir: model.dir,
    count: String(edits.length),
    hparams: JSON.stringify(hparams),
  };
  edits.forEach((e, i) => {
    const p = `edit.${String(i).padStart(4, "0")}`;
    tensors.push({ name: `${p}.u`, dtype: "F32", shape: [e.rankOne.u.length], data: e.rankOne.u });
    tensors.push({ name: `${p}.r`, dtype: "F32", shape: [e.rankOne.r.length], data: e.rankOne.r });
    meta[`${p}.tensor`] = e.weightName;
    meta[`${p}.layer`] = String(e.layer);
    meta[`${p}.request`] = JSON.stringify(e.request);
    meta[`${p}.division_factor`] = String(e.rankOne.divisionFactor);
    meta[`${p}.update`] = e.update;
  });
  const path = `${dir}/${DELTAS_FILE}`;
  await writeSafetensors(path, tensors, meta);
  return path;
}

/** Reads saved edits, checking that they were made on this base model. */
export async function readEdits(path: string, model?: LoadedModel): Promise<SavedEdit[]> {
  const file = path.endsWith(".safetensors") ? path : `${path}/${DELTAS_FILE}`;
  const f = await openSafetensors(file);
  try {
    const m = f.metadata ?? {};
    if (m.format !== "keg-edits-v1") throw new Error(`${file}: not a keg edits file (format ${m.format})`);
    if (model && m.base_fingerprint !== model.fingerprint) {
      throw new Error(
        `${file}: edits were made on another base model (fingerprint ${m.base_fingerprint}, this is ${model.fingerprint})`,
      );
    }
    const out: SavedEdit[] = [];
    for (let i = 0; i < Number(m.count); i++) {
      const p = `edit.${String(i).padStart(4, "0")}`;
      out.push({
        weightName: m[`${p}.tensor`],
        layer: Number(m[`${p}.layer`]),
        u: (await f.readFloat(`${p}.u`, "f32")).data,
        r: (await f.readFloat(`${p}.r`, "f32")).data,
        request: JSON.parse(m[`${p}.request`]),
      });
    }
    return out;
  } finally {
    await f.close();
  }
}

/** Applies saved edits to a loaded base model, in order. */
export async function applyEdits(model: LoadedModel, edits: SavedEdit[]): Promise<void> {
  for (const e of edits) {
    const blk = model.net.blocks[e.layer];
    if (!blk || blk.mlpOut.name !== e.weightName) {
      throw new Error(
        `saved edit targets ${e.weightName} (layer ${e.layer}), which this model does not have there`,
      );
    }
    await applyRankOne(blk.mlpOut, e);
  }
}

/**
 * Writes the model as a full checkpoint in its original layout: the same shard files (and index), the same
 * dtypes, every tensor copied byte for byte except the edited weights, which are read back from the GPU
 * and converted to their stored dtype (f32 → F16/BF16 round to nearest even). Also copies config.json and
 * tokenizer files. Each file is written to a temporary name and renamed.
 */
export async function exportCheckpoint(model: LoadedModel, outDir: string, edited: string[]): Promise<void> {
  const ck = model.checkpoint;
  if (await Deno.stat(outDir).then(() => true, () => false)) {
    for await (const _ of Deno.readDir(outDir)) {
      throw new Error(`${outDir}: export needs an empty or new directory`);
    }
  }
  await Deno.mkdir(outDir, { recursive: true });
  const editedSet = new Set(edited);
  const replacements = new Map<string, Float32Array>();
  for (const name of editedSet) {
    const blk = model.net.blocks.find((b) => b.mlpOut.name === name);
    if (!blk) throw new Error(`export: ${name} is not a rewrite-module weight of this model`);
    replacements.set(name, await blk.mlpOut.w.read());
  }
  const byFile = new Map<string, string[]>();
  for (const n of ck.names()) {
    const f = ck.info(n).file;
    byFile.set(f, [...(byFile.get(f) ?? []), n]);
  }
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
      } else if (info.dtype === "BF16") {
        tensors.push({ name, dtype: "BF16", shape: info.shape, data: f32ToBf16(rep) });
      } else {
        throw new Error(
          `export: ${name} is stored as ${info.dtype}; only F32/F16/BF16 weights can be edited`,
        );
      }
    }
    const src = await openSafetensors(file);
    const meta = src.metadata;
    await src.close();
    await writeSafetensors(
      `${outDir}/${file.split("/").pop()}`,
      tensors,
      Object.keys(meta).length ? meta : undefined,
    );
  }
  for await (const e of Deno.readDir(ck.dir)) {
    if (e.isFile && !e.name.endsWith(".safetensors")) {
      await Deno.copyFile(`${ck.dir}/${e.name}`, `${outDir}/${e.name}.tmp-copy`);
      await Deno.rename(`${outDir}/${e.name}.tmp-copy`, `${outDir}/${e.name}`);
    }
  }
}
