// Gram updates C ± XᵀX (C f32, X in TX = f16 or f32, f32 accumulation): covariance accumulation
// (lib/ops/covariance.ts) and the symmetric rank-k trailing update of the Cholesky factorisation
// (lib/ops/cholesky.ts, with X = the transposed panel and sign = −1).
//
// One dispatch updates a block of C: rows g = grow0 .. grow0+rows (global indices) stored from element
// `c_off` of one C binding with row stride `ldc`, and columns gc = c0 .. c0+cols (stored at column gc):
//   C[g, gc] += sign · Σ_{k < n} X[k, g − xshift] · X[k, gc − xshift]
// where X row k starts at element x_off + k·ldx and has `xcols` valid columns. `mode` 0 updates every
// element; 1 skips tiles lying strictly below the diagonal (gc < g everywhere; the host mirrors the
// upper triangle afterwards); 2 skips tiles strictly above it and stores only gc ≤ g.
//
// Two kernels: `gram_tiled` stages 16 rows of X at a time in workgroup memory (64×64 C tile, 16×16
// threads, 4×4 outputs each: the usual GPU design); `gram_direct` has each thread own a 16×16 block
// of C (sixteen mat4x4 accumulators, 128×128 per 8×8 workgroup) and read X straight from storage,
// with no barriers — much faster on CPU adapters (lavapipe), where caches do workgroup memory's job.

struct Gram {
  n: u32,
  ldx: u32,
  x_off: u32,
  xshift: u32,
  grow0: u32,
  rows: u32,
  c0: u32,
  cols: u32,
  ldc: u32,
  c_off: u32,
  mode: u32,
  xcols: u32,
  sign: f32,
  _p0: u32,
  _p1: u32,
  _p2: u32,
}

@group(0) @binding(0) var<uniform> pr: Gram;
@group(0) @binding(1) var<storage, read> x: array<TX>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;

// tile/block skipping: rows [g0, g0+h), columns [j0, j0+w)
fn skip_block(g0: u32, h: u32, j0: u32, w: u32) -> bool {
  if (pr.mode == 1u) { return j0 + w <= g0; } // strictly below the diagonal
  if (pr.mode == 2u) { return j0 >= g0 + h; } // strictly above
  return false;
}

fn store(lr: u32, lc: u32, v: f32) {
  if (lr >= pr.rows || lc >= pr.cols) { return; }
  let g = pr.grow0 + lr;
  let gc = pr.c0 + lc;
  if (pr.mode == 2u && gc > g) { return; }
  let i = pr.c_off + lr * pr.ldc + gc;
  c[i] = fma(pr.sign, v, c[i]);
}

// ---- tiled (workgroup memory) ----------------------------------------------------------------------
const TILE: u32 = 64u;
const BK: u32 = 16u;
var<workgroup> ta: array<f32, 1024>; // [BK][TILE]: X[k, row block]
var<workgroup> tb: array<f32, 1024>; // [BK][TILE]: X[k, column block]

@compute @workgroup_size(16, 16)
fn gram_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
  let lr0 = wid.y * TILE;
  let lc0 = wid.x * TILE;
  if (skip_block(pr.grow0 + lr0, TILE, pr.c0 + lc0, TILE)) { return; } // uniform per workgroup
  let xa = pr.grow0 + lr0 - pr.xshift; // X column of the tile's first row
  let xb = pr.c0 + lc0 - pr.xshift; // X column of the tile's first column
  var acc: array<array<f32, 4>, 4>;
  for (var k0 = 0u; k0 < pr.n; k0 += BK) {
    for (var q = 0u; q < 4u; q++) {
      let e = li + q * 256u;
      let kk = e / TILE;
      let cc = e % TILE;
      let k = k0 + kk;
      var va = 0.0;
      var vb = 0.0;
      if (k < pr.n) {
        let base = pr.x_off + k * pr.ldx;
        if (xa + cc < pr.xcols) { va = f32(x[base + xa + cc]); }
        if (xb + cc < pr.xcols) { vb = f32(x[base + xb + cc]); }
      }
      ta[e] = va;
      tb[e] = vb;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      var av: array<f32, 4>;
      var bv: array<f32, 4>;
      for (var p = 0u; p < 4u; p++) {
        av[p] = ta[kk * TILE + lid.y + 16u * p];
        bv[p] = tb[kk * TILE + lid.x + 16u * p];
      }
      for (var p = 0u; p < 4u; p++) {
        for (var q = 0u; q < 4u; q++) { acc[p][q] = fma(av[p], bv[q], acc[p][q]); }
      }
    }
    workgroupBarrier();
  }
  for (var p = 0u; p < 4u; p++) {
    for (var q = 0u; q < 4u; q++) { store(lr0 + lid.y + 16u * p, lc0 + lid.x + 16u * q, acc[p][q]); }
  }
}

// ---- direct (register-blocked, no workgroup memory) -------------------------------------------------

// X[k .. k+3, col .. col+3] as a mat4x4 whose column kk is X[k+kk, col .. col+3]; rows k ≥ n are zero
// (they would feed every output); columns past xcols are clamped (they only feed outputs not stored).
fn xq(k: u32, col: u32) -> mat4x4<f32> {
  let lim = pr.xcols - 1u;
  let c0 = min(col, lim);
  let c1 = min(col + 1u, lim);
  let c2 = min(col + 2u, lim);
  let c3 = min(col + 3u, lim);
  var m: mat4x4<f32>;
  for (var kk = 0u; kk < 4u; kk++) {
    if (k + kk < pr.n) {
      let b = pr.x_off + (k + kk) * pr.ldx;
      m[kk] = vec4<f32>(f32(x[b + c0]), f32(x[b + c1]), f32(x[b + c2]), f32(x[b + c3]));
    } else {
      m[kk] = vec4<f32>(0.0);
    }
  }
  return m;
}

// acc column i = C[row + i, col .. col+3]; `checked` = false when the whole 16×16 block of this
// thread is inside the dispatch and needs no triangle test (no per-element branches)
fn store_blk(lr: u32, lc: u32, acc: mat4x4<f32>, checked: bool) {
  if (!checked) {
    let s = pr.sign;
    for (var i = 0u; i < 4u; i++) {
      let at = pr.c_off + (lr + i) * pr.ldc + pr.c0 + lc;
      c[at] = fma(s, acc[i].x, c[at]);
      c[at + 1u] = fma(s, acc[i].y, c[at + 1u]);
      c[at + 2u] = fma(s, acc[i].z, c[at + 2u]);
      c[at + 3u] = fma(s, acc[i].w, c[at + 3u]);
    }
    return;
  }
  for (var i = 0u; i < 4u; i++) {
    store(lr + i, lc, acc[i].x);
    store(lr + i, lc + 1u, acc[i].y);
    store(lr + i, lc + 2u, acc[i].z);
    store(lr + i, lc + 3u, acc[i].w);
  }
}

@compute @workgroup_size(8, 8)
fn gram_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let lr = wid.y * 128u + lid.y * 16u; // this thread's 16 rows (dispatch-local)
  let lc = wid.x * 128u + lid.x * 16u; // and 16 columns
  if (lr >= pr.rows || lc >= pr.cols || skip_block(pr.grow0 + lr, 16u, pr.c0 + lc, 16u)) { return; }
  let xa = pr.grow0 + lr - pr.xshift;
  let xb = pr.c0 + lc - pr.xshift;
  var c00 = mat4x4<f32>();
  var c01 = mat4x4<f32>();
  var c02 = mat4x4<f32>();
  var c03 = mat4x4<f32>();
  var c10 = mat4x4<f32>();
  var c11 = mat4x4<f32>();
  var c12 = mat4x4<f32>();
  var c13 = mat4x4<f32>();
  var c20 = mat4x4<f32>();
  var c21 = mat4x4<f32>();
  var c22 = mat4x4<f32>();
  var c23 = mat4x4<f32>();
  var c30 = mat4x4<f32>();
  var c31 = mat4x4<f32>();
  var c32 = mat4x4<f32>();
  var c33 = mat4x4<f32>();
  for (var k = 0u; k < pr.n; k += 4u) {
    // a_i: transposed row blocks (column i = X[k..k+3, xa+4r+i]); b_j: column blocks
    let a0 = transpose(xq(k, xa));
    let a1 = transpose(xq(k, xa + 4u));
    let a2 = transpose(xq(k, xa + 8u));
    let a3 = transpose(xq(k, xa + 12u));
    let b0 = xq(k, xb);
    let b1 = xq(k, xb + 4u);
    let b2 = xq(k, xb + 8u);
    let b3 = xq(k, xb + 12u);
    c00 += b0 * a0;
    c01 += b1 * a0;
    c02 += b2 * a0;
    c03 += b3 * a0;
    c10 += b0 * a1;
    c11 += b1 * a1;
    c12 += b2 * a1;
    c13 += b3 * a1;
    c20 += b0 * a2;
    c21 += b1 * a2;
    c22 += b2 * a2;
    c23 += b3 * a2;
    c30 += b0 * a3;
    c31 += b1 * a3;
    c32 += b2 * a3;
    c33 += b3 * a3;
  }
  let g = pr.grow0 + lr;
  let gc = pr.c0 + lc;
  let ck = lr + 16u > pr.rows || lc + 16u > pr.cols || (pr.mode == 2u && gc + 15u > g);
  store_blk(lr, lc, c00, ck);
  store_blk(lr, lc + 4u, c01, ck);
  store_blk(lr, lc + 8u, c02, ck);
  store_blk(lr, lc + 12u, c03, ck);
  store_blk(lr + 4u, lc, c10, ck);
  store_blk(lr + 4u, lc + 4u, c11, ck);
  store_blk(lr + 4u, lc + 8u, c12, ck);
  store_blk(lr + 4u, lc + 12u, c13, ck);
  store_blk(lr + 8u, lc, c20, ck);
  store_blk(lr + 8u, lc + 4u, c21, ck);
  store_blk(lr + 8u, lc + 8u, c22, ck);
  store_blk(lr + 8u, lc + 12u, c23, ck);
  store_blk(lr + 12u, lc, c30, ck);
  store_blk(lr + 12u, lc + 4u, c31, ck);
  store_blk(lr + 12u, lc + 8u, c32, ck);
  store_blk(lr + 12u, lc + 12u, c33, ck);
}

// ---- mirror: C[i, j] = C[j, i] for j < i (lower := upper), one 16×16 block per workgroup, staged
// through workgroup memory so that reads and writes both walk rows. Destination rows i: global
// dst_row0..dst_row0+dst_rows at element dst_off of the destination chunk; source rows j likewise.
struct Mirror {
  d: u32,
  dst_row0: u32,
  dst_rows: u32,
  dst_off: u32,
  src_row0: u32,
  src_rows: u32,
  src_off: u32,
  _p0: u32,
}

@group(0) @binding(0) var<uniform> mr: Mirror;
@group(0) @binding(1) var<storage, read> msrc: array<f32>;
@group(0) @binding(2) var<storage, read_write> mdst: array<f32>;

var<workgroup> blk: array<f32, 272>; // 16 × 17 (padded)

// source and destination rows in different chunks (bindings 1 and 2)
@compute @workgroup_size(16, 16)
fn mirror_cross(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i0 = mr.dst_row0 + wid.y * 16u; // destination rows
  let j0 = mr.src_row0 + wid.x * 16u; // source rows = destination columns
  if (j0 >= i0 + 16u) { return; } // no element with j < i in this block (uniform)
  // read C[j0 + ly, i0 + lx]
  let j = j0 + lid.y;
  let ir = i0 + lid.x;
  if (j - mr.src_row0 < mr.src_rows && ir < mr.d) {
    blk[lid.y * 17u + lid.x] = msrc[mr.src_off + (j - mr.src_row0) * mr.d + ir];
  }
  workgroupBarrier();
  // write C[i0 + ly, j0 + lx] = C[j0 + lx, i0 + ly]
  let i = i0 + lid.y;
  let jc = j0 + lid.x;
  if (jc < i && i - mr.dst_row0 < mr.dst_rows && jc - mr.src_row0 < mr.src_rows) {
    mdst[mr.dst_off + (i - mr.dst_row0) * mr.d + jc] = blk[lid.x * 17u + lid.y];
  }
}

// source and destination rows in the same chunk (binding 2 only): reads touch the upper triangle,
// writes the lower one, so they never overlap.
@compute @workgroup_size(16, 16)
fn mirror_same(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let i0 = mr.dst_row0 + wid.y * 16u;
  let j0 = mr.src_row0 + wid.x * 16u;
  if (j0 >= i0 + 16u) { return; }
  let j = j0 + lid.y;
  let ir = i0 + lid.x;
  if (j - mr.src_row0 < mr.src_rows && ir < mr.d && j < ir) {
    blk[lid.y * 17u + lid.x] = mdst[mr.src_off + (j - mr.src_row0) * mr.d + ir];
  }
  workgroupBarrier();
  let i = i0 + lid.y;
  let jc = j0 + lid.x;
  if (jc < i && i - mr.dst_row0 < mr.dst_rows && jc - mr.src_row0 < mr.src_rows) {
    mdst[mr.dst_off + (i - mr.dst_row0) * mr.d + jc] = blk[lid.x * 17u + lid.y];
  }
}
