// dst[i] = DST(src[i]) over a range; aliases SRC and DST are set by the host.
struct Range {
  n: u32,
  x_off: u32,
  y_off: u32,
  _pad: u32,
}
@group(0) @binding(0) var<uniform> rg: Range;
@group(0) @binding(1) var<storage, read> src: array<SRC>;
@group(0) @binding(2) var<storage, read_write> dst: array<DST>;

@compute @workgroup_size(256)
fn convert(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
  let i = (wid.y * nwg.x + wid.x) * 256u + lid.x;
  if (i >= rg.n) { return; }
  dst[rg.y_off + i] = DST(src[rg.x_off + i]);
}
