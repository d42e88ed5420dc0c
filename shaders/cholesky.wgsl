// Blocked right-looking Cholesky factorisation C + λI = L Lᵀ (f32) and the triangular solves with L.
// The matrix A (which becomes L in place) is row-chunked: each dispatch touching A covers `rows` whole
// rows starting at global row `r0`, which sit at element `off` of one chunk (bound as `mat`/`lmat`).
// The panel is stored transposed, PT[c, r] at c·d + r (NB rows of stride d), so that the trailing
// update is a Gram update of PT (shaders/covariance.wgsl). For each block column k (width m ≤ NB):
//   gather  PT[c, r] = A[k + r, k + c] for r < d - k, c < m
//   diag    factor the top m×m block (L_kk) in workgroup memory; check every pivot; copy it to D[blk]
//   trsm    rows r ≥ m: x L_kkᵀ = a (forward substitution, one thread per row)
//   scatter A[k + r, k + c] = PT[c, r]
//   (syrk   A[i, j] -= Σ_p PT[p, i - k] · PT[p, j - k] for k + m ≤ j ≤ i: `gram_*` in covariance.wgsl)
// and finally `tril` zeroes the strict upper triangle. The solves use D (the diagonal blocks) and L.
// A non-positive or non-finite pivot sets status = [1, global pivot index, pivot value bits] once
// (the first one; later pivots are garbage after that and the host throws).

const NB: u32 = 64u;

struct Params {
  d: u32,    // matrix size
  k: u32,    // first row/column of the current block column
  m: u32,    // width of the current block column (≤ NB)
  r0: u32,   // first global row of this dispatch (A/L rows)
  rows: u32, // number of A/L rows of this dispatch
  off: u32,  // element offset of row r0 inside the bound chunk
  blk: u32,  // block index k / NB (offset into D)
  nrhs: u32, // right-hand sides (columns of X)
  lambda: f32,
  _p0: u32,
  _p1: u32,
  _p2: u32,
}

@group(0) @binding(0) var<uniform> pr: Params;
@group(0) @binding(1) var<storage, read_write> mat: array<f32>;
@group(0) @binding(2) var<storage, read_write> panel: array<f32>;
@group(0) @binding(3) var<storage, read_write> dblk: array<f32>;
@group(0) @binding(4) var<storage, read_write> status: array<u32>;

// ---- A[i, i] += λ for the rows of this dispatch (one thread per row)
@compute @workgroup_size(256)
fn add_diag(@builtin(global_invocation_id) gid: vec3<u32>) {
  let r = gid.x;
  if (r >= pr.rows) { return; }
  let i = pr.off + r * pr.d + pr.r0 + r;
  mat[i] = mat[i] + pr.lambda;
}

// ---- gather: PT[c, r] = A[k + r, k + c]; threads x = column (64), y = 4 rows per workgroup
@compute @workgroup_size(64, 4)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let lr = wid.y * 4u + lid.y; // row within this dispatch
  let c = lid.x;
  if (lr >= pr.rows || c >= pr.m) { return; }
  let g = pr.r0 + lr; // global row
  panel[c * pr.d + g - pr.k] = mat[pr.off + lr * pr.d + pr.k + c];
}

// ---- scatter: A[k + r, k + c] = PT[c, r]
@compute @workgroup_size(64, 4)
fn scatter(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let lr = wid.y * 4u + lid.y;
  let c = lid.x;
  if (lr >= pr.rows || c >= pr.m) { return; }
  let g = pr.r0 + lr;
  mat[pr.off + lr * pr.d + pr.k + c] = panel[c * pr.d + g - pr.k];
}

// ---- diag: unblocked right-looking Cholesky of the top m×m block (one workgroup); wa is row-major
var<workgroup> wa: array<f32, 4096>; // NB × NB (16 KiB, the WebGPU minimum limit: nothing else shared)

fn record_bad_pivot(j: u32, piv: f32) {
  if (status[0] == 0u) {
    status[0] = 1u;
    status[1] = pr.k + j;
    status[2] = bitcast<u32>(piv);
  }
}

@compute @workgroup_size(256)
fn diag(@builtin(local_invocation_index) li: u32) {
  let m = pr.m;
  for (var e = li; e < NB * NB; e += 256u) {
    let r = e / NB;
    let c = e % NB;
    var v = 0.0;
    if (r < m && c <= r) { v = panel[c * pr.d + r]; }
    wa[e] = v;
  }
  workgroupBarrier();
  for (var j = 0u; j < m; j++) {
    let piv = wa[j * NB + j];
    workgroupBarrier(); // everyone has read the pivot before thread 0 overwrites it
    let ljj = sqrt(piv);
    if (li == 0u) {
      // exponent bits all ones = inf or NaN; tested on the bits so fast-math cannot fold it away
      let nonfinite = (bitcast<u32>(piv) & 0x7f800000u) == 0x7f800000u;
      if (nonfinite || !(piv > 0.0)) { record_bad_pivot(j, piv); }
      wa[j * NB + j] = ljj;
    }
    for (var i = j + 1u + li; i < m; i += 256u) {
      wa[i * NB + j] = wa[i * NB + j] / ljj;
    }
    workgroupBarrier();
    let t = m - j - 1u; // trailing block [j+1, m)²: lower part -= l_j l_jᵀ
    for (var e = li; e < t * t; e += 256u) {
      let i = j + 1u + e / t;
      let l = j + 1u + e % t;
      if (l <= i) {
        wa[i * NB + l] = wa[i * NB + l] - wa[i * NB + j] * wa[l * NB + j];
      }
    }
    workgroupBarrier();
  }
  for (var e = li; e < NB * NB; e += 256u) {
    let r = e % NB; // walk PT rows (c) in the outer index so the stores are contiguous
    let c = e / NB;
    if (r < m && c < m) { panel[c * pr.d + r] = wa[r * NB + c]; }
    dblk[pr.blk * NB * NB + e] = wa[e];
  }
}

// ---- trsm: rows r ≥ m of the panel (global row k + r): x L_kkᵀ = a, i.e. forward substitution per
// row, x_j = (a_j − Σ_{p<j} x_p L[j, p]) / L[j, j]. One thread per row; PT reads/writes are contiguous
// across threads. rows = d − k.
@compute @workgroup_size(64)
fn trsm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  // L_kk row-major, zeros above the diagonal: L[j, p] = PT[p, j]
  for (var e = li; e < NB * NB; e += 64u) {
    let j = e / NB;
    let p = e % NB;
    var v = 0.0;
    if (j < pr.m && p <= j) { v = panel[p * pr.d + j]; }
    wa[e] = v;
  }
  workgroupBarrier();
  let r = pr.m + wid.x * 64u + li;
  if (r >= pr.rows) { return; }
  var xr: array<f32, 64>;
  for (var j = 0u; j < pr.m; j++) {
    var s = panel[j * pr.d + r];
    for (var p = 0u; p < j; p++) { s = s - xr[p] * wa[j * NB + p]; }
    xr[j] = s / wa[j * NB + j];
  }
  for (var j = 0u; j < pr.m; j++) { panel[j * pr.d + r] = xr[j]; }
}

// ---- tril: zero A[i, j] for j > i (rows of this dispatch); x over columns, y = row
@compute @workgroup_size(256)
fn tril(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let j = wid.x * 256u + lid.x;
  let lr = wid.y;
  if (lr >= pr.rows || j >= pr.d || j <= pr.r0 + lr) { return; }
  mat[pr.off + lr * pr.d + j] = 0.0;
}

// ================= triangular solves: X [d, nrhs] (row-major) in place =================
@group(0) @binding(1) var<storage, read> lmat: array<f32>;
@group(0) @binding(3) var<storage, read> dread: array<f32>;
@group(0) @binding(5) var<storage, read_write> xv: array<f32>;

// ---- forward, diagonal block: L_kk y = x[k..k+m]; one thread per right-hand side
@compute @workgroup_size(64)
fn fwd_diag(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= pr.nrhs) { return; }
  let b = pr.blk * NB * NB;
  for (var j = 0u; j < pr.m; j++) {
    var s = xv[(pr.k + j) * pr.nrhs + c];
    for (var p = 0u; p < j; p++) { s = s - dread[b + j * NB + p] * xv[(pr.k + p) * pr.nrhs + c]; }
    xv[(pr.k + j) * pr.nrhs + c] = s / dread[b + j * NB + j];
  }
}

// ---- forward update: x[i] -= L[i, k..k+m] · x[k..k+m] for the rows i of this dispatch (all ≥ k+m).
// 64 rows per workgroup (x), one right-hand side per workgroup (y); L staged 16 columns at a time.
var<workgroup> lt: array<f32, 1024>; // [64 rows][16]

@compute @workgroup_size(64)
fn fwd_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let c = wid.y;
  let lr0 = wid.x * 64u;
  var acc = 0.0;
  for (var p0 = 0u; p0 < pr.m; p0 += 16u) {
    for (var q = 0u; q < 16u; q++) {
      let e = li + q * 64u;
      let rr = e / 16u;
      let pp = e % 16u;
      var v = 0.0;
      if (lr0 + rr < pr.rows && p0 + pp < pr.m) { v = lmat[pr.off + (lr0 + rr) * pr.d + pr.k + p0 + pp]; }
      lt[e] = v;
    }
    workgroupBarrier();
    let pend = min(16u, pr.m - p0);
    for (var pp = 0u; pp < pend; pp++) {
      acc = fma(lt[li * 16u + pp], xv[(pr.k + p0 + pp) * pr.nrhs + c], acc);
    }
    workgroupBarrier();
  }
  let lr = lr0 + li;
  if (lr < pr.rows) {
    let at = (pr.r0 + lr) * pr.nrhs + c;
    xv[at] = xv[at] - acc;
  }
}

// ---- backward, diagonal block: L_kkᵀ x = y[k..k+m]; one thread per right-hand side
@compute @workgroup_size(64)
fn bwd_diag(@builtin(global_invocation_id) gid: vec3<u32>) {
  let c = gid.x;
  if (c >= pr.nrhs) { return; }
  let b = pr.blk * NB * NB;
  for (var jj = 0u; jj < pr.m; jj++) {
    let j = pr.m - 1u - jj;
    var s = xv[(pr.k + j) * pr.nrhs + c];
    for (var p = j + 1u; p < pr.m; p++) { s = s - dread[b + p * NB + j] * xv[(pr.k + p) * pr.nrhs + c]; }
    xv[(pr.k + j) * pr.nrhs + c] = s / dread[b + j * NB + j];
  }
}

// ---- backward update: x[i] -= Σ_p L[p, i] x[p] for i < k and the L rows p of this dispatch
// (p in [r0, r0 + rows) ⊆ [k, k + m)); x = columns i (256 per workgroup), y = right-hand side.
@compute @workgroup_size(256)
fn bwd_update(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = wid.x * 256u + lid.x;
  let c = wid.y;
  if (i >= pr.k) { return; }
  var acc = 0.0;
  for (var lr = 0u; lr < pr.rows; lr++) {
    acc = fma(lmat[pr.off + lr * pr.d + i], xv[(pr.r0 + lr) * pr.nrhs + c], acc);
  }
  xv[i * pr.nrhs + c] = xv[i * pr.nrhs + c] - acc;
}
