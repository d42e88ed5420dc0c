// Elementwise kernels. Aliases set by the host: ST (storage of x/y), SRC/DST (for cast).
// Every entry works on a range of `n` elements starting at element offsets, so the host can walk the
// row chunks of large tensors. Dispatch: 256 threads per workgroup, 2-D grid for n > 65535*256.

struct Range {
  n: u32,
  x_off: u32,
  y_off: u32,
  alpha: f32,
}

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
  return (wid.y * nwg.x + wid.x) * 256u + lid.x;
}

@group(0) @binding(0) var<uniform> rg: Range;

// ---- y[i] += alpha * x[i]   (f32 math, result stored in ST)
@group(0) @binding(1) var<storage, read> ax: array<ST>;
@group(0) @binding(2) var<storage, read_write> ay: array<ST>;

@compute @workgroup_size(256)
fn axpy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, nwg, lid);
  if (i >= rg.n) { return; }
  let v = f32(ay[rg.y_off + i]) + rg.alpha * f32(ax[rg.x_off + i]);
  ay[rg.y_off + i] = ST(v);
}

// ---- y[i] = alpha * y[i]
@compute @workgroup_size(256)
fn scale(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = flat_index(wid, nwg, lid);
  if (i >= rg.n) { return; }
  ay[rg.y_off + i] = ST(rg.alpha * f32(ay[rg.y_off + i]));
}
