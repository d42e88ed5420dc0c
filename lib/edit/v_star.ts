/**
 * v*: the value that makes the model say the new target. One f32 vector δ is added to the rewrite
 * module's output at the lookup token of every rewriting prompt (and of the "{} is a" KL prompt) and
 * optimised with Adam on NLL(target) + kl_factor·KL(P_cur ‖ P_init) + weight decay, through every layer
 * above the edited one (GPU backward). Layers at and below the edit layer do not depend on δ, so they
 * run once; above it, the positions before each row's lookup token (and before its first loss row) do not
 * depend on δ either: their keys and values are computed once into a KV cache and every step runs only
 * the rows from there on (lib/model/suffix.ts).
 * @module
 */
import type { Capture } from "../gpu/capture.ts";
import { Tensor } from "../gpu/tensor.ts";
import { cast, countNonFiniteInto } from "../ops/elementwise.ts";
import { addToRows, gatherRows, sumRows } from "../ops/embedding.ts";
import { klDivergenceOnGpu, logSoftmax, tokenNllOnGpu } from "../ops/loss.ts";
import { ADAM_STATS, adamDelta, type AdamDeltaSettings, adamDeltaState } from "../ops/optim.ts";
import { freezeOperands } from "../ops/matmul_frozen.ts";
import { backwardFromLogits, forwardWithTape } from "../model/backward.ts";
import { moveTo, padBatch, type TokenBatch, type Transformer } from "../model/transformer.ts";
import { prefillAbove, suffixBatch, suffixRow } from "../model/suffix.ts";
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
  /**
   * Where target_init is read at row 0's lookup token (δ is added to the residual after block `layer`
   * either way): `"mlp"` = the MLP output of block `layer` (ROME's v*, default), `"residual"` = the
   * residual stream after block `layer` (MEMIT's z).
   */
  targetInitAt?: "mlp" | "residual";
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
  let targetInit = await pre.values!.read();
  pre.values!.dispose(), pre.keys!.dispose();
  if (s.targetInitAt === "residual") {
    const h = await gatherRows(pre.x, lookupRows.subarray(0, 1), { outDtype: "f32" });
    targetInit = await h.read();
    h.dispose();
  }
  // Every row's positions before its lookup token and its first loss row are constants: cached once.
  const cut = rows.map((r, i) => {
    const own = [...logitRows].filter((f) => Math.floor(f / batch.seq) === i).map((f) => f % batch.seq);
    return Math.min(r.lookup, ...own);
  });
  const suffix = suffixBatch(batch, cut);
  const sb = suffix.batch;
  const sufLookup = lookupRows.map((r) => suffixRow(suffix, r));
  const sufLogitRows = logitRows.map((r) => suffixRow(suffix, r));
  const prefix = await prefillAbove(net, pre.x, L + 1, suffix).catch((e) => {
    pre.x.dispose();
    throw e;
  });
  const x0 = await gatherRows(pre.x, suffix.sourceRows, { outDtype: pre.x.dtype }).catch((e) => {
    prefix.dispose();
    throw e;
  }).finally(() => pre.x.dispose());
  const dModel = net.config.hiddenSize;
  const wdScale = s.weightDecay / (norm(targetInit) ** 2);
  const maxNorm = s.clampNormFactor * norm(targetInit);
  const adam: AdamDeltaSettings = { lr: s.lr, wdScale, maxNorm, klFactor: s.klFactor };
  const st = adamDeltaState(gpu, dModel, adam, s.steps);
  const weightsT = Tensor.from(gpu, weights, [T], "f32", { name: "v*.weights" });
  const steps: VStep[] = [];
  let initLogProbs = null as Tensor | null;
  let nonFinite = 0;
  let undo = false;
  const lossBreak = s.lossBreak ?? 5e-2;
  // Every step records the same dispatches on the same shapes: step 0 runs as recorded (it also forms
  // the initial log-probs of the KL row), step 1 is captured while it runs, later steps replay it. Work
  // that crosses devices reads back, so a split model runs every step as recorded.
  const capturable = !gpu.timesEachOp && net.blocks.every((_, i) => i <= L || net.deviceOf(i) === gpu);
  let capture: Capture | null = null;

  /** One forward + backward + Adam step, all on the GPU: no readback. */
  const step = async (): Promise<void> => {
    const x = await cast(x0, x0.dtype);
    await addToRows(x, st.delta, sufLookup);
    const taped = await forwardWithTape(net, x, L + 1, sb, sufLogitRows, prefix);
    const nllRes = await tokenNllOnGpu(taped.logits, targets, { weights });
    initLogProbs ??= await logSoftmax(taped.logits, Uint32Array.of(klLogitRow));
    const klRes = await klDivergenceOnGpu(
      taped.logits,
      klLogitRow,
      initLogProbs.reshape([net.config.vocabSize]),
      { weight: s.klFactor, into: nllRes.dLogits },
    );
    const dxTop = await backwardFromLogits(net, taped, nllRes.dLogits, sb);
    const bad = Tensor.zeros(dxTop.gpu, [1], "f32", { name: "v*.nonfinite" });
    await countNonFiniteInto(dxTop, bad);
    const dx = await moveTo(dxTop, gpu);
    const gT = await sumRows(dx, sufLookup);
    dx.dispose();
    const nllT = await moveTo(nllRes.nll, gpu), klT = await moveTo(klRes.kl, gpu);
    const badT = await moveTo(bad, gpu);
    await adamDelta(adam, st, gT, { nll: nllT, weights: weightsT, kl: klT, bad: badT });
    for (const t of [gT, nllT, klT, badT]) t.dispose();
  };

  // the weights above L stay fixed through the loop: few-row products on CPU adapters read them from
  // textures packed at step 0 (lib/ops/matmul_frozen.ts)
  const above = net.weightTensors(L + 1);
  const frozen = net.devices.map((d) =>
    freezeOperands(d, above.filter((t) => t.gpu === d).flatMap((t) => t.chunks))
  );
  try {
    for (let it = 0; it < s.steps; it++) {
      if (it === 0 || !capturable) {
        await step();
      } else if (!capture) {
        gpu.beginCapture();
        try {
          await step();
        } finally {
          capture = gpu.endCapture();
        }
      } else {
        capture.replay();
      }
      // the one readback of a step: its loss parts, ‖δ‖ and the backward's non-finite count
      const stats = await st.stats.read();
      const nll = stats[ADAM_STATS.nll], kl = stats[ADAM_STATS.kl], dn = stats[ADAM_STATS.normBefore];
      const wd = wdScale * dn;
      const loss = nll + kl + wd;
      steps.push({ nll, kl, wd, loss, deltaNorm: dn });
      if (!Number.isFinite(loss)) nonFinite++;
      // stopping here keeps the δ this step's forward used (the update it also made is undone)
      if (loss < lossBreak || it === s.steps - 1 || nonFinite) {
        undo = true;
        break;
      }
      const bad = stats[ADAM_STATS.badGrad];
      if (bad) {
        nonFinite += bad;
        undo = true;
        break;
      }
      if (!Number.isFinite(stats[ADAM_STATS.normAfter])) {
        nonFinite++;
        break;
      }
    }
    const delta = undo
      ? new Float32Array(await gpu.read(st.state.buffer, 2 * dModel * 4, dModel * 4))
      : await st.delta.read();
    return { targetInit, delta, vStar: targetInit.map((x, j) => x + delta[j]), steps, rows, nonFinite };
  } finally {
    capture?.dispose();
    for (const f of frozen) f.release();
    prefix.dispose();
    x0.dispose();
    initLogProbs?.dispose();
    weightsT.dispose();
    st.delta.dispose(), st.state.dispose(), st.stats.dispose();
  }
}
