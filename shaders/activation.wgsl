// Elementwise MLP activations and residual adds, forward and input gradients. f32 math for every
// storage type. Aliases (set by the host; unused ones are f32): TA first input, TB second input,
// TC third input, TO first output, TP second output.
// Every entry works on `n` elements starting at per-operand element offsets (the host walks row chunks).
// Dispatch: 256 threads per workgroup, 2-D grid when n > 65535·256.

struct Params {
  n: u32,
  a_off: u32,
  b_off: u32,
  c_off: u32,
  o_off: u32,
  p_off: u32,
  _p0: u32,
  _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<TA>;
@group(0) @binding(2) var<storage, read> b: array<TB>;
@group(0) @binding(3) var<storage, read> c: array<TC>;
@group(0) @binding(4) var<storage, read_write> o: array<TO>;
@group(0) @binding(5) var<storage, read_write> o2: array<TP>;

const GELU_K: f32 = 0.7978845608028654; // sqrt(2/pi)
const GELU_C: f32 = 0.044715;

fn index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
  return (wid.y * nwg.x + wid.x) * 256u + lid.x;
}

// tanh through exp(-2|u|) ∈ (0, 1]: no overflow for any u, exact ±1 in the tails.
fn tanh_safe(u: f32) -> f32 {
  let e = exp(-2.0 * abs(u));
  let t = (1.0 - e) / (1.0 + e);
  return select(t, -t, u < 0.0);
}

fn sigmoid(v: f32) -> f32 {
  return 1.0 / (1.0 + exp(-v));
}

// ---- o = gelu_new(a) = 0.5·a·(1 + tanh(k·(a + c·a³)))
@compute @workgroup_size(256)
fn gelu_new(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = index(wid, nwg, lid);
  if (i >= p.n) { return; }
  let x = f32(a[p.a_off + i]);
  let t = tanh_safe(GELU_K * (x + GELU_C * x * x * x));
  o[p.o_off + i] = TO(0.5 * x * (1.0 + t));
}

// ---- o = b · gelu_new'(a), b = upstream gradient
@compute @workgroup_size(256)
fn gelu_new_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = index(wid, nwg, lid);
  if (i >= p.n) { return; }
  let x = f32(a[p.a_off + i]);
  let u = GELU_K * (x + GELU_C * x * x * x);
  let t = tanh_safe(u);
  // in the tails 1 − t² is 0 while x·(1 + 3c·x²) may overflow: drop that term there
  let sech2 = select(1.0 - t * t, 0.0, abs(u) > 20.0);
  let dg = 0.5 * (1.0 + t) + 0.5 * x * sech2 * GELU_K * (1.0 + 3.0 * GELU_C * x * x);
  o[p.o_off + i] = TO(f32(b[p.b_off + i]) * dg);
}

// ---- o = silu(a) · b  (a = gate, b = up)
@compute @workgroup_size(256)
fn silu_mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = index(wid, nwg, lid);
  if (i >= p.n) { return; }
  let g = f32(a[p.a_off + i]);
  o[p.o_off + i] = TO(g * sigmoid(g) * f32(b[p.b_off + i]));
}

// ---- o = dGate = c·b·σ(a)(1 + a(1 − σ(a))),  o2 = dUp = c·silu(a)  (c = upstream gradient dh)
@compute @workgroup_size(256)
fn silu_mul_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = index(wid, nwg, lid);
  if (i >= p.n) { return; }
  let g = f32(a[p.a_off + i]);
  let s = sigmoid(g);
  let dh = f32(c[p.c_off + i]);
  o[p.o_off + i] = TO(dh * f32(b[p.b_off + i]) * s * (1.0 + g * (1.0 - s)));
  o2[p.p_off + i] = TP(dh * g * s);
}

// ---- o = a + b
@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = index(wid, nwg, lid);
  if (i >= p.n) { return; }
  o[p.o_off + i] = TO(f32(a[p.a_off + i]) + f32(b[p.b_off + i]));
}

// ---- o += a
@compute @workgroup_size(256)
fn add_inplace(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = index(wid, nwg, lid);
  if (i >= p.n) { return; }
  o[p.o_off + i] = TO(f32(o[p.o_off + i]) + f32(a[p.a_off + i]));
}
