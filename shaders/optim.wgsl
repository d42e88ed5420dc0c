// Optimiser steps that stay on the GPU. adam_delta: one Adam step (torch semantics) on ROME's δ with
// the weight-decay gradient wd·δ/‖δ‖ added first and the norm clamp ‖δ‖ ≤ max_norm after, plus the loss
// parts of the forward that produced the gradient, so a v* step needs one small readback (stats).
// One workgroup of 256 threads walks all d entries; f32 throughout.

struct AdamParams {
  d: u32,
  n_rows: u32,   // rows of nll / weights
  max_steps: u32, // entries of the bias-correction table
  _p1: u32,
  beta1: f32,
  beta2: f32,
  one_minus_beta1: f32, // 1 − β1 and 1 − β2 rounded from f64, as torch passes them
  one_minus_beta2: f32,
  eps: f32,
  wd_scale: f32, // weight_decay / ‖target_init‖²: the loss term is wd_scale·‖δ‖
  max_norm: f32, // clamp_norm_factor · ‖target_init‖
  kl_factor: f32,
}

@group(0) @binding(0) var<uniform> p: AdamParams;
@group(0) @binding(1) var<storage, read> grad: array<f32>;     // dLoss/dδ without the weight-decay term
@group(0) @binding(2) var<storage, read> nll: array<f32>;      // per logit row (unweighted)
@group(0) @binding(3) var<storage, read> weights: array<f32>;  // per logit row
@group(0) @binding(4) var<storage, read> kl: array<f32>;       // [1], unscaled
@group(0) @binding(5) var<storage, read> bad: array<u32>;      // [1], non-finite values in the backward
@group(0) @binding(6) var<storage, read_write> delta: array<f32>;
// [0, d) Adam m, [d, 2d) Adam v, [2d, 3d) δ before this step, [3d] the step count t, then per step
// t = 1…max_steps the pair (lr / (1 − β1^t), √(1 − β2^t)) computed on the host in f64 (in f32 the
// 1 − β2^t cancellation would cost 5 digits at t = 1)
@group(0) @binding(7) var<storage, read_write> state: array<f32>;
// out: Σ w·nll, kl_factor·kl, ‖δ‖ before the step, ‖δ‖ after (clamped), non-finite backward values
@group(0) @binding(8) var<storage, read_write> stats: array<f32>;

var<workgroup> red: array<f32, 256>;
var<workgroup> shared_t: f32;

fn reduce_sum(v: f32, i: u32) -> f32 {
  red[i] = v;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s >> 1u) {
    if (i < s) { red[i] = red[i] + red[i + s]; }
    workgroupBarrier();
  }
  let out = red[0];
  workgroupBarrier();
  return out;
}

@compute @workgroup_size(256)
fn adam_delta(@builtin(local_invocation_id) l: vec3<u32>) {
  let i = l.x;
  let d = p.d;
  var s = 0.0;
  for (var j = i; j < d; j = j + 256u) { s = s + delta[j] * delta[j]; }
  let dn = sqrt(reduce_sum(s, i));
  var ls = 0.0;
  for (var r = i; r < p.n_rows; r = r + 256u) { ls = ls + weights[r] * nll[r]; }
  let nll_sum = reduce_sum(ls, i);
  if (i == 0u) {
    stats[0] = nll_sum;
    stats[1] = p.kl_factor * kl[0];
    stats[2] = dn;
    stats[4] = f32(bad[0]);
    shared_t = state[3u * d] + 1.0;
    state[3u * d] = shared_t;
  }
  workgroupBarrier();
  let ti = min(u32(shared_t), p.max_steps) - 1u;
  let step_size = state[3u * d + 1u + 2u * ti];
  let bc2_sqrt = state[3u * d + 2u + 2u * ti];
  var s2 = 0.0;
  for (var j = i; j < d; j = j + 256u) {
    let x = delta[j];
    state[2u * d + j] = x;
    var g = grad[j];
    if (dn > 0.0) { g = g + p.wd_scale * x / dn; }
    let m = p.beta1 * state[j] + p.one_minus_beta1 * g;
    let v = p.beta2 * state[d + j] + p.one_minus_beta2 * g * g;
    state[j] = m;
    state[d + j] = v;
    let y = x - step_size * m / (sqrt(v) / bc2_sqrt + p.eps);
    delta[j] = y;
    s2 = s2 + y * y;
  }
  let n = sqrt(reduce_sum(s2, i));
  var scale = 1.0;
  if (n > p.max_norm) { scale = p.max_norm / n; }
  if (scale != 1.0) {
    for (var j = i; j < d; j = j + 256u) { delta[j] = delta[j] * scale; }
  }
  if (i == 0u) {
    // a non-finite norm is reported as is (bit test: the compiler may not fold it away)
    let nonfinite = (bitcast<u32>(n) & 0x7f800000u) == 0x7f800000u;
    stats[3] = select(min(n, p.max_norm), n, nonfinite);
  }
}
