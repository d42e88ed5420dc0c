// Covariance accumulation C += Xᵀ X (C f32 [d, d], X [n, d] in TX = f16 or f32), f32 accumulation.
// The host walks C's row chunks and X's row chunks: one `accumulate` dispatch adds the contribution of
// `n` rows of X (starting at element `x_off` of one X chunk) to `rows` rows of C (global rows
// row0..row0+rows, starting at element `c_off` of one C chunk), all d columns.
// Tiles: 64×64 outputs per workgroup of 16×16 threads, 4×4 outputs per thread, 16 rows of X per step
// staged in workgroup memory (two 16×64 tiles, 8 KiB). Grid: x = column tiles, y = row tiles.
// With `upper` = 1, tiles lying strictly below the diagonal are skipped; the host then copies the
// upper triangle onto the lower one with `mirror_*` (C stays exactly symmetric).

const TILE: u32 = 64u;
const BK: u32 = 16u;

struct Params {
  n: u32,
  d: u32,
  x_off: u32,
  c_off: u32,
  row0: u32,
  rows: u32,
  upper: u32,
  _p0: u32,
}

@group(0) @binding(0) var<uniform> pr: Params;
@group(0) @binding(1) var<storage, read> x: array<TX>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;

var<workgroup> ta: array<f32, 1024>; // [BK][TILE]: X[k, row block]
var<workgroup> tb: array<f32, 1024>; // [BK][TILE]: X[k, column block]

@compute @workgroup_size(16, 16)
fn accumulate(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
  let lrow0 = wid.y * TILE; // first row of the tile, relative to row0
  let col0 = wid.x * TILE;
  let grow0 = pr.row0 + lrow0; // first global row (= column index of X for the `ta` tile)
  // strictly-lower tile: every column < every row. Uniform per workgroup, so the early return is safe.
  if (pr.upper == 1u && col0 + TILE <= grow0) { return; }
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
        let base = pr.x_off + k * pr.d;
        if (grow0 + cc < pr.d) { va = f32(x[base + grow0 + cc]); }
        if (col0 + cc < pr.d) { vb = f32(x[base + col0 + cc]); }
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
        for (var q = 0u; q < 4u; q++) {
          acc[p][q] = fma(av[p], bv[q], acc[p][q]);
        }
      }
    }
    workgroupBarrier();
  }
  for (var p = 0u; p < 4u; p++) {
    let lr = lrow0 + lid.y + 16u * p;
    if (lr >= pr.rows) { continue; }
    for (var q = 0u; q < 4u; q++) {
      let col = col0 + lid.x + 16u * q;
      if (col >= pr.d) { continue; }
      let i = pr.c_off + lr * pr.d + col;
      c[i] = c[i] + acc[p][q];
    }
  }
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
