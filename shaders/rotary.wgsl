// Rotary position embedding, in place, for one row segment of x [B·S, heads·hd] (alias ST = storage of x).
// Each thread rotates one pair of one head of one row by the angle of (position, pair):
//   interleaved (GPT-J rotate_every_two): pair i = dims (2i, 2i+1)
//   rotate_half (Llama / NeoX):           pair i = dims (i, i + rotary_dim/2)
//   out0 = x0·cos − x1·sin, out1 = x1·cos + x0·sin   (inverse: sin → −sin, the transpose = the backward pass)
// Dims ≥ rotary_dim pass through. cos/sin come from a host-computed table [positions, rotary_dim/2] of
// vec2(cos, sin) so that large positions stay accurate (see lib/ops/rotary.ts).

struct Params {
  n: u32, // threads: rows · heads · half
  row0: u32, // global row of the segment's first row
  x_off: u32, // element offset of that row in the bound chunk
  seq: u32,
  heads: u32,
  head_dim: u32,
  half: u32,
  interleaved: u32,
  inverse: u32,
  _p0: u32,
  _p1: u32,
  _p2: u32,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read> offsets: array<u32>; // per batch row: position of its token 0
@group(0) @binding(2) var<storage, read> table: array<vec2<f32>>;
@group(0) @binding(3) var<storage, read_write> x: array<ST>;

@compute @workgroup_size(256)
fn rotary(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
  let i = (wid.y * nwg.x + wid.x) * 256u + lid;
  if (i >= P.n) { return; }
  let pair = i % P.half;
  let rh = i / P.half;
  let h = rh % P.heads;
  let r = rh / P.heads;
  let row = P.row0 + r;
  let b = row / P.seq;
  let pos = offsets[b] + (row - b * P.seq);
  let cs = table[pos * P.half + pair];
  var sn = cs.y;
  if (P.inverse != 0u) { sn = -sn; }
  var i0 = pair;
  var i1 = pair + P.half;
  if (P.interleaved != 0u) {
    i0 = 2u * pair;
    i1 = i0 + 1u;
  }
  let base = P.x_off + (r * P.heads + h) * P.head_dim;
  let x0 = f32(x[base + i0]);
  let x1 = f32(x[base + i1]);
  x[base + i0] = ST(x0 * cs.x - x1 * sn);
  x[base + i1] = ST(x1 * cs.x + x0 * sn);
}
