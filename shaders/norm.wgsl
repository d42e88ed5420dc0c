// LayerNorm and RMSNorm over the last dim of a [rows, d] activation, forward and input gradient.
// GPUs: one workgroup (256 threads) per row: each thread walks the row with stride 256 and the partial
// sums are combined by a shared-memory tree. CPU adapters: the *_tpr entries below, one invocation per
// row. Math is f32 for every storage type.
// Aliases (set by the host; unused ones are f32): TX x, TW weight, TB bias, TY forward output,
// TG upstream gradient dy, TD input gradient dx.
// Workgroup grid: row = wid.y * nwg.x + wid.x (2-D when rows > 65535).

struct Params {
  rows: u32,
  d: u32,
  x_off: u32,   // element offset of row 0 in x's chunk
  y_off: u32,   // element offset of row 0 in the output's chunk (y or dx)
  g_off: u32,   // element offset of row 0 in dy's chunk
  has_b: u32,   // layer_norm: add the bias
  eps: f32,
  _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<TX>;
@group(0) @binding(2) var<storage, read> w: array<TW>;
@group(0) @binding(3) var<storage, read> b: array<TB>;
@group(0) @binding(4) var<storage, read_write> y: array<TY>;
@group(0) @binding(5) var<storage, read> dy: array<TG>;
@group(0) @binding(6) var<storage, read_write> dx: array<TD>;

const WG: u32 = 256u;
var<workgroup> red: array<vec2<f32>, 256>;

// Sum of v over the workgroup (every thread gets the result).
fn wg_sum(v: vec2<f32>, lid: u32) -> vec2<f32> {
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

// Row mean and 1/sqrt(var + eps) (two passes: mean, then the centred second moment).
fn ln_stats(xb: u32, lid: u32) -> vec2<f32> {
  var s = 0.0;
  for (var j = lid; j < p.d; j += WG) {
    s += f32(x[xb + j]);
  }
  let mean = wg_sum(vec2<f32>(s, 0.0), lid).x / f32(p.d);
  var q = 0.0;
  for (var j = lid; j < p.d; j += WG) {
    let c = f32(x[xb + j]) - mean;
    q += c * c;
  }
  let vr = wg_sum(vec2<f32>(q, 0.0), lid).x / f32(p.d);
  return vec2<f32>(mean, inverseSqrt(vr + p.eps));
}

// 1/sqrt(mean(x²) + eps).
fn rms_inv(xb: u32, lid: u32) -> f32 {
  var q = 0.0;
  for (var j = lid; j < p.d; j += WG) {
    let v = f32(x[xb + j]);
    q += v * v;
  }
  return inverseSqrt(wg_sum(vec2<f32>(q, 0.0), lid).x / f32(p.d) + p.eps);
}

@compute @workgroup_size(256)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_id) l: vec3<u32>) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= p.rows) { return; }
  let xb = p.x_off + row * p.d;
  let yb = p.y_off + row * p.d;
  let st = ln_stats(xb, l.x);
  for (var j = l.x; j < p.d; j += WG) {
    var v = (f32(x[xb + j]) - st.x) * st.y * f32(w[j]);
    if (p.has_b != 0u) {
      v += f32(b[j]);
    }
    y[yb + j] = TY(v);
  }
}

// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·w, x̂ = (x − μ)·rstd.
@compute @workgroup_size(256)
fn layer_norm_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_id) l: vec3<u32>) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= p.rows) { return; }
  let xb = p.x_off + row * p.d;
  let gb = p.g_off + row * p.d;
  let ob = p.y_off + row * p.d;
  let st = ln_stats(xb, l.x);
  var acc = vec2<f32>(0.0, 0.0);
  for (var j = l.x; j < p.d; j += WG) {
    let g = f32(dy[gb + j]) * f32(w[j]);
    acc += vec2<f32>(g, g * (f32(x[xb + j]) - st.x) * st.y);
  }
  let m = wg_sum(acc, l.x) / f32(p.d);
  for (var j = l.x; j < p.d; j += WG) {
    let g = f32(dy[gb + j]) * f32(w[j]);
    let xh = (f32(x[xb + j]) - st.x) * st.y;
    dx[ob + j] = TD(st.y * (g - m.x - xh * m.y));
  }
}

@compute @workgroup_size(256)
fn rms_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) l: vec3<u32>) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= p.rows) { return; }
  let xb = p.x_off + row * p.d;
  let yb = p.y_off + row * p.d;
  let inv = rms_inv(xb, l.x);
  for (var j = l.x; j < p.d; j += WG) {
    y[yb + j] = TY(f32(w[j]) * (f32(x[xb + j]) * inv));
  }
}

// dx = r·g − x·r³·mean(g·x), g = dy·w, r = rsqrt(mean(x²) + eps).
@compute @workgroup_size(256)
fn rms_norm_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) l: vec3<u32>) {
  let row = wid.y * nwg.x + wid.x;
  if (row >= p.rows) { return; }
  let xb = p.x_off + row * p.d;
  let gb = p.g_off + row * p.d;
  let ob = p.y_off + row * p.d;
  let inv = rms_inv(xb, l.x);
  var s = 0.0;
  for (var j = l.x; j < p.d; j += WG) {
    s += f32(dy[gb + j]) * f32(w[j]) * f32(x[xb + j]);
  }
  let c = wg_sum(vec2<f32>(s, 0.0), l.x).x / f32(p.d) * inv * inv * inv;
  for (var j = l.x; j < p.d; j += WG) {
    let g = f32(dy[gb + j]) * f32(w[j]);
    dx[ob + j] = TD(inv * g - f32(x[xb + j]) * c);
  }
}

// ---------------------------------------------------------------- one thread per row (CPU adapters)
// On CPU adapters (lavapipe: SIMD lanes are invocations, every workgroupBarrier switches between
// coroutines) a barrier-free layout is much faster: each invocation owns a whole row and walks it
// serially with 8 (statistics) or 4 (backward sums) interleaved partial sums combined pairwise, so a sum
// of n terms goes through ≤ ⌈n/4⌉ + 6 roundings.
// Workgroup grid: 64 rows per workgroup, row = (wid.y * nwg.x + wid.x) * 64 + lid.

const TPR_WG: u32 = 64u;

fn thread_row(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
  return (wid.y * nwg.x + wid.x) * TPR_WG + lid;
}

fn hsum(a: vec4<f32>, b: vec4<f32>) -> f32 {
  let s = a + b;
  return (s.x + s.y) + (s.z + s.w);
}

// Σ_j x[xb + j] over the row.
fn row_sum_x(xb: u32) -> f32 {
  var a = vec4<f32>(0.0);
  var c = vec4<f32>(0.0);
  var j = 0u;
  for (; j + 8u <= p.d; j += 8u) {
    let o = xb + j;
    a += vec4<f32>(f32(x[o]), f32(x[o + 1u]), f32(x[o + 2u]), f32(x[o + 3u]));
    c += vec4<f32>(f32(x[o + 4u]), f32(x[o + 5u]), f32(x[o + 6u]), f32(x[o + 7u]));
  }
  for (; j < p.d; j++) { a.x += f32(x[xb + j]); }
  return hsum(a, c);
}

// Σ_j (x[xb + j] − m)² over the row.
fn row_sq_dev(xb: u32, m: f32) -> f32 {
  var a = vec4<f32>(0.0);
  var c = vec4<f32>(0.0);
  var j = 0u;
  for (; j + 8u <= p.d; j += 8u) {
    let o = xb + j;
    let u = vec4<f32>(f32(x[o]), f32(x[o + 1u]), f32(x[o + 2u]), f32(x[o + 3u])) - m;
    let v = vec4<f32>(f32(x[o + 4u]), f32(x[o + 5u]), f32(x[o + 6u]), f32(x[o + 7u])) - m;
    a += u * u;
    c += v * v;
  }
  for (; j < p.d; j++) {
    let u = f32(x[xb + j]) - m;
    a.x += u * u;
  }
  return hsum(a, c);
}

fn ln_stats_row(xb: u32) -> vec2<f32> {
  let mean = row_sum_x(xb) / f32(p.d);
  let vr = row_sq_dev(xb, mean) / f32(p.d);
  return vec2<f32>(mean, inverseSqrt(vr + p.eps));
}

@compute @workgroup_size(64)
fn layer_norm_tpr(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
  let row = thread_row(wid, nwg, lid);
  if (row >= p.rows) { return; }
  let xb = p.x_off + row * p.d;
  let yb = p.y_off + row * p.d;
  let st = ln_stats_row(xb);
  for (var j = 0u; j < p.d; j++) {
    var v = (f32(x[xb + j]) - st.x) * st.y * f32(w[j]);
    if (p.has_b != 0u) {
      v += f32(b[j]);
    }
    y[yb + j] = TY(v);
  }
}

@compute @workgroup_size(64)
fn layer_norm_bwd_tpr(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
  let row = thread_row(wid, nwg, lid);
  if (row >= p.rows) { return; }
  let xb = p.x_off + row * p.d;
  let gb = p.g_off + row * p.d;
  let ob = p.y_off + row * p.d;
  let st = ln_stats_row(xb);
  // Σ g and Σ g·x̂ with 4 interleaved partial sums each
  var sg = vec4<f32>(0.0);
  var sgx = vec4<f32>(0.0);
  var j = 0u;
  for (; j + 4u <= p.d; j += 4u) {
    let g = vec4<f32>(f32(dy[gb + j]) * f32(w[j]), f32(dy[gb + j + 1u]) * f32(w[j + 1u]),
                      f32(dy[gb + j + 2u]) * f32(w[j + 2u]), f32(dy[gb + j + 3u]) * f32(w[j + 3u]));
    let xh = (vec4<f32>(f32(x[xb + j]), f32(x[xb + j + 1u]), f32(x[xb + j + 2u]), f32(x[xb + j + 3u]))
              - st.x) * st.y;
    sg += g;
    sgx += g * xh;
  }
  for (; j < p.d; j++) {
    let g = f32(dy[gb + j]) * f32(w[j]);
    sg.x += g;
    sgx.x += g * (f32(x[xb + j]) - st.x) * st.y;
  }
  let m = vec2<f32>((sg.x + sg.y) + (sg.z + sg.w), (sgx.x + sgx.y) + (sgx.z + sgx.w)) / f32(p.d);
  for (var k = 0u; k < p.d; k++) {
    let g = f32(dy[gb + k]) * f32(w[k]);
    let xh = (f32(x[xb + k]) - st.x) * st.y;
    dx[ob + k] = TD(st.y * (g - m.x - xh * m.y));
  }
}

// Σ_j x² over the row.
fn row_sum_sq(xb: u32) -> f32 {
  var a = vec4<f32>(0.0);
  var c = vec4<f32>(0.0);
  var j = 0u;
  for (; j + 8u <= p.d; j += 8u) {
    let o = xb + j;
    let u = vec4<f32>(f32(x[o]), f32(x[o + 1u]), f32(x[o + 2u]), f32(x[o + 3u]));
    let v = vec4<f32>(f32(x[o + 4u]), f32(x[o + 5u]), f32(x[o + 6u]), f32(x[o + 7u]));
    a += u * u;
    c += v * v;
  }
  for (; j < p.d; j++) {
    let u = f32(x[xb + j]);
    a.x += u * u;
  }
  return hsum(a, c);
}

@compute @workgroup_size(64)
fn rms_norm_tpr(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
  let row = thread_row(wid, nwg, lid);
  if (row >= p.rows) { return; }
  let xb = p.x_off + row * p.d;
  let yb = p.y_off + row * p.d;
  let inv = inverseSqrt(row_sum_sq(xb) / f32(p.d) + p.eps);
  for (var j = 0u; j < p.d; j++) {
    y[yb + j] = TY(f32(w[j]) * (f32(x[xb + j]) * inv));
  }
}

@compute @workgroup_size(64)
fn rms_norm_bwd_tpr(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
  let row = thread_row(wid, nwg, lid);
  if (row >= p.rows) { return; }
  let xb = p.x_off + row * p.d;
  let gb = p.g_off + row * p.d;
  let ob = p.y_off + row * p.d;
  let inv = inverseSqrt(row_sum_sq(xb) / f32(p.d) + p.eps);
  var a = vec4<f32>(0.0);
  var j = 0u;
  for (; j + 4u <= p.d; j += 4u) {
    a += vec4<f32>(f32(dy[gb + j]) * f32(w[j]), f32(dy[gb + j + 1u]) * f32(w[j + 1u]),
                   f32(dy[gb + j + 2u]) * f32(w[j + 2u]), f32(dy[gb + j + 3u]) * f32(w[j + 3u]))
      * vec4<f32>(f32(x[xb + j]), f32(x[xb + j + 1u]), f32(x[xb + j + 2u]), f32(x[xb + j + 3u]));
  }
  for (; j < p.d; j++) { a.x += f32(dy[gb + j]) * f32(w[j]) * f32(x[xb + j]); }
  let c = ((a.x + a.y) + (a.z + a.w)) / f32(p.d) * inv * inv * inv;
  for (var k = 0u; k < p.d; k++) {
    let g = f32(dy[gb + k]) * f32(w[k]);
    dx[ob + k] = TD(inv * g - f32(x[xb + k]) * c);
  }
}
