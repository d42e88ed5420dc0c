// Rank-one update in place: W[r, c] += alpha · a[r] · b[c], f32 math (one fma), one rounding when
// storing W. Aliases set by the host: TW (storage of W: f16 or f32). a and b are f32.
// The host maps ROME's (u, v) onto (a, b) by W's layout (lib/ops/outer.ts) and walks W's row chunks:
// one dispatch covers `rows` whole rows of one chunk, starting at global row `row0` (index into a)
// and at element `w_off` of that chunk. Grid: x over columns (one thread per column, 256 per
// workgroup), y over blocks of ROWS rows (each thread walks its column down those rows, so b[c] is
// read once and consecutive threads touch consecutive elements).

const ROWS: u32 = 16u;

struct Params {
  cols: u32,
  rows: u32,
  row0: u32,
  w_off: u32,
  alpha: f32,
  _p0: u32,
  _p1: u32,
  _p2: u32,
}

@group(0) @binding(0) var<uniform> pr: Params;
@group(0) @binding(1) var<storage, read_write> w: array<TW>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

@compute @workgroup_size(256)
fn rank_one(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wid.x * 256u + lid.x;
  if (c >= pr.cols) { return; }
  let bc = b[c];
  let r0 = wid.y * ROWS;
  let rend = min(r0 + ROWS, pr.rows);
  for (var r = r0; r < rend; r++) {
    let i = pr.w_off + r * pr.cols + c;
    w[i] = TW(fma(pr.alpha * a[pr.row0 + r], bc, f32(w[i])));
  }
}

// Low-rank update in place (MEMIT / AlphaEdit): W[r, c] += alpha · Σ_k A[k, row0 + r] · B[k, c], f32
// accumulation over the rank k = 0..rank−1, one rounding when storing W. A is [rank, a_len] and B is
// [rank, cols] (row-major, f32, unchunked); same grid and chunk walk as rank_one (`a_len` in _p0,
// `rank` in _p1).
@compute @workgroup_size(256)
fn low_rank(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let c = wid.x * 256u + lid.x;
  if (c >= pr.cols) { return; }
  let r0 = wid.y * ROWS;
  let rend = min(r0 + ROWS, pr.rows);
  let a_len = pr._p0;
  for (var r = r0; r < rend; r++) {
    var acc = 0.0;
    for (var k = 0u; k < pr._p1; k++) {
      acc = fma(a[k * a_len + pr.row0 + r], b[k * pr.cols + c], acc);
    }
    let i = pr.w_off + r * pr.cols + c;
    w[i] = TW(fma(pr.alpha, acc, f32(w[i])));
  }
}
