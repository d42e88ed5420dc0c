// Symmetric eigen-decomposition A = V Λ Vᵀ by parallel cyclic Jacobi (f32), for AlphaEdit's null space.
// A (n×n, row-major, one binding) is overwritten: it converges to diag(Λ). V starts as I and collects
// the rotations (its columns become the eigenvectors). One sweep is m − 1 rounds (m = n rounded up to
// even, the extra index a dummy that never rotates); round `round` pairs the indices by the round-robin
// tournament: pair 0 = (m − 1, round), pair k = ((round + k) mod (m − 1), (round − k) mod (m − 1)).
// Every index is in exactly one pair, so the m/2 rotations of a round commute and run in parallel:
//   rotate_rows (one workgroup per pair): reads a_pp, a_qq, a_pq, chooses the rotation that zeroes
//     a_pq (Golub & Van Loan's symmetric Schur: τ = (a_qq − a_pp)/(2a_pq), t = sign(τ)/(|τ| + √(1+τ²)),
//     c = 1/√(1+t²), s = t·c), stores (c, s, a_pp − t·a_pq, a_qq + t·a_pq) and applies Jᵀ to rows p, q;
//   rotate_cols (one thread per row × pair): applies J to columns p, q of A and V, and writes the
//     exact 2×2 result on the pivot rows (new diagonal, a_pq = a_qp = 0).
// A pair is skipped (c = 1, s = 0) when |a_pq| ≤ tol·√|a_pp·a_qq| (Demmel–Veselić's relative
// criterion, which keeps the small eigenvalues of a semi-definite C accurate); `count` counts the
// rotations of a sweep, and a sweep without any rotation ends the iteration (the host reads it).

struct Params {
  n: u32,     // matrix size
  m: u32,     // n rounded up to even
  round: u32, // 0 ≤ round < m − 1
  _p0: u32,
  tol: f32,
  _p1: u32,
  _p2: u32,
  _p3: u32,
}

@group(0) @binding(0) var<uniform> pr: Params;
@group(0) @binding(1) var<storage, read_write> a: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> rot: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> count: array<atomic<u32>>;

fn pair_of(k: u32) -> vec2<u32> {
  let mm = pr.m - 1u;
  var p: u32;
  var q: u32;
  if (k == 0u) {
    p = mm;
    q = pr.round;
  } else {
    p = (pr.round + k) % mm;
    q = (pr.round + mm - k) % mm;
  }
  return vec2<u32>(min(p, q), max(p, q));
}

var<workgroup> wrot: vec4<f32>;

@compute @workgroup_size(64)
fn rotate_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let k = wid.x;
  let pq = pair_of(k);
  let p = pq.x;
  let q = pq.y;
  let n = pr.n;
  if (lid.x == 0u) {
    var r = vec4<f32>(1.0, 0.0, 0.0, 0.0);
    if (q < n) {
      let app = a[p * n + p];
      let aqq = a[q * n + q];
      let apq = a[p * n + q];
      r = vec4<f32>(1.0, 0.0, app, aqq);
      if (abs(apq) > pr.tol * sqrt(abs(app * aqq)) && apq != 0.0) {
        let tau = (aqq - app) / (2.0 * apq);
        var t = 1.0 / (abs(tau) + sqrt(1.0 + tau * tau));
        if (tau < 0.0) { t = -t; }
        let c = 1.0 / sqrt(1.0 + t * t);
        r = vec4<f32>(c, t * c, app - t * apq, aqq + t * apq);
        atomicAdd(&count[0], 1u);
      }
    }
    rot[k] = r;
    wrot = r;
  }
  workgroupBarrier();
  let r = wrot;
  if (q >= n || r.y == 0.0) { return; }
  let c = r.x;
  let s = r.y;
  for (var j = lid.x; j < n; j += 64u) {
    let x = a[p * n + j];
    let y = a[q * n + j];
    a[p * n + j] = c * x - s * y;
    a[q * n + j] = s * x + c * y;
  }
}

@compute @workgroup_size(64)
fn rotate_cols(@builtin(global_invocation_id) gid: vec3<u32>) {
  let k = gid.x;
  let i = gid.y;
  let n = pr.n;
  if (k >= pr.m / 2u || i >= n) { return; }
  let pq = pair_of(k);
  let p = pq.x;
  let q = pq.y;
  let r = rot[k];
  if (q >= n || r.y == 0.0) { return; }
  let c = r.x;
  let s = r.y;
  let x = a[i * n + p];
  let y = a[i * n + q];
  if (i == p) {
    a[i * n + p] = r.z;
    a[i * n + q] = 0.0;
  } else if (i == q) {
    a[i * n + p] = 0.0;
    a[i * n + q] = r.w;
  } else {
    a[i * n + p] = c * x - s * y;
    a[i * n + q] = s * x + c * y;
  }
  let vx = v[i * n + p];
  let vy = v[i * n + q];
  v[i * n + p] = c * vx - s * vy;
  v[i * n + q] = s * vx + c * vy;
}

// V = I (before the first sweep).
@compute @workgroup_size(64)
fn identity(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  let i = gid.y;
  if (j >= pr.n || i >= pr.n) { return; }
  v[i * pr.n + j] = select(0.0, 1.0, i == j);
}

@group(0) @binding(5) var<storage, read> idx: array<u32>;
@group(0) @binding(6) var<storage, read_write> outc: array<f32>;

// outc[i, j] = v[i, idx[j]] for j < m (selected columns, in order): outc is [n, m] with m in pr.m.
@compute @workgroup_size(64)
fn gather_cols(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  let i = gid.y;
  if (j >= pr.m || i >= pr.n) { return; }
  outc[i * pr.m + j] = v[i * pr.n + idx[j]];
}
