// Deterministic random fill (counter-based: the value of element g depends only on (seed, g), so any
// chunking of a tensor and any dispatch order give the same values) and a diagonal shift.
// Aliases set by the host: ST (storage of the filled tensor). Dispatch: 256 threads per workgroup,
// 2-D grid for n > 65535*256. lib/model/random.ts mirrors the hash in TypeScript (hashUniform).

struct Fill {
  n: u32,      // elements of this chunk to fill
  base: u32,   // global element index of the chunk's first element
  seed: u32,
  scale: f32,  // values lie in [-scale, scale) before rounding to ST
}

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
  return (wid.y * nwg.x + wid.x) * 256u + lid.x;
}

// "lowbias32" integer finaliser (a bijection on u32 with good avalanche).
fn mix32(v: u32) -> u32 {
  var x = v;
  x = x ^ (x >> 16u);
  x = x * 0x7feb352du;
  x = x ^ (x >> 15u);
  x = x * 0x846ca68bu;
  x = x ^ (x >> 16u);
  return x;
}

// Uniform in [-1, 1): 24 random bits k give (k - 2^23)·2^-23, exact in f32.
fn uniform_pm1(seed: u32, g: u32) -> f32 {
  let h = mix32(mix32(g * 0x9e3779b9u + mix32(seed)) ^ seed);
  return f32(h >> 8u) * (1.0 / 8388608.0) - 1.0;
}

@group(0) @binding(0) var<uniform> fp: Fill;
@group(0) @binding(1) var<storage, read_write> fy: array<ST>;

@compute @workgroup_size(256)
fn fill_uniform(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, nwg, lid);
  if (i >= fp.n) { return; }
  fy[i] = ST(uniform_pm1(fp.seed, fp.base + i) * fp.scale);
}

// ---- C[r, row0 + r] += alpha for the `n` rows of one chunk of a square f32 matrix (d columns).
struct Diag {
  n: u32,
  row0: u32,
  d: u32,
  alpha: f32,
}

@group(0) @binding(0) var<uniform> dp: Diag;
@group(0) @binding(1) var<storage, read_write> dc: array<f32>;

@compute @workgroup_size(256)
fn add_diagonal(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
  let r = flat_index(wid, nwg, lid);
  if (r >= dp.n) { return; }
  let at = r * dp.d + dp.row0 + r;
  dc[at] = dc[at] + dp.alpha;
}
