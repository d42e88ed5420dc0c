/**
 * ROME and R-ROME, as a page that reads like the paper: for a request (subject, prompt, new target)
 * 1. k*  — the rewrite module's key at the subject's last token, averaged over context templates;
 * 2. v*  — the value that makes the model emit the new target (δ optimised with Adam, GPU backward);
 * 3. u   — C⁻¹k*, with C the keys' second moment over a corpus (Cholesky, cached per layer);
 * 4. ΔW  — the rank-one update u·rᵀ with r = (v* − v_ref)/(k·u), applied in the weight's own layout.
 * All edit algebra is f32; the weight is cast once when written. Non-finite values trigger a rerun of
 * the stage with f32 activations, and a non-finite weight is never written.
 * @module
 */
import { profileStage } from "../gpu/profile.ts";
import { type CholeskyFactor, choleskyFactor } from "../ops/cholesky.ts";
import { countNonFinite } from "../ops/elementwise.ts";
import type { LoadedModel } from "../model/load.ts";
import type { Linear, Transformer } from "../model/transformer.ts";
import type { RomeHparams, UpdateKind } from "./hparams.ts";
import { type EditRequest, targetText } from "./request.ts";
import { parseFactToken } from "./lookup.ts";
import { contextTemplates } from "./templates.ts";
import { computeKeyValues } from "./k_star.ts";
import { computeVStar, type VStep } from "./v_star.ts";
import { applyRankOne, computeUpdate, l2, type RankOne } from "./update.ts";
import type { Stats } from "./covariance.ts";
import { checkEditSettings, checkRequestFits } from "./checks.ts";
import { type AppliedEdit, applyEdit, applyEdits, rankOneDelta, restoreWeights } from "./applied.ts";

/** Wall-clock seconds per stage of one edit. */
export interface EditTimings {
  templates: number;
  kStar: number;
  vStar: number;
  solve: number;
  update: number;
  total: number;
}

/**
 * What an edit computed besides the delta itself: the paper's intermediate quantities, the v* trajectory
 * and the health numbers. Reports are for printing, tests and evaluation records; they are never saved or
 * applied (that is the {@link AppliedEdit}).
 */
export interface EditReport {
  /** Update variant. */
  update: UpdateKind;
  /** u, r, the division factor k·u, v_ref and the key u was solved for. */
  rankOne: RankOne;
  kStar: Float32Array;
  vBar: Float32Array;
  kPrompt: Float32Array;
  vPrompt: Float32Array;
  targetInit: Float32Array;
  delta: Float32Array;
  vStar: Float32Array;
  vSteps: VStep[];
  targetIds: number[];
  /** ‖ΔW‖_F / ‖W‖_F (W: the unedited weight). */
  dWRel: number;
  /** Whether C (true) or the identity (false) was used. */
  mom2Adjustment: boolean;
  /** Stages rerun with f32 activations after a non-finite value, e.g. ["v*"]. */
  fallbacks: string[];
  warnings: string[];
  timings: EditTimings;
}

/** One edit: the delta that was applied, and the report of how it was computed. */
export interface EditResult {
  /** What was applied to the model (and is saved, reloaded, reverted). */
  applied: AppliedEdit;
  /** Diagnostics. */
  report: EditReport;
}

const now = () => performance.now() / 1000;

/** Applies ROME / R-ROME edits to a loaded model. */
export class RomeEditor {
  readonly model: LoadedModel;
  readonly hp: RomeHparams;
  /** Edits applied so far, in order (sequential editing keeps them; {@link restore} clears them). */
  readonly history: AppliedEdit[] = [];
  #templates: string[] | null = null;
  #factor: CholeskyFactor | null = null;
  #stats: Stats | null;
  #cacheRoot: string | undefined;
  #wNorm = new Map<string, number>();

  /**
   * `stats` is required when hp.mom2Adjustment is true (see lib/edit/covariance.ts); `templates` skips the
   * sampling; `cacheRoot` is the cache folder for the sampled templates (default: keg's cache, `$KEG_CACHE`).
   */
  constructor(
    model: LoadedModel,
    hp: RomeHparams,
    opts: { stats?: Stats | null; templates?: string[]; cacheRoot?: string } = {},
  ) {
    this.model = model;
    this.hp = hp;
    this.#stats = opts.stats ?? null;
    this.#cacheRoot = opts.cacheRoot;
    this.#templates = opts.templates ?? null;
    if (hp.layersAuto && hp.layers.length === 0) {
      throw new Error(
        `${hp.source}: layers: auto must be resolved first (resolveAutoLayer in lib/edit/trace.ts)`,
      );
    }
    checkEditSettings(model, hp);
    if (hp.mom2Adjustment && !this.#stats) {
      throw new Error(`${hp.source}: mom2_adjustment is true but no covariance statistics were given`);
    }
  }

  /** The edited layer. */
  get layer(): number {
    return this.hp.layers[0];
  }

  /** The rewrite module's weight. */
  get weight(): Linear {
    return this.model.net.blocks[this.layer].mlpOut;
  }

  /** Context templates (sampled once and cached per model). */
  async templates(): Promise<string[]> {
    if (!this.#templates) {
      const tok = this.#tok();
      this.#templates = await contextTemplates(this.model.net, tok, {
        lengthParams: this.hp.contextTemplateLengthParams,
        seed: this.hp.seed,
        fingerprint: this.model.fingerprint,
        cacheDir: this.#cacheRoot && `${this.#cacheRoot}/templates`,
      });
    }
    return this.#templates;
  }

  #tok() {
    const tok = this.model.tokenizer;
    if (!tok) throw new Error(`${this.model.dir}: editing needs a tokenizer`);
    return tok;
  }

  async #factorOnce(): Promise<CholeskyFactor | null> {
    if (!this.hp.mom2Adjustment) return null;
    if (!this.#factor) this.#factor = await choleskyFactor(this.#stats!.c);
    return this.#factor;
  }

  async #weightNorm(): Promise<number> {
    const name = this.weight.name;
    let n = this.#wNorm.get(name);
    if (n === undefined) {
      // the unedited weight, from the checkpoint (the GPU copy may already carry earlier edits)
      n = l2((await this.model.checkpoint.readFloat(name, "f32")).data);
      this.#wNorm.set(name, n);
    }
    return n;
  }

  /** Computes and applies one edit. */
  async edit(request: EditRequest): Promise<EditResult> {
    const tok = this.#tok();
    const hp = this.hp;
    const L = this.layer;
    const t0 = now();
    const where = `request ${JSON.stringify(request.subject)}`;
    checkRequestFits(this.model, hp, tok, request, where);
    profileStage("templates");
    const templates = await this.templates();
    checkRequestFits(this.model, hp, tok, request, where, templates);
    const t1 = now();
    profileStage("k*");
    const prompt = request.prompt;
    const factToken = parseFactToken(hp.factToken, `${hp.source}: fact_token`);
    const targetIds = tok.encode(targetText(request.targetNew), { addBos: false });
    if (!targetIds.length) throw new Error(`request ${JSON.stringify(request.subject)}: target_new is empty`);
    const fallbacks: string[] = [], warnings: string[] = [];

    let net: Transformer = this.model.net;
    let kv = await computeKeyValues(net, tok, prompt, request.subject, templates, L, factToken);
    if (![kv.kStar, kv.vBar, kv.kPrompt, kv.vPrompt].every((a) => a.every(Number.isFinite))) {
      fallbacks.push("k*");
      net = net.withPrecision("mixed");
      kv = await computeKeyValues(net, tok, prompt, request.subject, templates, L, factToken);
    }
    const t2 = now();
    profileStage("v*");
    const settings = {
      layer: L,
      factToken,
      steps: hp.vNumGradSteps,
      lr: hp.vLr,
      weightDecay: hp.vWeightDecay,
      clampNormFactor: hp.clampNormFactor,
      klFactor: hp.klFactor,
      lossBreak: hp.lossBreak,
    };
    let vs = await computeVStar(net, tok, prompt, request.subject, targetIds, templates, settings);
    if (vs.nonFinite > 0 && net.act !== "f32") {
      fallbacks.push("v*");
      net = net.withPrecision("mixed");
      vs = await computeVStar(net, tok, prompt, request.subject, targetIds, templates, settings);
    }
    if (vs.nonFinite > 0 || !vs.vStar.every(Number.isFinite)) {
      throw new Error(
        `v* optimisation produced non-finite values even with f32 activations; no weight was changed`,
      );
    }
    const t3 = now();
    profileStage("solve");
    const gpu = this.weight.w.gpu;
    const rankOne = await computeUpdate(gpu, await this.#factorOnce(), {
      kind: hp.update,
      kStar: kv.kStar,
      kPrompt: kv.kPrompt,
      vBar: kv.vBar,
      vPrompt: kv.vPrompt,
      vStar: vs.vStar,
      delta: vs.delta,
    });
    const t4 = now();
    profileStage("update");
    if (!rankOne.u.every(Number.isFinite) || !rankOne.r.every(Number.isFinite)) {
      throw new Error(
        `the update has non-finite values (division factor ${rankOne.divisionFactor}); no weight was changed`,
      );
    }
    const wn = await this.#weightNorm();
    const dWRel = l2(rankOne.r) * l2(rankOne.u) / wn;
    if (rankOne.divisionFactor <= 0) {
      warnings.push(
        `division factor k·u = ${
          rankOne.divisionFactor.toPrecision(4)
        } ≤ 0: the edit is likely to collapse the model`,
      );
    } else if (dWRel > 1) {
      warnings.push(`‖ΔW‖/‖W‖ = ${dWRel.toFixed(3)} > 1: a collapsing edit is likely (R-ROME paper)`);
    }
    const applied: AppliedEdit = {
      method: hp.update,
      layer: L,
      weightName: this.weight.name,
      delta: rankOneDelta(rankOne.u, rankOne.r),
      requests: [request],
      fingerprint: this.model.fingerprint,
      batch: (this.history.at(-1)?.batch ?? -1) + 1,
    };
    await applyRankOne(this.weight, rankOne);
    const bad = await countNonFinite(this.weight.w);
    if (bad) {
      const same = this.history.filter((e) => e.weightName === this.weight.name);
      await restoreWeights(this.model, [applied]);
      for (const e of same) await applyEdit(this.model, e);
      throw new Error(
        `applying the update made ${bad} weight values non-finite (${this.weight.w.dtype}); reverted`,
      );
    }
    const t5 = now();
    profileStage("other");
    const report: EditReport = {
      update: hp.update,
      rankOne,
      kStar: kv.kStar,
      vBar: kv.vBar,
      kPrompt: kv.kPrompt,
      vPrompt: kv.vPrompt,
      targetInit: vs.targetInit,
      delta: vs.delta,
      vStar: vs.vStar,
      vSteps: vs.steps,
      targetIds,
      dWRel,
      mom2Adjustment: hp.mom2Adjustment,
      fallbacks,
      warnings,
      timings: {
        templates: t1 - t0,
        kStar: t2 - t1,
        vStar: t3 - t2,
        solve: t4 - t3,
        update: t5 - t4,
        total: t5 - t0,
      },
    };
    this.history.push(applied);
    return { applied, report };
  }

  /**
   * Applies edits computed earlier (saved ones, or a resumed run's) and records them in the history, so
   * that {@link restore} reverts them too. Each is checked against the model before any is applied.
   */
  async adopt(edits: readonly AppliedEdit[], where = "edits"): Promise<void> {
    await applyEdits(this.model, edits, where);
    this.history.push(...edits);
  }

  /** Restores every edited weight to the checkpoint's values and clears the history. */
  async restore(): Promise<void> {
    await restoreWeights(this.model, this.history);
    this.history.length = 0;
  }

  /** Releases the cached factor. */
  dispose(): void {
    this.#factor?.dispose();
    this.#factor = null;
  }
}
