/**
 * Plain-TS f64 reference of lib/ops/optim.ts.
 * @module
 */
import type { AdamDeltaSettings } from "../ops/optim.ts";

/** Host state of {@link adamDeltaRef}. */
export interface AdamDeltaRefState {
  delta: Float64Array;
  m: Float64Array;
  v: Float64Array;
  t: number;
}

/**
 * One Adam step on δ as {@link adamDelta} computes it (the v* update of ROME's reference code):
 * returns ‖δ‖ before and after (clamped). Steps past `tableSteps` reuse that step's bias correction.
 */
export function adamDeltaRef(
  s: AdamDeltaSettings,
  st: AdamDeltaRefState,
  grad: ArrayLike<number>,
  tableSteps = Infinity,
): { normBefore: number; normAfter: number } {
  const b1 = s.beta1 ?? 0.9, b2 = s.beta2 ?? 0.999, eps = s.eps ?? 1e-8;
  const d = st.delta.length;
  const norm = (x: Float64Array) => Math.sqrt(x.reduce((a, b) => a + b * b, 0));
  const dn = norm(st.delta);
  st.t++;
  for (let j = 0; j < d; j++) {
    const g = grad[j] + (dn > 0 ? s.wdScale * st.delta[j] / dn : 0);
    st.m[j] = b1 * st.m[j] + (1 - b1) * g;
    st.v[j] = b2 * st.v[j] + (1 - b2) * g * g;
    const t = Math.min(st.t, tableSteps);
    const stepSize = s.lr / (1 - b1 ** t), bc2Sqrt = Math.sqrt(1 - b2 ** t);
    st.delta[j] -= stepSize * st.m[j] / (Math.sqrt(st.v[j]) / bc2Sqrt + eps);
  }
  const n = norm(st.delta);
  if (n > s.maxNorm) { for (let j = 0; j < d; j++) st.delta[j] *= s.maxNorm / n; }
  return { normBefore: dn, normAfter: Math.min(n, s.maxNorm) };
}
