/**
 * MEMIT and AlphaEdit: a batch of requests written into the MLP down-projections of a range of layers.
 * 1. z — per request, δ added to the residual stream after the LAST layer of the range at the lookup
 *    token, optimised exactly like ROME's v* (lib/edit/v_star.ts with `targetInitAt: "residual"`);
 * 2. for each layer l of the range in order: keys K_l (template-averaged down-projection inputs), cur_z
 *    (the residual after the last layer on the model that already carries this batch's earlier layers),
 *    R = (z − cur_z) / (layers left), adj = (λC_l + KᵀK)⁻¹Kᵀ (MEMIT) or the null-space solve (AlphaEdit,
 *    lib/edit/memit_solve.ts), and ΔW_l = Rᵀ·adj written as its rank-B factors before the next layer;
 * 3. AlphaEdit, after the batch: the keys recomputed on the edited model join the cache of preserved keys.
 * All edit algebra is f32 on the GPU; the weight is rounded once per layer (lowRankUpdate). Non-finite
 * z reruns with f32 activations; a non-finite update is never written.
 * @module
 */
import { Tensor } from "../gpu/tensor.ts";
import { countNonFinite } from "../ops/elementwise.ts";
import { lowRankUpdate } from "../ops/outer.ts";
import type { LoadedModel } from "../model/load.ts";
import type { Linear, Transformer } from "../model/transformer.ts";
import type { Stats } from "./covariance.ts";
import type { MemitHparams } from "./memit_hparams.ts";
import { type EditRequest, targetText } from "./request.ts";
import { parseFactToken } from "./lookup.ts";
import { contextTemplates } from "./templates.ts";
import { computeVStar, type VStarResult } from "./v_star.ts";
import { barePrompts, batchKeys, residualAt } from "./memit_keys.ts";
import { alphaEditAdj, memitAdj, updateCache } from "./memit_solve.ts";
import { checkEditSettings } from "./checks.ts";
import { checkNullRanks, type NullSpace } from "./null_space.ts";
import { l2 } from "./update.ts";
import { type AppliedEdit, applyEdit, applyEdits, restoreWeights } from "./applied.ts";

/** What one layer of a batch computed. */
export interface MemitLayer {
  layer: number;
  weightName: string;
  /** K [B, d_ff]. */
  K: Float32Array;
  /** Keys per (request, template) [B·T, d_ff]. */
  kTemplates: Float32Array;
  /** cur_z [B, d_model]. */
  curZ: Float32Array;
  /** R [B, d_model] = (z − cur_z) / residDivisor: the value-side factors of ΔW. */
  resid: Float32Array;
  /** adj [B, d_ff]: the key-side factors; ΔW = Σ_b resid_b ⊗ adj_b. */
  adj: Float32Array;
  residDivisor: number;
  /** mean_b ‖z_b − cur_z_b‖. */
  zErrorMean: number;
  /** ‖ΔW‖_F. */
  dWFro: number;
  /** ‖W‖_F of the unedited checkpoint weight. */
  wFro: number;
  /** ‖ΔW K − R‖_F / ‖R‖_F: how much of this layer's share the update writes on the batch keys. */
  dWKMinusResidRel: number;
  /** AlphaEdit: the rank of P. */
  nullRank?: number;
}

/** A finished batch. */
export interface MemitBatchResult {
  requests: EditRequest[];
  targetIds: number[][];
  /** z per request (v* result with target_init at the residual). */
  z: VStarResult[];
  layers: MemitLayer[];
  fallbacks: string[];
  warnings: string[];
  timings: { templates: number; z: number; layers: number; total: number };
}

const now = () => performance.now() / 1000;

/** Sources of per-layer covariance statistics (MEMIT: C_l; AlphaEdit: P_l from C_l). */
export interface MemitEditorOptions {
  /** C per edited layer (MEMIT). */
  stats?: (layer: number) => Promise<Stats>;
  /** Null-space projectors per edited layer (AlphaEdit), see lib/edit/null_space.ts. */
  nullSpaces?: (layer: number) => Promise<NullSpace>;
  /** Context templates in groups, e.g. the oracle's `[["{}"], [five prefixes]]` (else sampled). */
  templates?: string[][];
  /** Cache folder for the sampled templates (default: keg's cache, `$KEG_CACHE`). */
  cacheRoot?: string;
}

/** Rejects a batch where one (subject, prompt) asks for two different targets. */
export function checkConflicts(requests: readonly EditRequest[]): void {
  const seen = new Map<string, number>();
  requests.forEach((r, i) => {
    const k = JSON.stringify([r.subject, r.prompt]);
    const j = seen.get(k);
    if (j !== undefined && requests[j].targetNew !== r.targetNew) {
      throw new Error(
        `requests ${j} and ${i} of the batch edit the same subject ${JSON.stringify(r.subject)} and prompt ` +
          `${JSON.stringify(r.prompt)} to different targets (${JSON.stringify(requests[j].targetNew)} vs ` +
          `${
            JSON.stringify(r.targetNew)
          }); one least-squares update cannot write both: put them in separate ` +
          `batches (the later batch wins) or drop one`,
      );
    }
    if (j === undefined) seen.set(k, i);
  });
}

/** Applies MEMIT / AlphaEdit batches to a loaded model (sequentially: each batch sees the earlier ones). */
export class MemitEditor {
  readonly model: LoadedModel;
  readonly hp: MemitHparams;
  /** Reports of the batches applied so far. */
  readonly reports: MemitBatchResult[] = [];
  /** What is applied (one entry per layer per batch, factors of rank B): saved, reloaded, reverted. */
  readonly history: AppliedEdit[] = [];
  #templates: string[][] | null;
  #opts: MemitEditorOptions;
  #stats = new Map<number, Stats>();
  #null = new Map<number, NullSpace>();
  /** AlphaEdit's projected key cache per layer. */
  #cache = new Map<number, Float32Array>();
  #wNorm = new Map<string, number>();
  #nullWarnings: string[] = [];

  constructor(model: LoadedModel, hp: MemitHparams, opts: MemitEditorOptions = {}) {
    this.model = model;
    this.hp = hp;
    this.#opts = opts;
    this.#templates = opts.templates ?? null;
    const n = model.config.numLayers;
    if (!hp.layers.length) throw new Error(`${hp.source}: layers: at least one layer is needed`);
    for (const l of hp.layers) {
      if (!Number.isInteger(l) || l < 0 || l >= n) {
        throw new Error(`${hp.source}: layers: layer ${l} outside the model's layers 0..${n - 1}`);
      }
    }
    // the module templates, v_loss_layer, template lengths: ROME's checks, layer by layer
    for (const l of hp.layers) checkEditSettings(model, { ...hp.base, layers: [l] });
    if (hp.algName === "MEMIT" && hp.base.mom2Adjustment && !opts.stats) {
      throw new Error(`${hp.source}: MEMIT needs covariance statistics per layer (stats)`);
    }
    if (hp.algName === "AlphaEdit" && !opts.nullSpaces) {
      throw new Error(`${hp.source}: AlphaEdit needs the null-space projectors (nullSpaces)`);
    }
  }

  /** The down-projection of layer l. */
  weight(l: number): Linear {
    return this.model.net.blocks[l].mlpOut;
  }

  /** Context templates in groups (sampled once per model unless given). */
  async templates(): Promise<string[][]> {
    if (!this.#templates) {
      const spec = this.hp.base.contextTemplateLengthParams;
      const flat = await contextTemplates(this.model.net, this.#tok(), {
        lengthParams: spec,
        seed: this.hp.base.seed,
        fingerprint: this.model.fingerprint,
        cacheDir: this.#opts.cacheRoot && `${this.#opts.cacheRoot}/templates`,
      });
      const groups: string[][] = [[flat[0]]];
      let at = 1;
      for (const [, count] of spec) {
        const n = Math.max(1, Math.floor(count / 5)) * 5;
        groups.push(flat.slice(at, at + n));
        at += n;
      }
      this.#templates = groups;
    }
    return this.#templates;
  }

  #tok() {
    const tok = this.model.tokenizer;
    if (!tok) throw new Error(`${this.model.dir}: editing needs a tokenizer`);
    return tok;
  }

  async #statsOf(l: number): Promise<Stats> {
    let s = this.#stats.get(l);
    if (!s) this.#stats.set(l, s = await this.#opts.stats!(l));
    return s;
  }

  /** The null space of layer l (AlphaEdit; computed once from the unedited model's C). */
  async nullSpace(l: number): Promise<NullSpace> {
    let p = this.#null.get(l);
    if (!p) this.#null.set(l, p = await this.#opts.nullSpaces!(l));
    return p;
  }

  async #weightNorm(name: string): Promise<number> {
    let n = this.#wNorm.get(name);
    if (n === undefined) {
      n = l2((await this.model.checkpoint.readFloat(name, "f32")).data);
      this.#wNorm.set(name, n);
    }
    return n;
  }

  /** Computes and applies one batch. */
  async editBatch(requests: EditRequest[]): Promise<MemitBatchResult> {
    if (!requests.length) throw new Error("an empty batch of requests");
    checkConflicts(requests);
    const tok = this.#tok(), hp = this.hp, base = hp.base;
    const t0 = now();
    const groups = await this.templates();
    const flat = groups.flat();
    if (hp.algName === "AlphaEdit" && !this.history.length) await this.#checkNullSpaces();
    const t1 = now();
    const factToken = parseFactToken(base.factToken, `${hp.source}: fact_token`);
    const zLayer = hp.layers[hp.layers.length - 1];
    const fallbacks: string[] = [], warnings: string[] = [...this.#nullWarnings];
    const targetIds = requests.map((r) => {
      const ids = tok.encode(targetText(r.targetNew), { addBos: false });
      if (!ids.length) throw new Error(`request ${JSON.stringify(r.subject)}: target_new is empty`);
      return ids;
    });
    const settings = {
      layer: zLayer,
      factToken,
      steps: base.vNumGradSteps,
      lr: base.vLr,
      weightDecay: base.vWeightDecay,
      clampNormFactor: base.clampNormFactor,
      klFactor: base.klFactor,
      lossBreak: base.lossBreak,
      targetInitAt: "residual" as const,
    };
    const zs: VStarResult[] = [];
    for (const [i, r] of requests.entries()) {
      let net: Transformer = this.model.net;
      let vs = await computeVStar(net, tok, r.prompt, r.subject, targetIds[i], flat, settings);
      if (vs.nonFinite > 0 && net.act !== "f32") {
        fallbacks.push(`z[${i}]`);
        net = net.withPrecision("mixed");
        vs = await computeVStar(net, tok, r.prompt, r.subject, targetIds[i], flat, settings);
      }
      if (vs.nonFinite > 0 || !vs.vStar.every(Number.isFinite)) {
        throw new Error(`z of request ${i} is non-finite even with f32 activations; no weight was changed`);
      }
      zs.push(vs);
    }
    const t2 = now();
    const net = this.model.net;
    const B = requests.length, dm = net.config.hiddenSize, dff = net.config.intermediateSize;
    const bare = barePrompts(tok, requests, factToken);
    const layers: MemitLayer[] = [];
    const applied: AppliedEdit[] = [];
    const batch = (this.history.at(-1)?.batch ?? -1) + 1;
    try {
      for (const [i, l] of hp.layers.entries()) {
        const keys = await batchKeys(net, tok, requests, groups, l, factToken);
        const curZ = await residualAt(net, bare, zLayer);
        const div = hp.layers.length - i;
        const resid = new Float32Array(B * dm);
        let zErr = 0;
        for (let b = 0; b < B; b++) {
          let e = 0;
          for (let j = 0; j < dm; j++) {
            const t = zs[b].vStar[j] - curZ[b * dm + j];
            resid[b * dm + j] = t / div;
            e += t * t;
          }
          zErr += Math.sqrt(e) / B;
        }
        let adj: Float32Array, nullRank: number | undefined;
        if (hp.algName === "MEMIT") {
          if (!base.mom2Adjustment) {
            throw new Error(`${hp.source}: mom2_adjustment: false is not supported by MEMIT`);
          }
          adj = await memitAdj((await this.#statsOf(l)).c, keys.K, B, hp.mom2UpdateWeight);
        } else {
          const ns = await this.nullSpace(l);
          nullRank = ns.rank;
          adj = await alphaEditAdj(ns.u0, this.#cache.get(l) ?? null, keys.K, B, hp.l2);
        }
        if (!adj.every(Number.isFinite) || !resid.every(Number.isFinite)) {
          throw new Error(
            `layer ${l}: the update has non-finite values; no weight of this layer was changed`,
          );
        }
        const w = this.weight(l);
        const rec: MemitLayer = {
          layer: l,
          weightName: w.name,
          K: keys.K,
          kTemplates: keys.kTemplates,
          curZ,
          resid,
          adj,
          residDivisor: div,
          zErrorMean: zErr,
          ...lowRankNorms(resid, adj, keys.K, B, dm, dff),
          wFro: await this.#weightNorm(w.name),
          nullRank,
        };
        if (rec.dWFro > rec.wFro) {
          warnings.push(`layer ${l}: ‖ΔW‖/‖W‖ = ${(rec.dWFro / rec.wFro).toFixed(3)} > 1`);
        }
        const entry: AppliedEdit = {
          method: hp.algName === "MEMIT" ? "memit" : "alphaedit",
          layer: l,
          weightName: w.name,
          delta: { rank: B, dIn: dff, dOut: dm, u: adj, r: resid },
          requests,
          fingerprint: this.model.fingerprint,
          batch,
        };
        await applyEdit(this.model, entry, 1, `${hp.algName} layer ${l}`);
        applied.push(entry);
        const bad = await countNonFinite(w.w);
        if (bad) {
          throw new Error(
            `layer ${l}: applying the update made ${bad} weight values non-finite (${w.w.dtype})`,
          );
        }
        layers.push(rec);
      }
    } catch (e) {
      // nothing half-written: the layers of this batch that were written are reverted exactly
      if (applied.length) await this.#rebuild(applied);
      throw e;
    }
    this.history.push(...applied);
    await this.#cacheKeys(requests);
    const t3 = now();
    const result: MemitBatchResult = {
      requests,
      targetIds,
      z: zs,
      layers,
      fallbacks,
      warnings,
      timings: { templates: t1 - t0, z: t2 - t1, layers: t3 - t2, total: t3 - t0 },
    };
    this.reports.push(result);
    return result;
  }

  /** AlphaEdit: an empty null space at every layer is an error before any work; at one layer a warning. */
  async #checkNullSpaces(): Promise<void> {
    const ranks = new Map<number, number>();
    for (const l of this.hp.layers) ranks.set(l, (await this.nullSpace(l)).rank);
    this.#nullWarnings = checkNullRanks(
      ranks,
      this.model.config.intermediateSize,
      this.hp.nullspaceThreshold,
      this.hp.source,
    );
  }

  /** AlphaEdit, after a batch: its keys recomputed on the edited model join the cache of preserved keys. */
  async #cacheKeys(requests: EditRequest[]): Promise<void> {
    if (this.hp.algName !== "AlphaEdit") return;
    const groups = await this.templates();
    const factToken = parseFactToken(this.hp.base.factToken, `${this.hp.source}: fact_token`);
    for (const l of this.hp.layers) {
      const after = await batchKeys(this.model.net, this.#tok(), requests, groups, l, factToken);
      const ns = await this.nullSpace(l);
      this.#cache.set(l, await updateCache(ns.u0, this.#cache.get(l) ?? null, after.K, requests.length));
    }
  }

  /**
   * Re-applies saved batches in their order (a resumed sequential run's, from {@link history} entries
   * saved with lib/edit/edits_io.ts): each entry's factors are added exactly as {@link editBatch} added
   * them (same kernel, same order, so the weights are bit-identical), and AlphaEdit's key cache is rebuilt
   * as editBatch builds it: after each batch, that batch's keys recomputed on the edited model.
   */
  async adopt(entries: readonly AppliedEdit[], where = "edits"): Promise<void> {
    if (this.hp.algName === "AlphaEdit" && !this.history.length) await this.#checkNullSpaces();
    const method = this.hp.algName === "MEMIT" ? "memit" : "alphaedit";
    for (let i = 0; i < entries.length;) {
      const batch = entries.filter((e) => e.batch === entries[i].batch);
      const last = this.history.at(-1)?.batch ?? -1;
      for (const e of batch) {
        if (e.method !== method) throw new Error(`${where}: a ${e.method} edit cannot join a ${method} run`);
        if (e.batch <= last) throw new Error(`${where}: batch ${e.batch} is not after batch ${last}`);
        await applyEdit(this.model, e, 1, where);
        this.history.push(e);
      }
      await this.#cacheKeys(batch[0].requests);
      i += batch.length;
    }
  }

  /** Puts the checkpoint's values back into the weights `touched` uses and reapplies the history there. */
  async #rebuild(touched: readonly AppliedEdit[]): Promise<void> {
    const names = new Set(touched.map((e) => e.weightName));
    await restoreWeights(this.model, touched);
    await applyEdits(this.model, this.history.filter((e) => names.has(e.weightName)));
  }

  /** Restores every edited weight to the checkpoint, clears the history and AlphaEdit's key cache. */
  async restore(): Promise<void> {
    const all = this.history.splice(0);
    this.reports.length = 0;
    this.#cache.clear();
    await restoreWeights(this.model, all);
  }

  /** Releases the statistics and projectors this editor loaded. */
  dispose(): void {
    for (const s of this.#stats.values()) s.c.dispose();
    for (const p of this.#null.values()) p.u0.dispose();
    this.#stats.clear(), this.#null.clear();
  }
}

/** W += α·Σ_b adj_b ⊗ resid_b in W's layout (one rounding). */
export async function applyFactors(
  w: Linear,
  resid: Float32Array,
  adj: Float32Array,
  B: number,
  alpha: number,
): Promise<void> {
  const gpu = w.w.gpu;
  const dm = resid.length / B, dff = adj.length / B;
  const u = Tensor.from(gpu, adj, [B, dff], "f32", { name: "memit.adj" });
  const v = Tensor.from(gpu, resid, [B, dm], "f32", { name: "memit.resid" });
  await lowRankUpdate(w.w, u, v, alpha, { layout: w.layout });
  await gpu.sync();
  u.dispose(), v.dispose();
}

/** ‖ΔW‖_F and ‖ΔW K − R‖/‖R‖ from the factors (host f64; B² dot products). */
export function lowRankNorms(
  resid: Float32Array,
  adj: Float32Array,
  K: Float32Array,
  B: number,
  dm: number,
  dff: number,
): { dWFro: number; dWKMinusResidRel: number } {
  const dot = (x: Float32Array, i: number, y: Float32Array, j: number, d: number) => {
    let s = 0;
    for (let t = 0; t < d; t++) s += x[i * d + t] * y[j * d + t];
    return s;
  };
  let fro = 0;
  const M = new Float64Array(B * B); // M[a, b] = adj_a · K_b
  for (let a = 0; a < B; a++) {
    for (let b = 0; b < B; b++) {
      fro += dot(resid, a, resid, b, dm) * dot(adj, a, adj, b, dff);
      M[a * B + b] = dot(adj, a, K, b, dff);
    }
  }
  let num = 0, den = 0;
  for (let b = 0; b < B; b++) {
    for (let j = 0; j < dm; j++) {
      let s = 0;
      for (let a = 0; a < B; a++) s += resid[a * dm + j] * M[a * B + b];
      const r = resid[b * dm + j];
      num += (s - r) ** 2, den += r * r;
    }
  }
  return { dWFro: Math.sqrt(Math.max(0, fro)), dWKMinusResidRel: Math.sqrt(num / den) };
}
