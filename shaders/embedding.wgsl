// Row gathers and scatters on [rows, d] tensors: embedding lookups (wte/wpe), reading ROME keys at
// token positions, adding δ at chosen rows, and summing chosen rows (δ's gradient).
// The host splits the work by row chunk and passes, per dispatch, a list of u32 pairs holding rows
// LOCAL to the bound chunks. Math is f32.
// Aliases (set by the host; unused ones are f32): TT gathered-from rows, TO output, TV added vector,
// TX in-place target.

struct Params {
  n: u32,    // gather / add_rows: number of pairs; sum_rows: number of rows
  d: u32,    // row length
  acc: u32,  // gather: add into out instead of overwriting
  _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<TT>;
@group(0) @binding(2) var<storage, read> pairs: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<TO>;
@group(0) @binding(4) var<storage, read> v: array<TV>;
@group(0) @binding(5) var<storage, read_write> xt: array<TX>;

const WG: u32 = 256u;

// One workgroup per pair (src row, out row): out[t] = src[s] (or += when acc).
@compute @workgroup_size(256)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_id) l: vec3<u32>) {
  let i = wid.y * nwg.x + wid.x;
  if (i >= p.n) { return; }
  let sb = pairs[2u * i] * p.d;
  let tb = pairs[2u * i + 1u] * p.d;
  for (var j = l.x; j < p.d; j += WG) {
    var val = f32(src[sb + j]);
    if (p.acc != 0u) {
      val += f32(out[tb + j]);
    }
    out[tb + j] = TO(val);
  }
}

// One workgroup per pair (row, multiplicity): xt[row] += multiplicity · v (rows are distinct).
@compute @workgroup_size(256)
fn add_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) l: vec3<u32>) {
  let i = wid.y * nwg.x + wid.x;
  if (i >= p.n) { return; }
  let rb = pairs[2u * i] * p.d;
  let m = f32(pairs[2u * i + 1u]);
  for (var j = l.x; j < p.d; j += WG) {
    xt[rb + j] = TX(f32(xt[rb + j]) + m * f32(v[j]));
  }
}

// One thread per column j: out[j] += Σ_i src[pairs[i]][j], rows summed in list order.
@compute @workgroup_size(256)
fn sum_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_id) l: vec3<u32>) {
  let j = (wid.y * nwg.x + wid.x) * WG + l.x;
  if (j >= p.d) { return; }
  var s = f32(out[j]);
  for (var i = 0u; i < p.n; i++) {
    s += f32(src[pairs[i] * p.d + j]);
  }
  out[j] = TO(s);
}
