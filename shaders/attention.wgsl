// Causal multi-head attention (GQA, sliding window, right padding), forward and backward.
// Aliases set by the host: TQ, TK, TV (storage of q, k, v), TO (forward output), TD (dOut).
// Math and accumulation are f32 whatever the storage types.
//
// Layout: q and out are [B·Sq, H·hd], k and v are [B·Skv, KV·hd], row = batch·S + position. The host binds
// a run of `nb` batch rows (workgroup z) starting at global batch row `batch0`; *_off are element offsets
// of that run's first row inside the bound buffers. rowinfo[2b] = valid keys of batch row b (right padding),
// rowinfo[2b+1] = absolute position of its query 0. Query i (absolute position p = rowinfo[2b+1] + i) of head h
// sees key j of kv head h / group iff j < kv_len, j <= p and (window == 0 or j + window > p).
// stats[2·((b·H + h)·Sq + i)] = logsumexp of the query's scaled scores (0 when it sees no key),
// stats[… + 1] = D = Σ_d dOut·out (backward only).
//
// Tiles keep workgroup memory under 16 KiB (WebGPU's guaranteed minimum). The host prepends the tile
// sizes as u32 constants (lib/ops/attention.ts, one pipeline variant per head_dim class):
//   HDM (the largest head_dim of the variant), FQ x FK (forward tile: queries x keys per step),
//   BT (backward tile: BT x BT). head_dim ≤ 128: HDM 128, FQ 16, FK 8, BT 8; head_dim ≤ 256: HDM 256,
//   FQ 8, FK 4, BT 4 (same thread counts and per-thread accumulators, fewer rows per tile).
//
// Two designs: the tiled entries (attn_fwd, attn_bwd_*) share q/k/v tiles in workgroup memory between
// threads (GPUs); the *_tpr entries at the end give each invocation a whole query row (or key row) and
// use no workgroup memory and no barriers (CPU adapters such as lavapipe, where barriers are costly).

const NT: u32 = 64u;
// forward: LQ threads per query row, FACC dims each (HDM 128: 4 x 32; HDM 256: 8 x 32)
const LQ: u32 = NT / FQ;
const FACC: u32 = HDM / LQ;
// backward: scores by threads t < BT·BT (query t / BT, key t % BT); accumulation by LB threads per row,
// BACC dims each (HDM 128: 8 x 16; HDM 256: 16 x 16)
const LB: u32 = NT / BT;
const BACC: u32 = HDM / LB;
// score of a masked entry; valid scores are tested with `s > MASKED_TEST`
const MASKED: f32 = -3.0e38;
const MASKED_TEST: f32 = -1.0e38;

struct Params {
  seq_q: u32,
  seq_kv: u32,
  heads: u32,
  kv_heads: u32,
  head_dim: u32,
  group: u32,
  window: u32,
  batch0: u32,
  q_off: u32,
  k_off: u32,
  v_off: u32,
  o_off: u32,
  do_off: u32,
  dk_off: u32,
  dv_off: u32,
  flags: u32,
  scale: f32,
  _p0: u32,
  _p1: u32,
  _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> rowinfo: array<u32>;
@group(0) @binding(2) var<storage, read> qb: array<TQ>;
@group(0) @binding(3) var<storage, read> kb: array<TK>;
@group(0) @binding(4) var<storage, read> vb: array<TV>;
@group(0) @binding(5) var<storage, read_write> ob: array<TO>;
@group(0) @binding(6) var<storage, read_write> stats: array<f32>;
@group(0) @binding(7) var<storage, read> dob: array<TD>;
@group(0) @binding(8) var<storage, read> o32: array<f32>;
@group(0) @binding(9) var<storage, read_write> g0: array<f32>;
@group(0) @binding(10) var<storage, read_write> g1: array<f32>;
// attn_fwd_texel: k and v of the bound run packed as rgba32float texels (lib/ops/matmul_texel.ts packTexels),
// texel (c, r) = row r of the run, elements 4c .. 4c+3
// read-only storage textures (a quarter of a sampled textureLoad's cost on lavapipe; see matmul.wgsl)
@group(0) @binding(11) var kt: texture_storage_2d<rgba32float, read>;
@group(0) @binding(12) var vt: texture_storage_2d<rgba32float, read>;

// Is key `key` visible to the query at absolute position `p` (given the batch row's kv length)?
fn visible(key: u32, p: u32, kv_len: u32) -> bool {
  return key < kv_len && key <= p && (P.window == 0u || key + P.window > p);
}

// Keys [lo, hi) that any query with positions [p_lo, p_hi] can see.
fn key_range(p_lo: u32, p_hi: u32, kv_len: u32) -> vec2<u32> {
  let hi = min(kv_len, p_hi + 1u);
  var lo = 0u;
  if (P.window > 0u && p_lo + 1u > P.window) { lo = p_lo + 1u - P.window; }
  return vec2<u32>(lo, hi);
}

fn stat_index(b: u32, h: u32, i: u32) -> u32 {
  return 2u * ((b * P.heads + h) * P.seq_q + i);
}

// ---------------------------------------------------------------- forward (online softmax)
var<workgroup> f_q: array<f32, FQ * HDM>; // FQ x HDM, q·scale
var<workgroup> f_kv: array<f32, FK * HDM>; // FK x HDM, the key tile, then the value tile
var<workgroup> f_s: array<f32, FQ * FK>; // FQ x FK scores, then probabilities
var<workgroup> f_row: array<f32, 2 * FQ>; // per row: rescale factor [0, FQ), final sum [FQ, 2FQ)

// grid: (ceil(Sq / FQ), H, nb); flags bit 0: write the logsumexp into stats.
@compute @workgroup_size(64)
fn attn_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let h = wid.y;
  let b = P.batch0 + wid.z;
  let kv_len = min(rowinfo[2u * b], P.seq_kv);
  let qpos0 = rowinfo[2u * b + 1u];
  let hd = P.head_dim;
  let q0 = wid.x * FQ;
  let nq = min(FQ, P.seq_q - q0);
  let qs = P.heads * hd;
  let kvs = P.kv_heads * hd;
  let qbase = P.q_off + (wid.z * P.seq_q + q0) * qs + h * hd;
  let kvh = h / P.group;
  let kbase = P.k_off + wid.z * P.seq_kv * kvs + kvh * hd;
  let vbase = P.v_off + wid.z * P.seq_kv * kvs + kvh * hd;

  for (var i = t; i < FQ * hd; i += NT) {
    let r = i / hd;
    let d = i - r * hd;
    var x = 0.0;
    if (r < nq) { x = f32(qb[qbase + r * qs + d]) * P.scale; }
    f_q[r * HDM + d] = x;
  }
  let p_lo = qpos0 + q0;
  let kr = key_range(p_lo, p_lo + nq - 1u, kv_len);
  let my_q = t / LQ;
  let lane = t % LQ;
  var acc: array<f32, FACC>;
  var m = MASKED; // running max (rows t < FQ only)
  var l = 0.0; // running sum of exp(s - m)
  workgroupBarrier();

  for (var k0 = kr.x; k0 < kr.y; k0 += FK) {
    let nk = min(FK, kr.y - k0);
    for (var i = t; i < FK * hd; i += NT) {
      let r = i / hd;
      let d = i - r * hd;
      var x = 0.0;
      if (r < nk) { x = f32(kb[kbase + (k0 + r) * kvs + d]); }
      f_kv[r * HDM + d] = x;
    }
    workgroupBarrier();
    for (var e = t; e < FQ * FK; e += NT) {
      let r = e / FK;
      let c = e - r * FK;
      var s = MASKED;
      if (r < nq && c < nk && visible(k0 + c, p_lo + r, kv_len)) {
        var dot = 0.0;
        for (var d = 0u; d < hd; d++) { dot += f_q[r * HDM + d] * f_kv[c * HDM + d]; }
        s = dot;
      }
      f_s[e] = s;
    }
    workgroupBarrier();
    for (var i = t; i < FK * hd; i += NT) {
      let r = i / hd;
      let d = i - r * hd;
      var x = 0.0;
      if (r < nk) { x = f32(vb[vbase + (k0 + r) * kvs + d]); }
      f_kv[r * HDM + d] = x;
    }
    if (t < FQ) {
      var mt = m;
      for (var c = 0u; c < FK; c++) { mt = max(mt, f_s[t * FK + c]); }
      // both finite: exp(MASKED - real) = 0, exp(MASKED - MASKED) = 1 (acc and l are still 0 then)
      let alpha = exp(m - mt);
      var sum = 0.0;
      for (var c = 0u; c < FK; c++) {
        let s = f_s[t * FK + c];
        var pr = 0.0;
        if (s > MASKED_TEST) { pr = exp(s - mt); }
        f_s[t * FK + c] = pr;
        sum += pr;
      }
      l = l * alpha + sum;
      m = mt;
      f_row[t] = alpha;
    }
    workgroupBarrier();
    let alpha = f_row[my_q];
    for (var j = 0u; j < FACC; j++) {
      let d = lane + LQ * j;
      if (d < hd) {
        var a = acc[j] * alpha;
        for (var c = 0u; c < FK; c++) { a += f_s[my_q * FK + c] * f_kv[c * HDM + d]; }
        acc[j] = a;
      }
    }
    workgroupBarrier();
  }

  if (t < FQ) { f_row[FQ + t] = l; }
  workgroupBarrier();
  if (my_q < nq) {
    let lq = f_row[FQ + my_q];
    var inv = 0.0; // a query that sees no key gets zeros, never NaN
    if (lq > 0.0) { inv = 1.0 / lq; }
    let obase = P.o_off + (wid.z * P.seq_q + q0 + my_q) * qs + h * hd;
    for (var j = 0u; j < FACC; j++) {
      let d = lane + LQ * j;
      if (d < hd) { ob[obase + d] = TO(acc[j] * inv); }
    }
  }
  if ((P.flags & 1u) != 0u && t < nq) {
    var v = 0.0;
    if (l > 0.0) { v = m + log(l); }
    stats[stat_index(b, h, q0 + t)] = v;
  }
}

// ---------------------------------------------------------------- backward: D = Σ_d dOut·out
// one thread per (query row of the run, head); grid from grid1d(nb·Sq·H) with 256 threads.
@compute @workgroup_size(256)
fn attn_bwd_prep(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * 256u + lid;
  let n = P.flags; // nb·Sq·H
  if (i >= n) { return; }
  let h = i % P.heads;
  let row = i / P.heads;
  let zb = row / P.seq_q;
  let qi = row - zb * P.seq_q;
  let hd = P.head_dim;
  let base = row * P.heads * hd + h * hd;
  var dsum = 0.0;
  for (var d = 0u; d < hd; d++) { dsum += f32(dob[P.do_off + base + d]) * o32[P.o_off + base + d]; }
  stats[stat_index(P.batch0 + zb, h, qi) + 1u] = dsum;
}

var<workgroup> b_a: array<f32, BT * HDM>; // BT x HDM
var<workgroup> b_b: array<f32, BT * HDM>;
var<workgroup> b_c: array<f32, BT * HDM>;
var<workgroup> b_p: array<f32, BT * BT>; // BT x BT
var<workgroup> b_ds: array<f32, BT * BT>;
var<workgroup> b_st: array<f32, 2 * BT>; // logsumexp [0, BT), D [BT, 2BT)

// ---------------------------------------------------------------- backward: dq (f32) into g0
// dq_i = scale · Σ_j dS_ij k_j, dS_ij = P_ij (dP_ij − D_i), dP_ij = dOut_i·v_j. grid: (ceil(Sq/BT), H, nb).
@compute @workgroup_size(64)
fn attn_bwd_dq(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let h = wid.y;
  let b = P.batch0 + wid.z;
  let kv_len = min(rowinfo[2u * b], P.seq_kv);
  let qpos0 = rowinfo[2u * b + 1u];
  let hd = P.head_dim;
  let q0 = wid.x * BT;
  let nq = min(BT, P.seq_q - q0);
  let qs = P.heads * hd;
  let kvs = P.kv_heads * hd;
  let row0 = (wid.z * P.seq_q + q0) * qs + h * hd;
  let kvh = h / P.group;
  let kbase = P.k_off + wid.z * P.seq_kv * kvs + kvh * hd;
  let vbase = P.v_off + wid.z * P.seq_kv * kvs + kvh * hd;

  for (var i = t; i < BT * hd; i += NT) {
    let r = i / hd;
    let d = i - r * hd;
    var x = 0.0;
    var y = 0.0;
    if (r < nq) {
      x = f32(qb[P.q_off + row0 + r * qs + d]);
      y = f32(dob[P.do_off + row0 + r * qs + d]);
    }
    b_a[r * HDM + d] = x;
    b_b[r * HDM + d] = y;
  }
  if (t < BT) {
    var ls = 0.0;
    var dd = 0.0;
    if (t < nq) {
      ls = stats[stat_index(b, h, q0 + t)];
      dd = stats[stat_index(b, h, q0 + t) + 1u];
    }
    b_st[t] = ls;
    b_st[BT + t] = dd;
  }
  let p_lo = qpos0 + q0;
  let kr = key_range(p_lo, p_lo + nq - 1u, kv_len);
  let r = t / BT; // score role (t < BT·BT; r < nq implies it): query r, key c
  let c = t % BT;
  let ar = t / LB; // accumulation role: query ar, dims lane + LB·j
  let lane = t % LB;
  var acc: array<f32, BACC>;
  workgroupBarrier();

  for (var k0 = kr.x; k0 < kr.y; k0 += BT) {
    let nk = min(BT, kr.y - k0);
    let ok = r < nq && c < nk && visible(k0 + c, p_lo + r, kv_len);
    for (var i = t; i < BT * hd; i += NT) {
      let rr = i / hd;
      let d = i - rr * hd;
      var x = 0.0;
      if (rr < nk) { x = f32(vb[vbase + (k0 + rr) * kvs + d]); }
      b_c[rr * HDM + d] = x;
    }
    workgroupBarrier();
    var dp = 0.0;
    if (ok) {
      for (var d = 0u; d < hd; d++) { dp += b_b[r * HDM + d] * b_c[c * HDM + d]; }
    }
    workgroupBarrier();
    for (var i = t; i < BT * hd; i += NT) {
      let rr = i / hd;
      let d = i - rr * hd;
      var x = 0.0;
      if (rr < nk) { x = f32(kb[kbase + (k0 + rr) * kvs + d]); }
      b_c[rr * HDM + d] = x;
    }
    workgroupBarrier();
    var ds = 0.0;
    if (ok) {
      var s = 0.0;
      for (var d = 0u; d < hd; d++) { s += b_a[r * HDM + d] * b_c[c * HDM + d]; }
      let pr = exp(s * P.scale - b_st[r]);
      ds = pr * (dp - b_st[BT + r]);
    }
    if (t < BT * BT) { b_ds[t] = ds; }
    workgroupBarrier();
    for (var j = 0u; j < BACC; j++) {
      let d = lane + LB * j;
      if (d < hd) {
        var a = acc[j];
        for (var cc = 0u; cc < BT; cc++) { a += b_ds[ar * BT + cc] * b_c[cc * HDM + d]; }
        acc[j] = a;
      }
    }
    workgroupBarrier();
  }
  if (ar < nq) {
    for (var j = 0u; j < BACC; j++) {
      let d = lane + LB * j;
      if (d < hd) { g0[P.o_off + row0 + ar * qs + d] = acc[j] * P.scale; }
    }
  }
}

// ---------------------------------------------------------------- backward: dk into g0, dv into g1 (f32)
// One workgroup per (block of BT keys, kv head, batch row) loops over the query heads sharing the kv head
// and over the query tiles that can see the block: dv_j = Σ_i P_ij dOut_i, dk_j = scale · Σ_i dS_ij q_i.
// grid: (ceil(Skv/BT), KV, nb). Keys that no query sees (padding) get zeros.
@compute @workgroup_size(64)
fn attn_bwd_dkdv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
  let g = wid.y;
  let b = P.batch0 + wid.z;
  let kv_len = min(rowinfo[2u * b], P.seq_kv);
  let qpos0 = rowinfo[2u * b + 1u];
  let hd = P.head_dim;
  let k0 = wid.x * BT;
  let nk = min(BT, P.seq_kv - k0);
  let qs = P.heads * hd;
  let kvs = P.kv_heads * hd;
  let krow0 = (wid.z * P.seq_kv + k0) * kvs + g * hd;

  for (var i = t; i < BT * hd; i += NT) {
    let r = i / hd;
    let d = i - r * hd;
    var x = 0.0;
    var y = 0.0;
    if (r < nk) {
      x = f32(kb[P.k_off + krow0 + r * kvs + d]);
      y = f32(vb[P.v_off + krow0 + r * kvs + d]);
    }
    b_b[r * HDM + d] = x; // keys
    b_c[r * HDM + d] = y; // values
  }
  // query rows [qlo, qhi) that can see some key of the block
  var qlo = 0u;
  var qhi = 0u;
  if (k0 < kv_len) {
    let k_last = min(k0 + nk, kv_len) - 1u;
    if (k0 > qpos0) { qlo = k0 - qpos0; }
    qhi = P.seq_q;
    if (P.window > 0u) {
      // p < k_last + window
      if (k_last + P.window <= qpos0) { qhi = 0u; } else { qhi = min(qhi, k_last + P.window - qpos0); }
    }
  }
  let r = t / BT; // score role (t < BT·BT): query r of the tile, key c of the block
  let c = t % BT;
  let my_k = t / LB; // accumulation role: key my_k, dims lane + LB·j
  let lane = t % LB;
  var dk: array<f32, BACC>;
  var dv: array<f32, BACC>;
  workgroupBarrier();

  for (var hi = 0u; hi < P.group; hi++) {
    let h = g * P.group + hi;
    for (var q0 = qlo; q0 < qhi; q0 += BT) {
      let nq = min(BT, qhi - q0);
      let qrow0 = (wid.z * P.seq_q + q0) * qs + h * hd;
      let ok = r < nq && c < nk && visible(k0 + c, qpos0 + q0 + r, kv_len);
      for (var i = t; i < BT * hd; i += NT) {
        let rr = i / hd;
        let d = i - rr * hd;
        var x = 0.0;
        if (rr < nq) { x = f32(qb[P.q_off + qrow0 + rr * qs + d]); }
        b_a[rr * HDM + d] = x;
      }
      if (t < BT) {
        var ls = 0.0;
        var dd = 0.0;
        if (t < nq) {
          ls = stats[stat_index(b, h, q0 + t)];
          dd = stats[stat_index(b, h, q0 + t) + 1u];
        }
        b_st[t] = ls;
        b_st[BT + t] = dd;
      }
      workgroupBarrier();
      var pr = 0.0;
      if (ok) {
        var s = 0.0;
        for (var d = 0u; d < hd; d++) { s += b_a[r * HDM + d] * b_b[c * HDM + d]; }
        pr = exp(s * P.scale - b_st[r]);
      }
      if (t < BT * BT) { b_p[t] = pr; }
      workgroupBarrier();
      for (var i = t; i < BT * hd; i += NT) {
        let rr = i / hd;
        let d = i - rr * hd;
        var x = 0.0;
        if (rr < nq) { x = f32(dob[P.do_off + qrow0 + rr * qs + d]); }
        b_a[rr * HDM + d] = x;
      }
      workgroupBarrier();
      var ds = 0.0;
      if (ok) {
        var dp = 0.0;
        for (var d = 0u; d < hd; d++) { dp += b_a[r * HDM + d] * b_c[c * HDM + d]; }
        ds = pr * (dp - b_st[BT + r]);
      }
      if (t < BT * BT) { b_ds[t] = ds; }
      for (var j = 0u; j < BACC; j++) {
        let d = lane + LB * j;
        if (d < hd) {
          var a = dv[j];
          for (var rr = 0u; rr < BT; rr++) { a += b_p[rr * BT + my_k] * b_a[rr * HDM + d]; }
          dv[j] = a;
        }
      }
      workgroupBarrier();
      for (var i = t; i < BT * hd; i += NT) {
        let rr = i / hd;
        let d = i - rr * hd;
        var x = 0.0;
        if (rr < nq) { x = f32(qb[P.q_off + qrow0 + rr * qs + d]); }
        b_a[rr * HDM + d] = x;
      }
      workgroupBarrier();
      for (var j = 0u; j < BACC; j++) {
        let d = lane + LB * j;
        if (d < hd) {
          var a = dk[j];
          for (var rr = 0u; rr < BT; rr++) { a += b_ds[rr * BT + my_k] * b_a[rr * HDM + d]; }
          dk[j] = a;
        }
      }
      workgroupBarrier();
    }
  }
  if (my_k < nk) {
    for (var j = 0u; j < BACC; j++) {
      let d = lane + LB * j;
      if (d < hd) {
        g0[P.dk_off + krow0 + my_k * kvs + d] = dk[j] * P.scale;
        g1[P.dv_off + krow0 + my_k * kvs + d] = dv[j];
      }
    }
  }
}

// ---------------------------------------------------------------- one invocation per row (CPU adapters)
// Each invocation owns one query row (forward, dq) or one key row (dk/dv) of one head and walks the keys
// (queries) its workgroup's block can see serially, skipping the ones it does not see itself; the forward
// and the logsumexp pass use tiles of RK keys with one online-softmax rescale per tile as above. No
// workgroup memory, no barriers. A workgroup is RW (= a CPU SIMD width) neighbouring rows of one head of
// one batch row: the loops are uniform across it and its lanes read the same key (query) rows. Storage
// loads are what costs on lavapipe (each is a loop over the lanes), so every row vector that is used more
// than once is loaded into a private array first. Scores are (scale·q)·k in every entry, so the backward
// entries recompute exactly the probabilities behind the logsumexp.
const RW: u32 = 8u;
const RK: u32 = 8u;

// grid: (ceil(Sq / RW), H, nb); flags bit 0: write the logsumexp into stats.
@compute @workgroup_size(RW)
fn attn_fwd_tpr(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let hd = P.head_dim;
  let h = wid.y;
  let zb = wid.z;
  let b = P.batch0 + zb;
  let q0 = wid.x * RW;
  let nq = min(RW, P.seq_q - q0);
  let i = q0 + lid;
  let live = lid < nq;
  let kv_len = min(rowinfo[2u * b], P.seq_kv);
  let p_lo = rowinfo[2u * b + 1u] + q0;
  let pos = p_lo + lid;
  let kr = key_range(p_lo, p_lo + nq - 1u, kv_len); // the keys any row of the block sees
  let qs = P.heads * hd;
  let kvs = P.kv_heads * hd;
  let qrow = (zb * P.seq_q + min(i, P.seq_q - 1u)) * qs + h * hd;
  let kvh = h / P.group;
  let kbase = P.k_off + zb * P.seq_kv * kvs + kvh * hd;
  let vbase = P.v_off + zb * P.seq_kv * kvs + kvh * hd;

  var qv: array<f32, HDM>;
  var acc: array<f32, HDM>;
  for (var d = 0u; d < hd; d++) {
    qv[d] = f32(qb[P.q_off + qrow + d]) * P.scale;
    acc[d] = 0.0;
  }
  var m = MASKED;
  var l = 0.0;
  for (var k0 = kr.x; k0 < kr.y; k0 += RK) {
    let nk = min(RK, kr.y - k0);
    var s: array<f32, RK>;
    var mt = m;
    for (var c = 0u; c < nk; c++) {
      let kj = kbase + (k0 + c) * kvs;
      var dot = 0.0;
      for (var d = 0u; d < hd; d++) { dot += qv[d] * f32(kb[kj + d]); }
      var sc = MASKED;
      if (visible(k0 + c, pos, kv_len)) { sc = dot; }
      s[c] = sc;
      mt = max(mt, sc);
    }
    // both finite: exp(MASKED - real) = 0, exp(MASKED - MASKED) = 1 (acc and l are still 0 then)
    let alpha = exp(m - mt);
    m = mt;
    var sum = 0.0;
    for (var d = 0u; d < hd; d++) { acc[d] *= alpha; }
    for (var c = 0u; c < nk; c++) {
      var pr = 0.0;
      if (s[c] > MASKED_TEST) { pr = exp(s[c] - mt); }
      sum += pr;
      let vj = vbase + (k0 + c) * kvs;
      for (var d = 0u; d < hd; d++) { acc[d] += pr * f32(vb[vj + d]); }
    }
    l = l * alpha + sum;
  }
  if (!live) { return; }
  var inv = 0.0; // a query that sees no key gets zeros, never NaN
  if (l > 0.0) { inv = 1.0 / l; }
  for (var d = 0u; d < hd; d++) { ob[P.o_off + qrow + d] = TO(acc[d] * inv); }
  if ((P.flags & 1u) != 0u) {
    var v = 0.0;
    if (l > 0.0) { v = m + log(l); }
    stats[stat_index(b, h, i)] = v;
  }
}

// Backward, one invocation per query row: logsumexp and D = Σ_j P_ij·dP_ij (= dOut_i·out_i) in one
// online pass over the keys, both into stats (for attn_bwd_kv_tpr), then dq_i = scale·Σ_j dS_ij k_j into
// g0 (at offset o_off). grid: (ceil(Sq / RW), H, nb).
@compute @workgroup_size(RW)
fn attn_bwd_q_tpr(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let hd = P.head_dim;
  let h = wid.y;
  let zb = wid.z;
  let b = P.batch0 + zb;
  let q0 = wid.x * RW;
  let nq = min(RW, P.seq_q - q0);
  let i = q0 + lid;
  let live = lid < nq;
  let kv_len = min(rowinfo[2u * b], P.seq_kv);
  let p_lo = rowinfo[2u * b + 1u] + q0;
  let pos = p_lo + lid;
  let kr = key_range(p_lo, p_lo + nq - 1u, kv_len);
  let qs = P.heads * hd;
  let kvs = P.kv_heads * hd;
  let qrow = (zb * P.seq_q + min(i, P.seq_q - 1u)) * qs + h * hd;
  let kvh = h / P.group;
  let kbase = P.k_off + zb * P.seq_kv * kvs + kvh * hd;
  let vbase = P.v_off + zb * P.seq_kv * kvs + kvh * hd;

  var qv: array<f32, HDM>;
  var dov: array<f32, HDM>;
  var dq: array<f32, HDM>;
  for (var d = 0u; d < hd; d++) {
    qv[d] = f32(qb[P.q_off + qrow + d]) * P.scale;
    dov[d] = f32(dob[P.do_off + qrow + d]);
    dq[d] = 0.0;
  }
  var m = MASKED;
  var l = 0.0;
  var t = 0.0; // Σ_j exp(s_j − m)·dP_j
  for (var k0 = kr.x; k0 < kr.y; k0 += RK) {
    let nk = min(RK, kr.y - k0);
    var s: array<f32, RK>;
    var dp: array<f32, RK>;
    var mt = m;
    for (var c = 0u; c < nk; c++) {
      let kj = kbase + (k0 + c) * kvs;
      let vj = vbase + (k0 + c) * kvs;
      var dot = 0.0;
      var dv = 0.0;
      for (var d = 0u; d < hd; d++) {
        dot += qv[d] * f32(kb[kj + d]);
        dv += dov[d] * f32(vb[vj + d]);
      }
      var sc = MASKED;
      if (visible(k0 + c, pos, kv_len)) { sc = dot; }
      s[c] = sc;
      dp[c] = dv;
      mt = max(mt, sc);
    }
    let alpha = exp(m - mt);
    m = mt;
    var sum = 0.0;
    var tsum = 0.0;
    for (var c = 0u; c < nk; c++) {
      var pr = 0.0;
      if (s[c] > MASKED_TEST) { pr = exp(s[c] - mt); }
      sum += pr;
      tsum += pr * dp[c];
    }
    l = l * alpha + sum;
    t = t * alpha + tsum;
  }
  var lse = 0.0;
  var dd = 0.0;
  if (l > 0.0) {
    lse = m + log(l);
    dd = t / l;
  }
  var kr_: array<f32, HDM>;
  for (var j = kr.x; j < kr.y; j++) {
    let kj = kbase + j * kvs;
    let vj = vbase + j * kvs;
    var dot = 0.0;
    var dv = 0.0;
    for (var d = 0u; d < hd; d++) {
      let kd = f32(kb[kj + d]);
      kr_[d] = kd;
      dot += qv[d] * kd;
      dv += dov[d] * f32(vb[vj + d]);
    }
    var ds = 0.0;
    if (visible(j, pos, kv_len)) { ds = exp(dot - lse) * (dv - dd); }
    for (var d = 0u; d < hd; d++) { dq[d] += ds * kr_[d]; }
  }
  if (!live) { return; }
  let si = stat_index(b, h, i);
  stats[si] = lse;
  stats[si + 1u] = dd;
  for (var d = 0u; d < hd; d++) { g0[P.o_off + qrow + d] = dq[d] * P.scale; }
}

// Backward, one invocation per key row j of kv head g: loops over the query heads sharing g and the
// queries that see some key of the block: dv_j = Σ_i P_ij dOut_i, dk_j = Σ_i dS_ij (scale·q_i), with the
// logsumexp and D from stats (written by attn_bwd_q_tpr). dk into g0, dv into g1; keys that no query
// sees (padding) get zeros. grid: (ceil(Skv / RW), KV, nb).
@compute @workgroup_size(RW)
fn attn_bwd_kv_tpr(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let hd = P.head_dim;
  let g = wid.y;
  let zb = wid.z;
  let b = P.batch0 + zb;
  let k0 = wid.x * RW;
  let nk = min(RW, P.seq_kv - k0);
  let j = k0 + lid;
  let live = lid < nk;
  let kv_len = min(rowinfo[2u * b], P.seq_kv);
  let qpos0 = rowinfo[2u * b + 1u];
  let qs = P.heads * hd;
  let kvs = P.kv_heads * hd;
  let krow = (zb * P.seq_kv + min(j, P.seq_kv - 1u)) * kvs + g * hd;
  // query rows [qlo, qhi) that can see some key of the block (as in attn_bwd_dkdv)
  var qlo = 0u;
  var qhi = 0u;
  if (k0 < kv_len) {
    let k_last = min(k0 + nk, kv_len) - 1u;
    if (k0 > qpos0) { qlo = k0 - qpos0; }
    qhi = P.seq_q;
    if (P.window > 0u) {
      if (k_last + P.window <= qpos0) { qhi = 0u; } else { qhi = min(qhi, k_last + P.window - qpos0); }
    }
  }

  var kv: array<f32, HDM>;
  var vv: array<f32, HDM>;
  var dk: array<f32, HDM>;
  var dv: array<f32, HDM>;
  for (var d = 0u; d < hd; d++) {
    kv[d] = f32(kb[P.k_off + krow + d]);
    vv[d] = f32(vb[P.v_off + krow + d]);
    dk[d] = 0.0;
    dv[d] = 0.0;
  }
  for (var hi = 0u; hi < P.group; hi++) {
    let h = g * P.group + hi;
    for (var i = qlo; i < qhi; i++) {
      let qrow = (zb * P.seq_q + i) * qs + h * hd;
      let qq = P.q_off + qrow;
      let qd = P.do_off + qrow;
      var qr: array<f32, HDM>;
      var dr: array<f32, HDM>;
      var dot = 0.0;
      var dpv = 0.0;
      for (var d = 0u; d < hd; d++) {
        qr[d] = f32(qb[qq + d]) * P.scale;
        dr[d] = f32(dob[qd + d]);
        dot += qr[d] * kv[d];
        dpv += dr[d] * vv[d];
      }
      let si = stat_index(b, h, i);
      var pr = 0.0;
      var ds = 0.0;
      if (visible(j, qpos0 + i, kv_len)) {
        pr = exp(dot - stats[si]);
        ds = pr * (dpv - stats[si + 1u]);
      }
      for (var d = 0u; d < hd; d++) {
        dv[d] += pr * dr[d];
        dk[d] += ds * qr[d];
      }
    }
  }
  if (!live) { return; }
  for (var d = 0u; d < hd; d++) {
    g0[P.dk_off + krow + d] = dk[d];
    g1[P.dv_off + krow + d] = dv[d];
  }
}

// ---------------------------------------------------------------- texel forward (CPU adapters)
// attn_fwd_tpr with k and v read from textures (the host packs the run's k and v rows first) and the head
// size a pipeline constant (TEXEL_HD4 = head_dim / 4): on lavapipe a texel fetch is one vectorised gather
// for the SIMD group where a storage read is a per-lane loop, and loops of constant length over the head's
// texels and the FK keys of a tile unroll, so q, the accumulator and the scores stay in registers instead of
// indexed private memory. Same arithmetic in the same order as attn_fwd_tpr (keys past a tile's end are
// skipped, not masked). grid: (ceil(Sq / RW), H, nb); flags bit 0: write the logsumexp into stats.
override TEXEL_HD4: u32 = 8u;
const HDM4: u32 = HDM / 4u; // the variant's largest head_dim, in texels

@compute @workgroup_size(RW)
fn attn_fwd_texel(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.y;
  let zb = wid.z;
  let b = P.batch0 + zb;
  let q0 = wid.x * RW;
  let nq = min(RW, P.seq_q - q0);
  let i = q0 + lid;
  let live = lid < nq;
  let kv_len = min(rowinfo[2u * b], P.seq_kv);
  let p_lo = rowinfo[2u * b + 1u] + q0;
  let pos = p_lo + lid;
  let kr = key_range(p_lo, p_lo + nq - 1u, kv_len); // the keys any row of the block sees
  let qs = P.heads * P.head_dim;
  let qrow = (zb * P.seq_q + min(i, P.seq_q - 1u)) * qs + h * P.head_dim;
  let col0 = i32((h / P.group) * TEXEL_HD4); // first texel of the kv head
  let row0 = zb * P.seq_kv;

  var qv: array<vec4<f32>, HDM4>;
  var acc: array<vec4<f32>, HDM4>;
  for (var d4 = 0u; d4 < TEXEL_HD4; d4++) {
    let at = P.q_off + qrow + 4u * d4;
    qv[d4] = vec4<f32>(f32(qb[at]), f32(qb[at + 1u]), f32(qb[at + 2u]), f32(qb[at + 3u])) * P.scale;
    acc[d4] = vec4<f32>(0.0);
  }
  var m = MASKED;
  var l = 0.0;
  for (var k0 = kr.x; k0 < kr.y; k0 += FK) {
    let nk = min(FK, kr.y - k0);
    var s: array<f32, FK>;
    var mt = m;
    for (var c = 0u; c < FK; c++) {
      if (c < nk) {
        let r = i32(row0 + k0 + c);
        var dot = 0.0;
        for (var d4 = 0u; d4 < TEXEL_HD4; d4++) {
          let kv = textureLoad(kt, vec2<i32>(col0 + i32(d4), r));
          let qq = qv[d4];
          dot += qq.x * kv.x;
          dot += qq.y * kv.y;
          dot += qq.z * kv.z;
          dot += qq.w * kv.w;
        }
        var sc = MASKED;
        if (visible(k0 + c, pos, kv_len)) { sc = dot; }
        s[c] = sc;
        mt = max(mt, sc);
      }
    }
    let alpha = exp(m - mt);
    m = mt;
    var sum = 0.0;
    for (var d4 = 0u; d4 < TEXEL_HD4; d4++) { acc[d4] *= alpha; }
    for (var c = 0u; c < FK; c++) {
      if (c < nk) {
        var pr = 0.0;
        if (s[c] > MASKED_TEST) { pr = exp(s[c] - mt); }
        sum += pr;
        let r = i32(row0 + k0 + c);
        for (var d4 = 0u; d4 < TEXEL_HD4; d4++) { acc[d4] += pr * textureLoad(vt, vec2<i32>(col0 + i32(d4), r)); }
      }
    }
    l = l * alpha + sum;
  }
  if (!live) { return; }
  var inv = 0.0; // a query that sees no key gets zeros, never NaN
  if (l > 0.0) { inv = 1.0 / l; }
  for (var d4 = 0u; d4 < TEXEL_HD4; d4++) {
    let o = acc[d4] * inv;
    let at = P.o_off + qrow + 4u * d4;
    ob[at] = TO(o.x);
    ob[at + 1u] = TO(o.y);
    ob[at + 2u] = TO(o.z);
    ob[at + 3u] = TO(o.w);
  }
  if ((P.flags & 1u) != 0u) {
    var v = 0.0;
    if (l > 0.0) { v = m + log(l); }
    stats[stat_index(b, h, i)] = v;
  }
}
