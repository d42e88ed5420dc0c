// Matrix–vector products over a row-major matrix W (rows × cols, row stride ldw, element offset w_off):
//   gemv_rows:  y[r] = alpha · Σ_c W[r, c] · x[c]   (+ y[r] when ACCUM)   — reduction along W's rows
//   gemv_cols:  y[c] = alpha · Σ_r W[r, c] · x[r]   (+ y[c] when ACCUM)   — a walk down W's columns
// Aliases set by the host: TW (W), TX (x), TY (y); math is f32. Offsets are in elements so the host can
// run one row chunk of a large W at a time (rows: a slice of y; cols: a K-slice accumulated into y).
//
// Both use 64 threads per workgroup and vec4 reads (consecutive threads read consecutive 16-byte quads);
// dispatch (groups, 1, 1) with groups = ceil(rows / 4) for gemv_rows and ceil(cols / 256) for gemv_cols,
// as a 2-D grid (x · y) above 65535 groups. Rows past `rows` (gemv_rows) and columns past `cols`
// (gemv_cols) are read without checks (WebGPU keeps out-of-bounds reads in bounds) and never stored.

struct Params {
  rows: u32,
  cols: u32,
  w_off: u32,
  ldw: u32,
  x_off: u32,
  y_off: u32,
  alpha: f32,
  _p: u32,
}

// vec4 reads of W (w_off, ldw % 4 == 0) and of x (x_off % 4 == 0)
override VEC_W: bool = false;
override VEC_X: bool = false;
override ACCUM: bool = false;
// thread access pattern: false = consecutive threads read consecutive quads (coalesced, for GPUs); true =
// each thread walks a contiguous range (for CPU adapters, which run a workgroup's 8-lane SIMD groups one
// after another: there contiguous per-lane streams are ~3x faster than the interleaved pattern)
override CONTIG: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> W: array<TW>;
@group(0) @binding(2) var<storage, read> W4: array<vec4<TW>>;
@group(0) @binding(3) var<storage, read> X: array<TX>;
@group(0) @binding(4) var<storage, read> X4: array<vec4<TX>>;
@group(0) @binding(5) var<storage, read_write> Y: array<TY>;

fn w_quad(q: u32) -> vec4<f32> {
  if (VEC_W) {
    return vec4<f32>(W4[q / 4u]);
  }
  return vec4<f32>(f32(W[q]), f32(W[q + 1u]), f32(W[q + 2u]), f32(W[q + 3u]));
}

fn x_quad(q: u32) -> vec4<f32> {
  if (VEC_X) {
    return vec4<f32>(X4[q / 4u]);
  }
  return vec4<f32>(f32(X[q]), f32(X[q + 1u]), f32(X[q + 2u]), f32(X[q + 3u]));
}

fn put(i: u32, v: f32) {
  var y = p.alpha * v;
  if (ACCUM) {
    y += f32(Y[p.y_off + i]);
  }
  Y[p.y_off + i] = TY(y);
}

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
  return wid.y * nwg.x + wid.x;
}

var<workgroup> part: array<vec4<f32>, 64>;

// 4 rows per workgroup; thread li takes 1/64 of the column quads of all 4 rows (one x read per 4 W
// reads), then thread r < 4 adds the 64 partial sums of row r.
@compute @workgroup_size(64)
fn gemv_rows(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let row0 = group_index(wid, nwg) * 4u;
  let ld = p.ldw;
  let w0 = p.w_off + row0 * ld;
  let quads = p.cols / 4u;
  var s0 = vec4<f32>(0.0);
  var s1 = vec4<f32>(0.0);
  var s2 = vec4<f32>(0.0);
  var s3 = vec4<f32>(0.0);
  // CONTIG: thread li walks the contiguous quads [li·per, (li+1)·per); else quads li, li + 64, …
  var q = li;
  var qe = quads;
  var step = 64u;
  if (CONTIG) {
    let per = (quads + 63u) / 64u;
    q = li * per;
    qe = min(quads, q + per);
    step = 1u;
  }
  for (; q < qe; q += step) {
    let xv = x_quad(p.x_off + q * 4u);
    let at = w0 + q * 4u;
    s0 += w_quad(at) * xv;
    s1 += w_quad(at + ld) * xv;
    s2 += w_quad(at + 2u * ld) * xv;
    s3 += w_quad(at + 3u * ld) * xv;
  }
  var tot = vec4<f32>(
    (s0.x + s0.y) + (s0.z + s0.w),
    (s1.x + s1.y) + (s1.z + s1.w),
    (s2.x + s2.y) + (s2.z + s2.w),
    (s3.x + s3.y) + (s3.z + s3.w),
  );
  let c = quads * 4u + li; // the last cols % 4 columns, one per thread
  if (c < p.cols) {
    let xv = f32(X[p.x_off + c]);
    let at = w0 + c;
    tot += vec4<f32>(f32(W[at]), f32(W[at + ld]), f32(W[at + 2u * ld]), f32(W[at + 3u * ld])) * xv;
  }
  part[li] = tot;
  workgroupBarrier();
  if (li < 4u && row0 + li < p.rows) {
    var s = 0.0;
    for (var i = 0u; i < 64u; i++) {
      s += part[i][li];
    }
    put(row0 + li, s);
  }
}

// 256 columns per workgroup: thread (j = li % 16, slice = li / 16) owns 4 column quads and a quarter of
// the row quads; the 4 slices are then added in workgroup memory.
@compute @workgroup_size(64)
fn gemv_cols(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let j = li % 16u;
  let slice = li / 16u;
  // this thread's column quads: j, j + 16, j + 32, j + 48 (CONTIG: 4j .. 4j + 3), as element offsets
  var col0 = group_index(wid, nwg) * 256u + j * 4u;
  var cs = 64u;
  if (CONTIG) {
    col0 = group_index(wid, nwg) * 256u + j * 16u;
    cs = 4u;
  }
  let ld = p.ldw;
  let base = p.w_off + col0;
  var a0 = vec4<f32>(0.0);
  var a1 = vec4<f32>(0.0);
  var a2 = vec4<f32>(0.0);
  var a3 = vec4<f32>(0.0);
  // row quads slice, slice + 4, … (CONTIG: a contiguous quarter of the row quads)
  let rq = p.rows / 4u;
  var r = slice;
  var re = rq;
  var step = 4u;
  if (CONTIG) {
    let per = (rq + 3u) / 4u;
    r = slice * per;
    re = min(rq, r + per);
    step = 1u;
  }
  for (; r < re; r += step) {
    let xv = x_quad(p.x_off + r * 4u);
    for (var i = 0u; i < 4u; i++) {
      let q = base + (r * 4u + i) * ld;
      let xi = xv[i];
      a0 += w_quad(q) * xi;
      a1 += w_quad(q + cs) * xi;
      a2 += w_quad(q + 2u * cs) * xi;
      a3 += w_quad(q + 3u * cs) * xi;
    }
  }
  // the last rows % 4 rows, one per slice
  let rt = rq * 4u + slice;
  if (rt < p.rows) {
    let q = base + rt * ld;
    let xi = f32(X[p.x_off + rt]);
    a0 += w_quad(q) * xi;
    a1 += w_quad(q + cs) * xi;
    a2 += w_quad(q + 2u * cs) * xi;
    a3 += w_quad(q + 3u * cs) * xi;
  }
  for (var t = 0u; t < 4u; t++) {
    var v: vec4<f32>;
    switch t {
      case 0u: { v = a0; }
      case 1u: { v = a1; }
      case 2u: { v = a2; }
      default: { v = a3; }
    }
    part[li] = v;
    workgroupBarrier();
    if (slice == 0u) {
      let s = (part[li] + part[li + 16u]) + (part[li + 32u] + part[li + 48u]);
      let col = col0 + cs * t;
      for (var e = 0u; e < 4u; e++) {
        if (col + e < p.cols) {
          put(col + e, s[e]);
        }
      }
    }
    workgroupBarrier();
  }
}
