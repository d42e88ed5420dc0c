// Counts non-finite (NaN or ±inf) values of an ST array range into counter[0] (atomic).
struct Range {
  n: u32,
  x_off: u32,
  _p0: u32,
  _p1: u32,
}
@group(0) @binding(0) var<uniform> rg: Range;
@group(0) @binding(1) var<storage, read> x: array<ST>;
@group(0) @binding(2) var<storage, read_write> counter: array<atomic<u32>>;

@compute @workgroup_size(256)
fn count_nonfinite(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = (wid.y * nwg.x + wid.x) * 256u + lid.x;
  if (i >= rg.n) { return; }
  // f16 -> f32 keeps inf and NaN; test the exponent bits so the compiler cannot fold the check away.
  let bits = bitcast<u32>(f32(x[rg.x_off + i]));
  if ((bits & 0x7f800000u) == 0x7f800000u) {
    atomicAdd(&counter[0], 1u);
  }
}
