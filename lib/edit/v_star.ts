/**
 * v*: the value that makes the model say the new target. One f32 vector δ is added to the rewrite
 * module's output at the lookup token of every rewriting prompt (and of the "{} is a" KL prompt) and
 * optimised with Adam on NLL(target) + kl_factor·KL(P_cur ‖ P_init) + weight decay, through every layer
 * above the edited one (GPU backward). Layers at and below the edit layer do not depend on δ, so they
 * run once.
 * @module
 */
import { Tensor } from "../gpu/tensor.ts";
import { cast, countNonFinite } from "../ops/elementwise.ts";
import { addToRows, sumRows } from "../ops/embedding.ts";
import { klDivergence, logSoftmax, tokenNll } from "../ops/loss.ts";
import { backwardFromLogits, disposeTaped, forwardWithTape } from "../model/backward.ts";
import { moveTo, padBatch, type TokenBatch, type Transformer } from "../model/transformer.ts";
import type { Tokenizer } from "../model/tokenizer.ts";
import { locate, type LookupToken } from "./lookup.ts";

/** Settings of the δ optimisation (EasyEdit names in comments). */
export interface VStarSettings {
  layer: number;
  factToken: LookupToken;
  /** v_num_grad_steps: forwards at most (Adam steps at most one fewer). */
  steps: number;
  /** v_lr. */
  lr: number;
  /** v_weight_decay. */
  weightDecay: number;
  /** clamp_norm_factor. */
  clampNormFactor: number;
  /** kl_factor. */
  klFactor: number;
  /** Stop when the loss falls below this (reference: 5e-2). */
  lossBreak?: number;
}

/** One forward of the optimisation. */
export interface VStep {
  nll: number;
  kl: number;
  wd: number;
  loss: number;
  deltaNorm: number;
}

/** Result of {@link computeVStar}. */
export interface VStarResult {
  /** target_init: the value at row 0's lookup token before any change. */
  targetInit: Float32Array;
  delta: Float32Array;
  /** v* = target_init + δ. */
  vStar: Float32Array;
  steps: VStep[];
  /** Rows of the batch (text, ids, lookup, target positions) for reports and tests. */
  rows: { text: string; ids: number[]; lookup: number; targetPositions: number[] }[];
  /** Non-finite values met (loss, gradient or δ): the caller reruns in f32 when > 0. */
  nonFinite: number;
}

/** Builds the rewriting + KL batch exactly as the reference implementations do. */
export function rewritingBatch(
  tok: Tokenizer,
  prompt: string,
  subject: string,
  targetIds: number[],
  templates: string[],
  factToken: LookupToken,
): { batch: TokenBatch; rows: VStarResult["rows"] } {
  if (targetIds.length === 0) throw new Error("target_new tokenizes to no tokens");
  const tail = tok.decode(targetIds.slice(0, -1));
  const rows: VStarResult["rows"] = [];
  for (const t of templates) {
    const p = locate(tok, t.replace("{}", () => prompt) + tail, subject, factToken);
    const n = p.ids.length;
    rows.push({ ...p, targetPositions: targetIds.map((_, j) => n - targetIds.length + j) });
  }
  const kl = locate(tok, "{} is a", subject, factToken);
  rows.push({ ...kl, targetPositions: [] });
  return { batch: padBatch(rows.map((r) => r.ids)), rows };
}

function norm(v: Float32Array | Float64Array): number {
  let s = 0;
  for (const x of v) s += x * x;
  return Math.sqrt(s);
}

/** Optimises δ for one request. */
export async function computeVStar(
  net: Transformer,
  tok: Tokenizer,
  prompt: string,
  subject: string,
  targetIds: number[],
  templates: string[],
  s: VStarSettings,
): Promise<VStarResult> {
  const { batch, rows } = rewritingBatch(tok, prompt, subject, targetIds, templates, s.factToken);
  const L = s.layer;
  const gpu = net.deviceOf(L);
  const lookupRows = Uint32Array.from(rows.map((r, i) => i * batch.seq + r.lookup));
  const klRow = lookupRows[lookupRows.length - 1];
  const nRewrite = rows.length - 1;

  // Logits are formed only for the rows the loss reads: every target position and the KL row.
  // targets and weights per logit row: mean over rewriting rows of the per-token-mean NLL.
  const flat: number[] = [], tgt: number[] = [], wts: number[] = [];
  rows.slice(0, nRewrite).forEach((r, i) => {
    r.targetPositions.forEach((p, j) => {
      flat.push(i * batch.seq + p), tgt.push(targetIds[j]), wts.push(1 / (nRewrite * targetIds.length));
    });
  });
  const klLogitRow = flat.length;
  flat.push(klRow), tgt.push(-1), wts.push(0);
  const logitRows = Uint32Array.from(flat);
  const targets = Int32Array.from(tgt), weights = Float32Array.from(wts);
  const T = logitRows.length;

  // Layers ≤ L once: the residual after block L without δ, and target_init.
  const pre = await net.prefix(batch, L, { layer: L, readRows: lookupRows.subarray(0, 1) });
  const targetInit = await pre.values!.read();
  pre.values!.dispose(), pre.keys!.dispose();
  const x0 = pre.x;
  const dModel = net.config.hiddenSize;
  const wdScale = s.weightDecay / (norm(targetInit) ** 2);
  const maxNorm = s.clampNormFactor * norm(targetInit);

  const delta = new Float64Array(dModel);
  const m = new Float64Array(dModel), v = new Float64Array(dModel);
  const b1 = 0.9, b2 = 0.999, eps = 1e-8;
  const steps: VStep[] = [];
  let initLogProbs: Tensor | null = null;
  let nonFinite = 0;
  const lossBreak = s.lossBreak ?? 5e-2;

  try {
    for (let it = 0; it < s.steps; it++) {
      const x = await cast(x0, x0.dtype);
      const dT = Tensor.from(gpu, Float32Array.from(delta), [dModel], "f32", { name: "delta" });
      await addToRows(x, dT, lookupRows);
      dT.dispose();
      const taped = await forwardWithTape(net, x, L + 1, batch, logitRows);
      const nllRes = await tokenNll(taped.logits, targets, { weights });
      let nll = 0;
      for (let r = 0; r < T; r++) nll += weights[r] * nllRes.nll[r];
      if (!initLogProbs) initLogProbs = await logSoftmax(taped.logits, Uint32Array.of(klLogitRow));
      const klRes = await klDivergence(
        taped.logits,
        klLogitRow,
        initLogProbs.reshape([net.config.vocabSize]),
        {
          weight: s.klFactor,
          into: nllRes.dLogits,
        },
      );
      const kl = s.klFactor * klRes.kl;
      const dn = norm(delta);
      const wd = wdScale * dn;
      const loss = nll + kl + wd;
      steps.push({ nll, kl, wd, loss, deltaNorm: dn });
      if (!Number.isFinite(loss)) nonFinite++;
      if (loss < lossBreak || it === s.steps - 1 || nonFinite) {
        nllRes.dLogits.dispose();
        disposeTaped(taped);
        break;
      }
      const dxTop = await backwardFromLogits(net, taped, nllRes.dLogits, batch);
      const bad = await countNonFinite(dxTop);
      const dx = await moveTo(dxTop, gpu);
      const gT = await sumRows(dx, lookupRows);
      dx.dispose();
      const g = await gT.read();
      gT.dispose();
      if (bad) {
        nonFinite += bad;
        break;
      }
      // Adam (torch semantics), then the weight-decay gradient wd·δ/‖δ‖ (0 at δ = 0)
      const t = it + 1;
      for (let j = 0; j < dModel; j++) {
        const gj = g[j] + (dn > 0 ? wdScale * delta[j] / dn : 0);
        m[j] = b1 * m[j] + (1 - b1) * gj;
        v[j] = b2 * v[j] + (1 - b2) * gj * gj;
        const mh = m[j] / (1 - b1 ** t), vh = v[j] / (1 - b2 ** t);
        delta[j] -= s.lr * mh / (Math.sqrt(vh) + eps);
      }
      const n = norm(delta);
      if (n > maxNorm) { for (let j = 0; j < dModel; j++) delta[j] *= maxNorm / n; }
      if (!Number.isFinite(n)) {
        nonFinite++;
        break;
      }
    }
  } finally {
    x0.dispose();
    initLogProbs?.dispose();
  }
  const d32 = Float32Array.from(delta);
  return { targetInit, delta: d32, vStar: targetInit.map((x, j) => x + d32[j]), steps, rows, nonFinite };
}
