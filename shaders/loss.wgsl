// Softmax losses over logits rows [rows, V] (V up to ~128k): log-softmax, token NLL with its gradient,
// KL(P_cur ‖ P_init) with its gradient, and row argmax. One workgroup (WG threads) per row; every row
// reduction (max, Σexp, Σ) is a per-thread strided loop plus a shared-memory tree. All math is f32:
// softmax subtracts the row max, log-sum-exp = max + log(Σ exp(x − max)).
// Aliases (set by the host; unused ones are f32): TL logits, TI initial log-probs (KL).
// Outputs (log-probs, dLogits) are f32.

struct Params {
  n: u32,       // rows in this dispatch
  V: u32,       // row length
  l_off: u32,   // token_nll / kl: element offset of row 0 in the logits chunk
  o_off: u32,   // token_nll / kl: element offset of row 0 in the output chunk
  row0: u32,    // token_nll: global index of row 0 (targets, weights, nll)
  acc: u32,     // kl: add the gradient into out instead of overwriting
  weight: f32,  // kl: gradient scale
  _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<TL>;
@group(0) @binding(2) var<storage, read> pairs: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read> targets: array<i32>;
@group(0) @binding(5) var<storage, read> weights: array<f32>;
@group(0) @binding(6) var<storage, read_write> scal: array<f32>;
@group(0) @binding(7) var<storage, read> init: array<TI>;
@group(0) @binding(8) var<storage, read_write> idx: array<u32>;

// threads per workgroup (a power of two): 256 on GPUs; the host picks 8 on CPU adapters (one SIMD group
// per row: every tree level is a barrier, and a barrier is a coroutine switch per SIMD group on lavapipe)
override WG: u32 = 256u;
var<workgroup> red: array<f32, WG>;
var<workgroup> red_i: array<u32, WG>;

fn wg_sum(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      red[lid] = red[lid] + red[lid + s];
    }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

fn wg_max(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (lid < s) {
      red[lid] = max(red[lid], red[lid + s]);
    }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

// log Σ_v exp(x_v) of the row starting at element `base` (max-subtracted).
fn row_lse(base: u32, lid: u32) -> f32 {
  var m = -3.402823e38;
  for (var j = lid; j < p.V; j += WG) {
    m = max(m, f32(logits[base + j]));
  }
  let mx = wg_max(m, lid);
  var s = 0.0;
  for (var j = lid; j < p.V; j += WG) {
    s += exp(f32(logits[base + j]) - mx);
  }
  return mx + log(wg_sum(s, lid));
}

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.y * nwg.x + wid.x;
}

// Pairs (logits row, out row), local to the bound chunks: out[o] = logits[r] − lse(logits[r]).
@compute @workgroup_size(WG)
fn log_softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) l: vec3<u32>) {
  let i = group_index(wid, nwg);
  if (i >= p.n) { return; }
  let base = pairs[2u * i] * p.V;
  let ob = pairs[2u * i + 1u] * p.V;
  let lse = row_lse(base, l.x);
  for (var j = l.x; j < p.V; j += WG) {
    out[ob + j] = f32(logits[base + j]) - lse;
  }
}

// Row r of this segment (global row row0 + r): nll = lse − x[target] and
// dLogits = w·(softmax − onehot(target)); target −1 ⇒ nll 0 and a zero row.
@compute @workgroup_size(WG)
fn token_nll(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_id) l: vec3<u32>) {
  let r = group_index(wid, nwg);
  if (r >= p.n) { return; }
  let base = p.l_off + r * p.V;
  let ob = p.o_off + r * p.V;
  let g = p.row0 + r;
  let t = targets[g];
  let valid = t >= 0;
  let tu = select(0u, u32(t), valid);
  let w = select(0.0, weights[g], valid);
  let lse = row_lse(base, l.x);
  for (var j = l.x; j < p.V; j += WG) {
    let sm = exp(f32(logits[base + j]) - lse);
    let hot = select(0.0, 1.0, valid && j == tu);
    out[ob + j] = w * (sm - hot);
  }
  if (l.x == 0u) {
    scal[g] = select(0.0, lse - f32(logits[base + tu]), valid);
  }
}

// One row: KL = Σ p·(c − i) with c = log_softmax(logits row), p = exp(c), i = init log-probs;
// out row (+)= weight·p·(c − i − KL); scal[0] = KL.
@compute @workgroup_size(WG)
fn kl_div(@builtin(local_invocation_id) l: vec3<u32>) {
  let base = p.l_off;
  let lse = row_lse(base, l.x);
  var s = 0.0;
  for (var j = l.x; j < p.V; j += WG) {
    let c = f32(logits[base + j]) - lse;
    s += exp(c) * (c - f32(init[j]));
  }
  let kl = wg_sum(s, l.x);
  for (var j = l.x; j < p.V; j += WG) {
    let c = f32(logits[base + j]) - lse;
    var gr = p.weight * exp(c) * (c - f32(init[j]) - kl);
    if (p.acc != 0u) {
      gr += out[p.o_off + j];
    }
    out[p.o_off + j] = gr;
  }
  if (l.x == 0u) {
    scal[0] = kl;
  }
}

// Pairs (logits row, out index): idx[o] = argmax of the row (the first index among equal maxima).
@compute @workgroup_size(WG)
fn argmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) l: vec3<u32>) {
  let i = group_index(wid, nwg);
  if (i >= p.n) { return; }
  let base = pairs[2u * i] * p.V;
  var bv = -3.402823e38;
  var bi = 0xffffffffu;
  for (var j = l.x; j < p.V; j += WG) {
    let v = f32(logits[base + j]);
    if (v > bv || bi == 0xffffffffu) {
      bv = v;
      bi = j;
    }
  }
  red[l.x] = bv;
  red_i[l.x] = bi;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    if (l.x < s) {
      let ov = red[l.x + s];
      let oi = red_i[l.x + s];
      let mv = red[l.x];
      let mi = red_i[l.x];
      // take the other side if it has a value and (a larger one, or an equal one at a smaller index)
      if (oi != 0xffffffffu && (mi == 0xffffffffu || ov > mv || (ov == mv && oi < mi))) {
        red[l.x] = ov;
        red_i[l.x] = oi;
      }
    }
    workgroupBarrier();
  }
  if (l.x == 0u) {
    idx[pairs[2u * i + 1u]] = red_i[0];
  }
}
