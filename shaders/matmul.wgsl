// Matrix multiply: C = alpha · op(A) · op(B) (+ bias broadcast over rows) (+ C when ACCUM), batched over
// dispatch z. Aliases set by the host: TA, TB, TC (storage of A, B, C) and TBIAS; math is always f32.
//
// Every operand is addressed as `off + batch·bs + row·ld + col` (element units, inside one binding), so the
// host can run any sub-rectangle of a chunked tensor: a row/column/K slice is just other offsets and sizes.
// op(A) is [m, k]: A is stored [m, k] (row stride lda) or, with TRANS_A, [k, m]. op(B) is [k, n]: B is
// stored [k, n] or, with TRANS_B, [n, k]. C is stored [m, n] with row stride ldc.
//
// Entries:
//   mm_direct  register-blocked: each thread owns a 32×16 block of C (eight by four 4×4 matrices) and reads
//              its operands straight from storage as vec4s; workgroup 8×4 threads. Best on CPU adapters
//              (lavapipe: each storage read is a per-lane loop, so reads per FMA are what count; caches play
//              the role of workgroup memory, and barriers are expensive). Tuned there: 32×16 blocks with 8
//              threads along x (one SIMD group reading the same A rows) beat 16×16, 32×32 and 16×32.
//   mm_tiled   16×16 register blocks (4×4 matrices), workgroup 8×8 threads; each 128×16 (A) and 16×128 (B)
//              K-tile is first staged in workgroup memory by the whole workgroup (the usual GPU design:
//              every global element is read once per workgroup instead of once per thread).
//   mm_skinny  for few rows (m ≤ 40 by default): 4×16 blocks, workgroup 32×1 covering 4 rows × 512 columns of C.
//   mm_texel   the mm_direct blocking with both operands read from rgba32float textures that mm_pack filled
//              (op(A) as [m, k/4] texels, op(B) as [k, n/4] texels, K zero-padded to a multiple of 4): on
//              lavapipe a texel fetch is one vectorised gather of 8 lanes × 4 values, while every storage
//              read is a per-lane loop with a bounds check per component, so this kernel reads its
//              operands several times faster than mm_direct. Packing costs one pass over each operand.
//   mm_pack    writes op(X)[r][4t .. 4t+3] of a strided (optionally transposed) storage operand into texel
//              (t, r) of a storage texture, zeros past the valid columns and in rows [rows, p.k).
//   mm_rows    few rows (CPU adapters): up to 64 rows × 16 columns of C per thread, op(A) packed by mm_pack,
//              op(B) read from storage once per row group (see the section below and lib/ops/matmul_rows.ts).
//   mm_naive   one thread per output element (the baseline for the benchmark; also handy for debugging).
//   mm_reduce  C = alpha·Σ_{s < p.k} A[p.a_off + s·p.a_bs + m·p.lda + n] (+ bias) (+ C): sums the f32
//              partial products of a K-split mm_skinny or mm_rows (few rows, long K: e.g. the LM head's
//              backward, dlogits [T, V] · W [V, d], whose C alone has too few blocks to keep a device busy);
//              workgroup 16×16, dispatch (ceil(n/16), ceil(m/16)).
// mm_direct and mm_tiled: one workgroup per 128×128 tile of C; dispatch
// (ceil(n/128), ceil(m/128), batch). mm_naive: workgroup 16×16, dispatch (ceil(n/16), ceil(m/16), batch).
//
// Edges: rows of op(A) ≥ m and columns of op(B) ≥ n are read without checks (WebGPU clamps or zeroes
// out-of-bounds reads); they only ever feed outputs that are not stored. Reads past k are masked to 0.
//
// A 4×4 block is kept as a WGSL mat4x4 (column-major): a_blk(m, k) has column i = A[m+i][k..k+3] (the
// transposed A block), b_blk(k, n) has column l = B[k+l][n..n+3] (the transposed B block), so the block
// product Cᵀ += Bᵀ·Aᵀ is `acc += b * a` and column i of acc is row m+i of C.

struct Params {
  m: u32,
  n: u32,
  k: u32,
  a_off: u32,
  lda: u32,
  a_bs: u32,
  b_off: u32,
  ldb: u32,
  b_bs: u32,
  c_off: u32,
  ldc: u32,
  c_bs: u32,
  bias_off: u32,
  alpha: f32,
  // mm_texel with TRI ≠ 0: the position of this dispatch's C element (0, 0) in the full matrix whose
  // diagonal decides which tiles run
  tri_r0: u32,
  tri_c0: u32,
  // mm_texel: bit 0 add the bias, bit 1 accumulate into C, bits 2–3 the triangle mode (TRI below); runtime
  // flags instead of override constants keep mm_texel (slow to compile on lavapipe) to one pipeline per
  // storage type
  flags: u32,
  _p0: u32,
  _p1: u32,
  _p2: u32,
}

override TRANS_A: bool = false;
override TRANS_B: bool = false;
// vec4 reads of A/B: only when every row start used is a multiple of 4 elements (off, ld, bs % 4 == 0)
override VEC_A: bool = false;
override VEC_B: bool = false;
override HAS_BIAS: bool = false;
override ACCUM: bool = false;
// mm_texel only: read bias / accumulate / triangle from p.flags. Triangle mode 0: every tile; 1: skip tiles
// strictly below the diagonal (symmetric products whose lower triangle the host mirrors afterwards); 2: skip
// tiles strictly above it and store only column ≤ row.
override RUNTIME_FLAGS: bool = false;

fn has_bias() -> bool {
  return HAS_BIAS || (RUNTIME_FLAGS && (p.flags & 1u) != 0u);
}

fn accum() -> bool {
  return ACCUM || (RUNTIME_FLAGS && (p.flags & 2u) != 0u);
}

fn tri_mode() -> u32 {
  return select(0u, (p.flags >> 2u) & 3u, RUNTIME_FLAGS);
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> A: array<TA>;
@group(0) @binding(2) var<storage, read> A4: array<vec4<TA>>;
@group(0) @binding(3) var<storage, read> B: array<TB>;
@group(0) @binding(4) var<storage, read> B4: array<vec4<TB>>;
@group(0) @binding(5) var<storage, read> bias: array<TBIAS>;
@group(0) @binding(6) var<storage, read_write> C: array<TC>;

// ---- operand access ---------------------------------------------------------------------------------

// four consecutive stored elements of A starting at element index q
fn a_quad(q: u32) -> vec4<f32> {
  if (VEC_A) {
    return vec4<f32>(A4[q / 4u]);
  }
  return vec4<f32>(f32(A[q]), f32(A[q + 1u]), f32(A[q + 2u]), f32(A[q + 3u]));
}

fn b_quad(q: u32) -> vec4<f32> {
  if (VEC_B) {
    return vec4<f32>(B4[q / 4u]);
  }
  return vec4<f32>(f32(B[q]), f32(B[q + 1u]), f32(B[q + 2u]), f32(B[q + 3u]));
}

// column i = op(A)[m+i][k..k+3]; abase = a_off + batch·a_bs
fn a_blk(abase: u32, m: u32, k: u32) -> mat4x4<f32> {
  let ld = p.lda;
  if (TRANS_A) {
    let q = abase + k * ld + m; // stored rows k..k+3, quads along m
    return transpose(mat4x4<f32>(a_quad(q), a_quad(q + ld), a_quad(q + 2u * ld), a_quad(q + 3u * ld)));
  }
  let q = abase + m * ld + k; // stored rows m..m+3, quads along k
  return mat4x4<f32>(a_quad(q), a_quad(q + ld), a_quad(q + 2u * ld), a_quad(q + 3u * ld));
}

// column l = op(B)[k+l][n..n+3]
fn b_blk(bbase: u32, k: u32, n: u32) -> mat4x4<f32> {
  let ld = p.ldb;
  if (TRANS_B) {
    let q = bbase + n * ld + k; // stored rows n..n+3, quads along k
    return transpose(mat4x4<f32>(b_quad(q), b_quad(q + ld), b_quad(q + 2u * ld), b_quad(q + 3u * ld)));
  }
  let q = bbase + k * ld + n; // stored rows k..k+3, quads along n
  return mat4x4<f32>(b_quad(q), b_quad(q + ld), b_quad(q + 2u * ld), b_quad(q + 3u * ld));
}

// the same blocks with every element at k+l ≥ p.k replaced by 0 (select, so garbage NaN/inf cannot leak)
fn a_blk_masked(abase: u32, m: u32, k: u32) -> mat4x4<f32> {
  let a = a_blk(abase, m, k);
  let kv = vec4<u32>(k, k + 1u, k + 2u, k + 3u) < vec4<u32>(p.k);
  let z = vec4<f32>(0.0);
  return mat4x4<f32>(select(z, a[0], kv), select(z, a[1], kv), select(z, a[2], kv), select(z, a[3], kv));
}

fn b_blk_masked(bbase: u32, k: u32, n: u32) -> mat4x4<f32> {
  let b = b_blk(bbase, k, n);
  let z = vec4<f32>(0.0);
  return mat4x4<f32>(
    select(z, b[0], k < p.k),
    select(z, b[1], k + 1u < p.k),
    select(z, b[2], k + 2u < p.k),
    select(z, b[3], k + 3u < p.k),
  );
}

// ---- epilogue -------------------------------------------------------------------------------------------

// C[m][n] = alpha·v (+ bias[n]) (+ C[m][n]); the caller checks m < p.m, n < p.n
fn finish(cbase: u32, m: u32, n: u32, v: f32) {
  let at = cbase + m * p.ldc + n;
  var c = p.alpha * v;
  if (has_bias()) {
    c += f32(bias[p.bias_off + n]);
  }
  if (accum()) {
    c += f32(C[at]);
  }
  C[at] = TC(c);
}

// Stores one 4×4 block (column i = C[m+i][n..n+3]). Runtime loop bounds over the valid rows and columns
// keep the bounds-checked per-element stores in one copy (unrolled, hundreds of them per kernel made
// lavapipe's compile take ten seconds and more).
fn store_blk(cbase: u32, m: u32, n: u32, acc: mat4x4<f32>) {
  let mr = select(0u, min(4u, p.m - m), m < p.m);
  let nc = select(0u, min(4u, p.n - n), n < p.n);
  let lower = tri_mode() == 2u;
  for (var i = 0u; i < mr; i++) {
    let row = acc[i];
    for (var j = 0u; j < nc; j++) {
      if (lower && p.tri_c0 + n + j > p.tri_r0 + m + i) {
        continue;
      }
      finish(cbase, m + i, n + j, row[j]);
    }
  }
}

// block rows (of 4 rows) of a register tile starting at row m that hold rows < p.m, at most `most`
fn valid_block_rows(m: u32, most: u32) -> u32 {
  return select(0u, min(most, (p.m - m + 3u) / 4u), m < p.m);
}

// ---- register-blocked kernel (no workgroup memory) -------------------------------------------------

@compute @workgroup_size(8, 4)
fn mm_direct(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let abase = p.a_off + wid.z * p.a_bs;
  let bbase = p.b_off + wid.z * p.b_bs;
  let m = wid.y * 128u + lid.y * 32u;
  let n = wid.x * 128u + lid.x * 16u;
  var c00 = mat4x4<f32>();
  var c01 = mat4x4<f32>();
  var c02 = mat4x4<f32>();
  var c03 = mat4x4<f32>();
  var c10 = mat4x4<f32>();
  var c11 = mat4x4<f32>();
  var c12 = mat4x4<f32>();
  var c13 = mat4x4<f32>();
  var c20 = mat4x4<f32>();
  var c21 = mat4x4<f32>();
  var c22 = mat4x4<f32>();
  var c23 = mat4x4<f32>();
  var c30 = mat4x4<f32>();
  var c31 = mat4x4<f32>();
  var c32 = mat4x4<f32>();
  var c33 = mat4x4<f32>();
  var c40 = mat4x4<f32>();
  var c41 = mat4x4<f32>();
  var c42 = mat4x4<f32>();
  var c43 = mat4x4<f32>();
  var c50 = mat4x4<f32>();
  var c51 = mat4x4<f32>();
  var c52 = mat4x4<f32>();
  var c53 = mat4x4<f32>();
  var c60 = mat4x4<f32>();
  var c61 = mat4x4<f32>();
  var c62 = mat4x4<f32>();
  var c63 = mat4x4<f32>();
  var c70 = mat4x4<f32>();
  var c71 = mat4x4<f32>();
  var c72 = mat4x4<f32>();
  var c73 = mat4x4<f32>();
  for (var k = 0u; k < p.k; k += 4u) {
    let a0 = a_blk_masked(abase, m, k);
    let a1 = a_blk_masked(abase, m + 4u, k);
    let a2 = a_blk_masked(abase, m + 8u, k);
    let a3 = a_blk_masked(abase, m + 12u, k);
    let a4 = a_blk_masked(abase, m + 16u, k);
    let a5 = a_blk_masked(abase, m + 20u, k);
    let a6 = a_blk_masked(abase, m + 24u, k);
    let a7 = a_blk_masked(abase, m + 28u, k);
    let b0 = b_blk_masked(bbase, k, n);
    let b1 = b_blk_masked(bbase, k, n + 4u);
    let b2 = b_blk_masked(bbase, k, n + 8u);
    let b3 = b_blk_masked(bbase, k, n + 12u);
    c00 += b0 * a0;
    c01 += b1 * a0;
    c02 += b2 * a0;
    c03 += b3 * a0;
    c10 += b0 * a1;
    c11 += b1 * a1;
    c12 += b2 * a1;
    c13 += b3 * a1;
    c20 += b0 * a2;
    c21 += b1 * a2;
    c22 += b2 * a2;
    c23 += b3 * a2;
    c30 += b0 * a3;
    c31 += b1 * a3;
    c32 += b2 * a3;
    c33 += b3 * a3;
    c40 += b0 * a4;
    c41 += b1 * a4;
    c42 += b2 * a4;
    c43 += b3 * a4;
    c50 += b0 * a5;
    c51 += b1 * a5;
    c52 += b2 * a5;
    c53 += b3 * a5;
    c60 += b0 * a6;
    c61 += b1 * a6;
    c62 += b2 * a6;
    c63 += b3 * a6;
    c70 += b0 * a7;
    c71 += b1 * a7;
    c72 += b2 * a7;
    c73 += b3 * a7;
  }
  let cbase = p.c_off + wid.z * p.c_bs;
  // one store_blk call site for the whole tile: block t is picked by a switch
  for (var t = 0u; t < valid_block_rows(m, 8u) * 4u; t++) {
    var blk: mat4x4<f32>;
    switch t {
      case 0u: { blk = c00; }
      case 1u: { blk = c01; }
      case 2u: { blk = c02; }
      case 3u: { blk = c03; }
      case 4u: { blk = c10; }
      case 5u: { blk = c11; }
      case 6u: { blk = c12; }
      case 7u: { blk = c13; }
      case 8u: { blk = c20; }
      case 9u: { blk = c21; }
      case 10u: { blk = c22; }
      case 11u: { blk = c23; }
      case 12u: { blk = c30; }
      case 13u: { blk = c31; }
      case 14u: { blk = c32; }
      case 15u: { blk = c33; }
      case 16u: { blk = c40; }
      case 17u: { blk = c41; }
      case 18u: { blk = c42; }
      case 19u: { blk = c43; }
      case 20u: { blk = c50; }
      case 21u: { blk = c51; }
      case 22u: { blk = c52; }
      case 23u: { blk = c53; }
      case 24u: { blk = c60; }
      case 25u: { blk = c61; }
      case 26u: { blk = c62; }
      case 27u: { blk = c63; }
      case 28u: { blk = c70; }
      case 29u: { blk = c71; }
      case 30u: { blk = c72; }
      default: { blk = c73; }
    }
    store_blk(cbase, m + 4u * (t / 4u), n + 4u * (t % 4u), blk);
  }
}

// ---- packed-texture kernel (CPU adapters) -------------------------------------------------------------

// read-only storage textures: on lavapipe a storage-texture load costs about a quarter of a sampled
// texture's textureLoad (no sampler path: measured 7 against 29 cycles per 8-lane vec4 fetch)
@group(0) @binding(7) var At: texture_storage_2d<rgba32float, read>;
@group(0) @binding(8) var Bt: texture_storage_2d<rgba32float, read>;
@group(0) @binding(9) var packed: texture_storage_2d<rgba32float, write>;
// the C buffer again, as quads (flags bit 4: C's offset and row stride are multiples of 4 elements)
@group(0) @binding(10) var<storage, read_write> C4: array<vec4<TC>>;

// Stores one 4×4 block like store_blk, but whole rows of 4 as one vec4 access (a storage access on lavapipe
// is a per-lane loop, so one quad costs about what one scalar does) and the bias read once per block.
fn store_texel(cbase: u32, m: u32, n: u32, acc: mat4x4<f32>) {
  if (m >= p.m || n >= p.n) {
    return;
  }
  let mr = min(4u, p.m - m);
  let nc = min(4u, p.n - n);
  var bq = vec4<f32>(0.0);
  if (has_bias()) {
    for (var j = 0u; j < nc; j++) {
      bq[j] = f32(bias[p.bias_off + n + j]);
    }
  }
  let lower = tri_mode() == 2u;
  let quads = (p.flags & 16u) != 0u && nc == 4u;
  for (var i = 0u; i < mr; i++) {
    let v = p.alpha * acc[i] + bq;
    let at = cbase + (m + i) * p.ldc + n;
    // in the lower-triangle mode a quad is whole when its last column is on or left of the diagonal
    if (quads && (!lower || p.tri_c0 + n + 3u <= p.tri_r0 + m + i)) {
      var w = v;
      if (accum()) {
        w += vec4<f32>(C4[at / 4u]);
      }
      C4[at / 4u] = vec4<TC>(w);
    } else {
      for (var j = 0u; j < nc; j++) {
        if (lower && p.tri_c0 + n + j > p.tri_r0 + m + i) {
          continue;
        }
        var c = v[j];
        if (accum()) {
          c += f32(C[at + j]);
        }
        C[at + j] = TC(c);
      }
    }
  }
}

// column i = op(A)[m+i][k..k+3]
fn a_tex(m: u32, k: u32) -> mat4x4<f32> {
  let x = i32(k / 4u);
  let y = i32(m);
  return mat4x4<f32>(
    textureLoad(At, vec2<i32>(x, y)),
    textureLoad(At, vec2<i32>(x, y + 1)),
    textureLoad(At, vec2<i32>(x, y + 2)),
    textureLoad(At, vec2<i32>(x, y + 3)),
  );
}

// column l = op(B)[k+l][n..n+3], op(B) packed from texel column x0 on
fn b_tex(x0: u32, k: u32, n: u32) -> mat4x4<f32> {
  let x = i32(x0 + n / 4u);
  let y = i32(k);
  return mat4x4<f32>(
    textureLoad(Bt, vec2<i32>(x, y)),
    textureLoad(Bt, vec2<i32>(x, y + 1)),
    textureLoad(Bt, vec2<i32>(x, y + 2)),
    textureLoad(Bt, vec2<i32>(x, y + 3)),
  );
}

// Packs rows [0, p.k) of op(X) (X = binding A, [p.m rows valid] × [p.n columns], element (r, c) at
// a_off + r·lda + c, or a_off + c·lda + r with TRANS_A) into `packed`, texel t of row r at texture
// (ldc + t, c_off + r) (c_off > 0 with m = 0: zero rows below a slice the host copied in). Scalar reads (any offset and
// stride): one texel per thread, dispatch (ceil(ceil(p.n/4)/8), ceil(p.k/8)). With VEC_A (a_off and lda
// multiples of 4) whole quads are read, a quarter of the storage reads (each a per-lane loop on lavapipe):
// untransposed one quad per texel as above; transposed, a thread reads four quads of X (rows 4t … 4t+3,
// columns 4u … 4u+3) and writes the 4 texels (t, 4u … 4u+3) of their transpose, dispatch
// (ceil(ceil(p.n/4)/8), ceil(ceil(p.k/4)/8)).
@compute @workgroup_size(8, 8)
fn mm_pack(@builtin(global_invocation_id) g: vec3<u32>) {
  let t = g.x;
  if (t >= (p.n + 3u) / 4u) {
    return;
  }
  let cv = vec4<u32>(4u * t) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.n);
  let z = vec4<f32>(0.0);
  if (VEC_A && TRANS_A) {
    let r = 4u * g.y;
    if (r >= p.k) {
      return;
    }
    var q = mat4x4<f32>();
    if (r < p.m) {
      let at = (p.a_off + 4u * t * p.lda + r) / 4u;
      let ld4 = p.lda / 4u;
      q = transpose(mat4x4<f32>(
        select(z, vec4<f32>(A4[at]), cv.x),
        select(z, vec4<f32>(A4[at + ld4]), cv.y),
        select(z, vec4<f32>(A4[at + 2u * ld4]), cv.z),
        select(z, vec4<f32>(A4[at + 3u * ld4]), cv.w),
      ));
    }
    for (var j = 0u; j < min(4u, p.k - r); j++) {
      textureStore(packed, vec2<i32>(i32(p.ldc + t), i32(p.c_off + r + j)), select(z, q[j], r + j < p.m));
    }
    return;
  }
  let r = g.y;
  if (r >= p.k) {
    return;
  }
  var v = z;
  if (r < p.m) {
    if (VEC_A) {
      v = select(z, vec4<f32>(A4[(p.a_off + r * p.lda) / 4u + t]), cv);
    } else {
      for (var i = 0u; i < 4u; i++) {
        let c = 4u * t + i;
        if (c < p.n) {
          var at = p.a_off + r * p.lda + c;
          if (TRANS_A) {
            at = p.a_off + c * p.lda + r;
          }
          v[i] = f32(A[at]);
        }
      }
    }
  }
  textureStore(packed, vec2<i32>(i32(p.ldc + t), i32(p.c_off + r)), v);
}

// The mm_direct blocking (32×16 per thread, workgroup 8×4, one workgroup per 128×128 tile of C) over
// packed operands; p.k is the padded K (a multiple of 4), so no masking is needed. The accumulators are
// vec4 rows (c<r>_<q> = C[m+r][n+4q .. n+4q+3]) updated as Σ_l B[k+l][…]·A[m+r][k+l] (in a micro-kernel
// study on lavapipe this form ran 1.3× faster than 4×4 matrix products; here the two were within noise).
// GRAM: op(A) = the columns of op(B) from column p.a_off on (a multiple of 4), transposed — C += XᵀX from
// one packed X: A's rows are read from Bt (4 texels give 4 rows × 4 K) and At is not bound.
override GRAM: bool = false;

@compute @workgroup_size(8, 4)
fn mm_texel(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tr = p.tri_r0 + wid.y * 128u;
  let tc = p.tri_c0 + wid.x * 128u;
  let tri = tri_mode();
  if ((tri == 1u && tc + 128u <= tr) || (tri == 2u && tc >= tr + 128u)) {
    return; // uniform per workgroup
  }
  let m = wid.y * 128u + lid.y * 32u;
  let n = wid.x * 128u + lid.x * 16u;
  var c0_0 = vec4<f32>(); var c0_1 = vec4<f32>(); var c0_2 = vec4<f32>(); var c0_3 = vec4<f32>();
  var c1_0 = vec4<f32>(); var c1_1 = vec4<f32>(); var c1_2 = vec4<f32>(); var c1_3 = vec4<f32>();
  var c2_0 = vec4<f32>(); var c2_1 = vec4<f32>(); var c2_2 = vec4<f32>(); var c2_3 = vec4<f32>();
  var c3_0 = vec4<f32>(); var c3_1 = vec4<f32>(); var c3_2 = vec4<f32>(); var c3_3 = vec4<f32>();
  var c4_0 = vec4<f32>(); var c4_1 = vec4<f32>(); var c4_2 = vec4<f32>(); var c4_3 = vec4<f32>();
  var c5_0 = vec4<f32>(); var c5_1 = vec4<f32>(); var c5_2 = vec4<f32>(); var c5_3 = vec4<f32>();
  var c6_0 = vec4<f32>(); var c6_1 = vec4<f32>(); var c6_2 = vec4<f32>(); var c6_3 = vec4<f32>();
  var c7_0 = vec4<f32>(); var c7_1 = vec4<f32>(); var c7_2 = vec4<f32>(); var c7_3 = vec4<f32>();
  var c8_0 = vec4<f32>(); var c8_1 = vec4<f32>(); var c8_2 = vec4<f32>(); var c8_3 = vec4<f32>();
  var c9_0 = vec4<f32>(); var c9_1 = vec4<f32>(); var c9_2 = vec4<f32>(); var c9_3 = vec4<f32>();
  var c10_0 = vec4<f32>(); var c10_1 = vec4<f32>(); var c10_2 = vec4<f32>(); var c10_3 = vec4<f32>();
  var c11_0 = vec4<f32>(); var c11_1 = vec4<f32>(); var c11_2 = vec4<f32>(); var c11_3 = vec4<f32>();
  var c12_0 = vec4<f32>(); var c12_1 = vec4<f32>(); var c12_2 = vec4<f32>(); var c12_3 = vec4<f32>();
  var c13_0 = vec4<f32>(); var c13_1 = vec4<f32>(); var c13_2 = vec4<f32>(); var c13_3 = vec4<f32>();
  var c14_0 = vec4<f32>(); var c14_1 = vec4<f32>(); var c14_2 = vec4<f32>(); var c14_3 = vec4<f32>();
  var c15_0 = vec4<f32>(); var c15_1 = vec4<f32>(); var c15_2 = vec4<f32>(); var c15_3 = vec4<f32>();
  var c16_0 = vec4<f32>(); var c16_1 = vec4<f32>(); var c16_2 = vec4<f32>(); var c16_3 = vec4<f32>();
  var c17_0 = vec4<f32>(); var c17_1 = vec4<f32>(); var c17_2 = vec4<f32>(); var c17_3 = vec4<f32>();
  var c18_0 = vec4<f32>(); var c18_1 = vec4<f32>(); var c18_2 = vec4<f32>(); var c18_3 = vec4<f32>();
  var c19_0 = vec4<f32>(); var c19_1 = vec4<f32>(); var c19_2 = vec4<f32>(); var c19_3 = vec4<f32>();
  var c20_0 = vec4<f32>(); var c20_1 = vec4<f32>(); var c20_2 = vec4<f32>(); var c20_3 = vec4<f32>();
  var c21_0 = vec4<f32>(); var c21_1 = vec4<f32>(); var c21_2 = vec4<f32>(); var c21_3 = vec4<f32>();
  var c22_0 = vec4<f32>(); var c22_1 = vec4<f32>(); var c22_2 = vec4<f32>(); var c22_3 = vec4<f32>();
  var c23_0 = vec4<f32>(); var c23_1 = vec4<f32>(); var c23_2 = vec4<f32>(); var c23_3 = vec4<f32>();
  var c24_0 = vec4<f32>(); var c24_1 = vec4<f32>(); var c24_2 = vec4<f32>(); var c24_3 = vec4<f32>();
  var c25_0 = vec4<f32>(); var c25_1 = vec4<f32>(); var c25_2 = vec4<f32>(); var c25_3 = vec4<f32>();
  var c26_0 = vec4<f32>(); var c26_1 = vec4<f32>(); var c26_2 = vec4<f32>(); var c26_3 = vec4<f32>();
  var c27_0 = vec4<f32>(); var c27_1 = vec4<f32>(); var c27_2 = vec4<f32>(); var c27_3 = vec4<f32>();
  var c28_0 = vec4<f32>(); var c28_1 = vec4<f32>(); var c28_2 = vec4<f32>(); var c28_3 = vec4<f32>();
  var c29_0 = vec4<f32>(); var c29_1 = vec4<f32>(); var c29_2 = vec4<f32>(); var c29_3 = vec4<f32>();
  var c30_0 = vec4<f32>(); var c30_1 = vec4<f32>(); var c30_2 = vec4<f32>(); var c30_3 = vec4<f32>();
  var c31_0 = vec4<f32>(); var c31_1 = vec4<f32>(); var c31_2 = vec4<f32>(); var c31_3 = vec4<f32>();
  let nx = i32(n / 4u);
  let my = i32(m);
  let gx = i32((p.a_off + m) / 4u);
  for (var k = 0u; k < p.k; k += 4u) {
    let ky = i32(k);
    let b0_0 = textureLoad(Bt, vec2<i32>(nx + 0, ky + 0));
    let b1_0 = textureLoad(Bt, vec2<i32>(nx + 0, ky + 1));
    let b2_0 = textureLoad(Bt, vec2<i32>(nx + 0, ky + 2));
    let b3_0 = textureLoad(Bt, vec2<i32>(nx + 0, ky + 3));
    let b0_1 = textureLoad(Bt, vec2<i32>(nx + 1, ky + 0));
    let b1_1 = textureLoad(Bt, vec2<i32>(nx + 1, ky + 1));
    let b2_1 = textureLoad(Bt, vec2<i32>(nx + 1, ky + 2));
    let b3_1 = textureLoad(Bt, vec2<i32>(nx + 1, ky + 3));
    let b0_2 = textureLoad(Bt, vec2<i32>(nx + 2, ky + 0));
    let b1_2 = textureLoad(Bt, vec2<i32>(nx + 2, ky + 1));
    let b2_2 = textureLoad(Bt, vec2<i32>(nx + 2, ky + 2));
    let b3_2 = textureLoad(Bt, vec2<i32>(nx + 2, ky + 3));
    let b0_3 = textureLoad(Bt, vec2<i32>(nx + 3, ky + 0));
    let b1_3 = textureLoad(Bt, vec2<i32>(nx + 3, ky + 1));
    let b2_3 = textureLoad(Bt, vec2<i32>(nx + 3, ky + 2));
    let b3_3 = textureLoad(Bt, vec2<i32>(nx + 3, ky + 3));
    let kx = i32(k / 4u);
    var a0: vec4<f32>; var a1: vec4<f32>; var a2: vec4<f32>; var a3: vec4<f32>;
    if (GRAM) {
      let g0 = textureLoad(Bt, vec2<i32>(gx + 0, ky + 0));
      let g1 = textureLoad(Bt, vec2<i32>(gx + 0, ky + 1));
      let g2 = textureLoad(Bt, vec2<i32>(gx + 0, ky + 2));
      let g3 = textureLoad(Bt, vec2<i32>(gx + 0, ky + 3));
      a0 = vec4<f32>(g0[0], g1[0], g2[0], g3[0]);
      a1 = vec4<f32>(g0[1], g1[1], g2[1], g3[1]);
      a2 = vec4<f32>(g0[2], g1[2], g2[2], g3[2]);
      a3 = vec4<f32>(g0[3], g1[3], g2[3], g3[3]);
    } else {
      a0 = textureLoad(At, vec2<i32>(kx, my + 0));
      a1 = textureLoad(At, vec2<i32>(kx, my + 1));
      a2 = textureLoad(At, vec2<i32>(kx, my + 2));
      a3 = textureLoad(At, vec2<i32>(kx, my + 3));
    }
    c0_0 += b0_0 * a0.x + b1_0 * a0.y + b2_0 * a0.z + b3_0 * a0.w;
    c0_1 += b0_1 * a0.x + b1_1 * a0.y + b2_1 * a0.z + b3_1 * a0.w;
    c0_2 += b0_2 * a0.x + b1_2 * a0.y + b2_2 * a0.z + b3_2 * a0.w;
    c0_3 += b0_3 * a0.x + b1_3 * a0.y + b2_3 * a0.z + b3_3 * a0.w;
    c1_0 += b0_0 * a1.x + b1_0 * a1.y + b2_0 * a1.z + b3_0 * a1.w;
    c1_1 += b0_1 * a1.x + b1_1 * a1.y + b2_1 * a1.z + b3_1 * a1.w;
    c1_2 += b0_2 * a1.x + b1_2 * a1.y + b2_2 * a1.z + b3_2 * a1.w;
    c1_3 += b0_3 * a1.x + b1_3 * a1.y + b2_3 * a1.z + b3_3 * a1.w;
    c2_0 += b0_0 * a2.x + b1_0 * a2.y + b2_0 * a2.z + b3_0 * a2.w;
    c2_1 += b0_1 * a2.x + b1_1 * a2.y + b2_1 * a2.z + b3_1 * a2.w;
    c2_2 += b0_2 * a2.x + b1_2 * a2.y + b2_2 * a2.z + b3_2 * a2.w;
    c2_3 += b0_3 * a2.x + b1_3 * a2.y + b2_3 * a2.z + b3_3 * a2.w;
    c3_0 += b0_0 * a3.x + b1_0 * a3.y + b2_0 * a3.z + b3_0 * a3.w;
    c3_1 += b0_1 * a3.x + b1_1 * a3.y + b2_1 * a3.z + b3_1 * a3.w;
    c3_2 += b0_2 * a3.x + b1_2 * a3.y + b2_2 * a3.z + b3_2 * a3.w;
    c3_3 += b0_3 * a3.x + b1_3 * a3.y + b2_3 * a3.z + b3_3 * a3.w;
    var a4: vec4<f32>; var a5: vec4<f32>; var a6: vec4<f32>; var a7: vec4<f32>;
    if (GRAM) {
      let g0 = textureLoad(Bt, vec2<i32>(gx + 1, ky + 0));
      let g1 = textureLoad(Bt, vec2<i32>(gx + 1, ky + 1));
      let g2 = textureLoad(Bt, vec2<i32>(gx + 1, ky + 2));
      let g3 = textureLoad(Bt, vec2<i32>(gx + 1, ky + 3));
      a4 = vec4<f32>(g0[0], g1[0], g2[0], g3[0]);
      a5 = vec4<f32>(g0[1], g1[1], g2[1], g3[1]);
      a6 = vec4<f32>(g0[2], g1[2], g2[2], g3[2]);
      a7 = vec4<f32>(g0[3], g1[3], g2[3], g3[3]);
    } else {
      a4 = textureLoad(At, vec2<i32>(kx, my + 4));
      a5 = textureLoad(At, vec2<i32>(kx, my + 5));
      a6 = textureLoad(At, vec2<i32>(kx, my + 6));
      a7 = textureLoad(At, vec2<i32>(kx, my + 7));
    }
    c4_0 += b0_0 * a4.x + b1_0 * a4.y + b2_0 * a4.z + b3_0 * a4.w;
    c4_1 += b0_1 * a4.x + b1_1 * a4.y + b2_1 * a4.z + b3_1 * a4.w;
    c4_2 += b0_2 * a4.x + b1_2 * a4.y + b2_2 * a4.z + b3_2 * a4.w;
    c4_3 += b0_3 * a4.x + b1_3 * a4.y + b2_3 * a4.z + b3_3 * a4.w;
    c5_0 += b0_0 * a5.x + b1_0 * a5.y + b2_0 * a5.z + b3_0 * a5.w;
    c5_1 += b0_1 * a5.x + b1_1 * a5.y + b2_1 * a5.z + b3_1 * a5.w;
    c5_2 += b0_2 * a5.x + b1_2 * a5.y + b2_2 * a5.z + b3_2 * a5.w;
    c5_3 += b0_3 * a5.x + b1_3 * a5.y + b2_3 * a5.z + b3_3 * a5.w;
    c6_0 += b0_0 * a6.x + b1_0 * a6.y + b2_0 * a6.z + b3_0 * a6.w;
    c6_1 += b0_1 * a6.x + b1_1 * a6.y + b2_1 * a6.z + b3_1 * a6.w;
    c6_2 += b0_2 * a6.x + b1_2 * a6.y + b2_2 * a6.z + b3_2 * a6.w;
    c6_3 += b0_3 * a6.x + b1_3 * a6.y + b2_3 * a6.z + b3_3 * a6.w;
    c7_0 += b0_0 * a7.x + b1_0 * a7.y + b2_0 * a7.z + b3_0 * a7.w;
    c7_1 += b0_1 * a7.x + b1_1 * a7.y + b2_1 * a7.z + b3_1 * a7.w;
    c7_2 += b0_2 * a7.x + b1_2 * a7.y + b2_2 * a7.z + b3_2 * a7.w;
    c7_3 += b0_3 * a7.x + b1_3 * a7.y + b2_3 * a7.z + b3_3 * a7.w;
    var a8: vec4<f32>; var a9: vec4<f32>; var a10: vec4<f32>; var a11: vec4<f32>;
    if (GRAM) {
      let g0 = textureLoad(Bt, vec2<i32>(gx + 2, ky + 0));
      let g1 = textureLoad(Bt, vec2<i32>(gx + 2, ky + 1));
      let g2 = textureLoad(Bt, vec2<i32>(gx + 2, ky + 2));
      let g3 = textureLoad(Bt, vec2<i32>(gx + 2, ky + 3));
      a8 = vec4<f32>(g0[0], g1[0], g2[0], g3[0]);
      a9 = vec4<f32>(g0[1], g1[1], g2[1], g3[1]);
      a10 = vec4<f32>(g0[2], g1[2], g2[2], g3[2]);
      a11 = vec4<f32>(g0[3], g1[3], g2[3], g3[3]);
    } else {
      a8 = textureLoad(At, vec2<i32>(kx, my + 8));
      a9 = textureLoad(At, vec2<i32>(kx, my + 9));
      a10 = textureLoad(At, vec2<i32>(kx, my + 10));
      a11 = textureLoad(At, vec2<i32>(kx, my + 11));
    }
    c8_0 += b0_0 * a8.x + b1_0 * a8.y + b2_0 * a8.z + b3_0 * a8.w;
    c8_1 += b0_1 * a8.x + b1_1 * a8.y + b2_1 * a8.z + b3_1 * a8.w;
    c8_2 += b0_2 * a8.x + b1_2 * a8.y + b2_2 * a8.z + b3_2 * a8.w;
    c8_3 += b0_3 * a8.x + b1_3 * a8.y + b2_3 * a8.z + b3_3 * a8.w;
    c9_0 += b0_0 * a9.x + b1_0 * a9.y + b2_0 * a9.z + b3_0 * a9.w;
    c9_1 += b0_1 * a9.x + b1_1 * a9.y + b2_1 * a9.z + b3_1 * a9.w;
    c9_2 += b0_2 * a9.x + b1_2 * a9.y + b2_2 * a9.z + b3_2 * a9.w;
    c9_3 += b0_3 * a9.x + b1_3 * a9.y + b2_3 * a9.z + b3_3 * a9.w;
    c10_0 += b0_0 * a10.x + b1_0 * a10.y + b2_0 * a10.z + b3_0 * a10.w;
    c10_1 += b0_1 * a10.x + b1_1 * a10.y + b2_1 * a10.z + b3_1 * a10.w;
    c10_2 += b0_2 * a10.x + b1_2 * a10.y + b2_2 * a10.z + b3_2 * a10.w;
    c10_3 += b0_3 * a10.x + b1_3 * a10.y + b2_3 * a10.z + b3_3 * a10.w;
    c11_0 += b0_0 * a11.x + b1_0 * a11.y + b2_0 * a11.z + b3_0 * a11.w;
    c11_1 += b0_1 * a11.x + b1_1 * a11.y + b2_1 * a11.z + b3_1 * a11.w;
    c11_2 += b0_2 * a11.x + b1_2 * a11.y + b2_2 * a11.z + b3_2 * a11.w;
    c11_3 += b0_3 * a11.x + b1_3 * a11.y + b2_3 * a11.z + b3_3 * a11.w;
    var a12: vec4<f32>; var a13: vec4<f32>; var a14: vec4<f32>; var a15: vec4<f32>;
    if (GRAM) {
      let g0 = textureLoad(Bt, vec2<i32>(gx + 3, ky + 0));
      let g1 = textureLoad(Bt, vec2<i32>(gx + 3, ky + 1));
      let g2 = textureLoad(Bt, vec2<i32>(gx + 3, ky + 2));
      let g3 = textureLoad(Bt, vec2<i32>(gx + 3, ky + 3));
      a12 = vec4<f32>(g0[0], g1[0], g2[0], g3[0]);
      a13 = vec4<f32>(g0[1], g1[1], g2[1], g3[1]);
      a14 = vec4<f32>(g0[2], g1[2], g2[2], g3[2]);
      a15 = vec4<f32>(g0[3], g1[3], g2[3], g3[3]);
    } else {
      a12 = textureLoad(At, vec2<i32>(kx, my + 12));
      a13 = textureLoad(At, vec2<i32>(kx, my + 13));
      a14 = textureLoad(At, vec2<i32>(kx, my + 14));
      a15 = textureLoad(At, vec2<i32>(kx, my + 15));
    }
    c12_0 += b0_0 * a12.x + b1_0 * a12.y + b2_0 * a12.z + b3_0 * a12.w;
    c12_1 += b0_1 * a12.x + b1_1 * a12.y + b2_1 * a12.z + b3_1 * a12.w;
    c12_2 += b0_2 * a12.x + b1_2 * a12.y + b2_2 * a12.z + b3_2 * a12.w;
    c12_3 += b0_3 * a12.x + b1_3 * a12.y + b2_3 * a12.z + b3_3 * a12.w;
    c13_0 += b0_0 * a13.x + b1_0 * a13.y + b2_0 * a13.z + b3_0 * a13.w;
    c13_1 += b0_1 * a13.x + b1_1 * a13.y + b2_1 * a13.z + b3_1 * a13.w;
    c13_2 += b0_2 * a13.x + b1_2 * a13.y + b2_2 * a13.z + b3_2 * a13.w;
    c13_3 += b0_3 * a13.x + b1_3 * a13.y + b2_3 * a13.z + b3_3 * a13.w;
    c14_0 += b0_0 * a14.x + b1_0 * a14.y + b2_0 * a14.z + b3_0 * a14.w;
    c14_1 += b0_1 * a14.x + b1_1 * a14.y + b2_1 * a14.z + b3_1 * a14.w;
    c14_2 += b0_2 * a14.x + b1_2 * a14.y + b2_2 * a14.z + b3_2 * a14.w;
    c14_3 += b0_3 * a14.x + b1_3 * a14.y + b2_3 * a14.z + b3_3 * a14.w;
    c15_0 += b0_0 * a15.x + b1_0 * a15.y + b2_0 * a15.z + b3_0 * a15.w;
    c15_1 += b0_1 * a15.x + b1_1 * a15.y + b2_1 * a15.z + b3_1 * a15.w;
    c15_2 += b0_2 * a15.x + b1_2 * a15.y + b2_2 * a15.z + b3_2 * a15.w;
    c15_3 += b0_3 * a15.x + b1_3 * a15.y + b2_3 * a15.z + b3_3 * a15.w;
    var a16: vec4<f32>; var a17: vec4<f32>; var a18: vec4<f32>; var a19: vec4<f32>;
    if (GRAM) {
      let g0 = textureLoad(Bt, vec2<i32>(gx + 4, ky + 0));
      let g1 = textureLoad(Bt, vec2<i32>(gx + 4, ky + 1));
      let g2 = textureLoad(Bt, vec2<i32>(gx + 4, ky + 2));
      let g3 = textureLoad(Bt, vec2<i32>(gx + 4, ky + 3));
      a16 = vec4<f32>(g0[0], g1[0], g2[0], g3[0]);
      a17 = vec4<f32>(g0[1], g1[1], g2[1], g3[1]);
      a18 = vec4<f32>(g0[2], g1[2], g2[2], g3[2]);
      a19 = vec4<f32>(g0[3], g1[3], g2[3], g3[3]);
    } else {
      a16 = textureLoad(At, vec2<i32>(kx, my + 16));
      a17 = textureLoad(At, vec2<i32>(kx, my + 17));
      a18 = textureLoad(At, vec2<i32>(kx, my + 18));
      a19 = textureLoad(At, vec2<i32>(kx, my + 19));
    }
    c16_0 += b0_0 * a16.x + b1_0 * a16.y + b2_0 * a16.z + b3_0 * a16.w;
    c16_1 += b0_1 * a16.x + b1_1 * a16.y + b2_1 * a16.z + b3_1 * a16.w;
    c16_2 += b0_2 * a16.x + b1_2 * a16.y + b2_2 * a16.z + b3_2 * a16.w;
    c16_3 += b0_3 * a16.x + b1_3 * a16.y + b2_3 * a16.z + b3_3 * a16.w;
    c17_0 += b0_0 * a17.x + b1_0 * a17.y + b2_0 * a17.z + b3_0 * a17.w;
    c17_1 += b0_1 * a17.x + b1_1 * a17.y + b2_1 * a17.z + b3_1 * a17.w;
    c17_2 += b0_2 * a17.x + b1_2 * a17.y + b2_2 * a17.z + b3_2 * a17.w;
    c17_3 += b0_3 * a17.x + b1_3 * a17.y + b2_3 * a17.z + b3_3 * a17.w;
    c18_0 += b0_0 * a18.x + b1_0 * a18.y + b2_0 * a18.z + b3_0 * a18.w;
    c18_1 += b0_1 * a18.x + b1_1 * a18.y + b2_1 * a18.z + b3_1 * a18.w;
    c18_2 += b0_2 * a18.x + b1_2 * a18.y + b2_2 * a18.z + b3_2 * a18.w;
    c18_3 += b0_3 * a18.x + b1_3 * a18.y + b2_3 * a18.z + b3_3 * a18.w;
    c19_0 += b0_0 * a19.x + b1_0 * a19.y + b2_0 * a19.z + b3_0 * a19.w;
    c19_1 += b0_1 * a19.x + b1_1 * a19.y + b2_1 * a19.z + b3_1 * a19.w;
    c19_2 += b0_2 * a19.x + b1_2 * a19.y + b2_2 * a19.z + b3_2 * a19.w;
    c19_3 += b0_3 * a19.x + b1_3 * a19.y + b2_3 * a19.z + b3_3 * a19.w;
    var a20: vec4<f32>; var a21: vec4<f32>; var a22: vec4<f32>; var a23: vec4<f32>;
    if (GRAM) {
      let g0 = textureLoad(Bt, vec2<i32>(gx + 5, ky + 0));
      let g1 = textureLoad(Bt, vec2<i32>(gx + 5, ky + 1));
      let g2 = textureLoad(Bt, vec2<i32>(gx + 5, ky + 2));
      let g3 = textureLoad(Bt, vec2<i32>(gx + 5, ky + 3));
      a20 = vec4<f32>(g0[0], g1[0], g2[0], g3[0]);
      a21 = vec4<f32>(g0[1], g1[1], g2[1], g3[1]);
      a22 = vec4<f32>(g0[2], g1[2], g2[2], g3[2]);
      a23 = vec4<f32>(g0[3], g1[3], g2[3], g3[3]);
    } else {
      a20 = textureLoad(At, vec2<i32>(kx, my + 20));
      a21 = textureLoad(At, vec2<i32>(kx, my + 21));
      a22 = textureLoad(At, vec2<i32>(kx, my + 22));
      a23 = textureLoad(At, vec2<i32>(kx, my + 23));
    }
    c20_0 += b0_0 * a20.x + b1_0 * a20.y + b2_0 * a20.z + b3_0 * a20.w;
    c20_1 += b0_1 * a20.x + b1_1 * a20.y + b2_1 * a20.z + b3_1 * a20.w;
    c20_2 += b0_2 * a20.x + b1_2 * a20.y + b2_2 * a20.z + b3_2 * a20.w;
    c20_3 += b0_3 * a20.x + b1_3 * a20.y + b2_3 * a20.z + b3_3 * a20.w;
    c21_0 += b0_0 * a21.x + b1_0 * a21.y + b2_0 * a21.z + b3_0 * a21.w;
    c21_1 += b0_1 * a21.x + b1_1 * a21.y + b2_1 * a21.z + b3_1 * a21.w;
    c21_2 += b0_2 * a21.x + b1_2 * a21.y + b2_2 * a21.z + b3_2 * a21.w;
    c21_3 += b0_3 * a21.x + b1_3 * a21.y + b2_3 * a21.z + b3_3 * a21.w;
    c22_0 += b0_0 * a22.x + b1_0 * a22.y + b2_0 * a22.z + b3_0 * a22.w;
    c22_1 += b0_1 * a22.x + b1_1 * a22.y + b2_1 * a22.z + b3_1 * a22.w;
    c22_2 += b0_2 * a22.x + b1_2 * a22.y + b2_2 * a22.z + b3_2 * a22.w;
    c22_3 += b0_3 * a22.x + b1_3 * a22.y + b2_3 * a22.z + b3_3 * a22.w;
    c23_0 += b0_0 * a23.x + b1_0 * a23.y + b2_0 * a23.z + b3_0 * a23.w;
    c23_1 += b0_1 * a23.x + b1_1 * a23.y + b2_1 * a23.z + b3_1 * a23.w;
    c23_2 += b0_2 * a23.x + b1_2 * a23.y + b2_2 * a23.z + b3_2 * a23.w;
    c23_3 += b0_3 * a23.x + b1_3 * a23.y + b2_3 * a23.z + b3_3 * a23.w;
    var a24: vec4<f32>; var a25: vec4<f32>; var a26: vec4<f32>; var a27: vec4<f32>;
    if (GRAM) {
      let g0 = textureLoad(Bt, vec2<i32>(gx + 6, ky + 0));
      let g1 = textureLoad(Bt, vec2<i32>(gx + 6, ky + 1));
      let g2 = textureLoad(Bt, vec2<i32>(gx + 6, ky + 2));
      let g3 = textureLoad(Bt, vec2<i32>(gx + 6, ky + 3));
      a24 = vec4<f32>(g0[0], g1[0], g2[0], g3[0]);
      a25 = vec4<f32>(g0[1], g1[1], g2[1], g3[1]);
      a26 = vec4<f32>(g0[2], g1[2], g2[2], g3[2]);
      a27 = vec4<f32>(g0[3], g1[3], g2[3], g3[3]);
    } else {
      a24 = textureLoad(At, vec2<i32>(kx, my + 24));
      a25 = textureLoad(At, vec2<i32>(kx, my + 25));
      a26 = textureLoad(At, vec2<i32>(kx, my + 26));
      a27 = textureLoad(At, vec2<i32>(kx, my + 27));
    }
    c24_0 += b0_0 * a24.x + b1_0 * a24.y + b2_0 * a24.z + b3_0 * a24.w;
    c24_1 += b0_1 * a24.x + b1_1 * a24.y + b2_1 * a24.z + b3_1 * a24.w;
    c24_2 += b0_2 * a24.x + b1_2 * a24.y + b2_2 * a24.z + b3_2 * a24.w;
    c24_3 += b0_3 * a24.x + b1_3 * a24.y + b2_3 * a24.z + b3_3 * a24.w;
    c25_0 += b0_0 * a25.x + b1_0 * a25.y + b2_0 * a25.z + b3_0 * a25.w;
    c25_1 += b0_1 * a25.x + b1_1 * a25.y + b2_1 * a25.z + b3_1 * a25.w;
    c25_2 += b0_2 * a25.x + b1_2 * a25.y + b2_2 * a25.z + b3_2 * a25.w;
    c25_3 += b0_3 * a25.x + b1_3 * a25.y + b2_3 * a25.z + b3_3 * a25.w;
    c26_0 += b0_0 * a26.x + b1_0 * a26.y + b2_0 * a26.z + b3_0 * a26.w;
    c26_1 += b0_1 * a26.x + b1_1 * a26.y + b2_1 * a26.z + b3_1 * a26.w;
    c26_2 += b0_2 * a26.x + b1_2 * a26.y + b2_2 * a26.z + b3_2 * a26.w;
    c26_3 += b0_3 * a26.x + b1_3 * a26.y + b2_3 * a26.z + b3_3 * a26.w;
    c27_0 += b0_0 * a27.x + b1_0 * a27.y + b2_0 * a27.z + b3_0 * a27.w;
    c27_1 += b0_1 * a27.x + b1_1 * a27.y + b2_1 * a27.z + b3_1 * a27.w;
    c27_2 += b0_2 * a27.x + b1_2 * a27.y + b2_2 * a27.z + b3_2 * a27.w;
    c27_3 += b0_3 * a27.x + b1_3 * a27.y + b2_3 * a27.z + b3_3 * a27.w;
    var a28: vec4<f32>; var a29: vec4<f32>; var a30: vec4<f32>; var a31: vec4<f32>;
    if (GRAM) {
      let g0 = textureLoad(Bt, vec2<i32>(gx + 7, ky + 0));
      let g1 = textureLoad(Bt, vec2<i32>(gx + 7, ky + 1));
      let g2 = textureLoad(Bt, vec2<i32>(gx + 7, ky + 2));
      let g3 = textureLoad(Bt, vec2<i32>(gx + 7, ky + 3));
      a28 = vec4<f32>(g0[0], g1[0], g2[0], g3[0]);
      a29 = vec4<f32>(g0[1], g1[1], g2[1], g3[1]);
      a30 = vec4<f32>(g0[2], g1[2], g2[2], g3[2]);
      a31 = vec4<f32>(g0[3], g1[3], g2[3], g3[3]);
    } else {
      a28 = textureLoad(At, vec2<i32>(kx, my + 28));
      a29 = textureLoad(At, vec2<i32>(kx, my + 29));
      a30 = textureLoad(At, vec2<i32>(kx, my + 30));
      a31 = textureLoad(At, vec2<i32>(kx, my + 31));
    }
    c28_0 += b0_0 * a28.x + b1_0 * a28.y + b2_0 * a28.z + b3_0 * a28.w;
    c28_1 += b0_1 * a28.x + b1_1 * a28.y + b2_1 * a28.z + b3_1 * a28.w;
    c28_2 += b0_2 * a28.x + b1_2 * a28.y + b2_2 * a28.z + b3_2 * a28.w;
    c28_3 += b0_3 * a28.x + b1_3 * a28.y + b2_3 * a28.z + b3_3 * a28.w;
    c29_0 += b0_0 * a29.x + b1_0 * a29.y + b2_0 * a29.z + b3_0 * a29.w;
    c29_1 += b0_1 * a29.x + b1_1 * a29.y + b2_1 * a29.z + b3_1 * a29.w;
    c29_2 += b0_2 * a29.x + b1_2 * a29.y + b2_2 * a29.z + b3_2 * a29.w;
    c29_3 += b0_3 * a29.x + b1_3 * a29.y + b2_3 * a29.z + b3_3 * a29.w;
    c30_0 += b0_0 * a30.x + b1_0 * a30.y + b2_0 * a30.z + b3_0 * a30.w;
    c30_1 += b0_1 * a30.x + b1_1 * a30.y + b2_1 * a30.z + b3_1 * a30.w;
    c30_2 += b0_2 * a30.x + b1_2 * a30.y + b2_2 * a30.z + b3_2 * a30.w;
    c30_3 += b0_3 * a30.x + b1_3 * a30.y + b2_3 * a30.z + b3_3 * a30.w;
    c31_0 += b0_0 * a31.x + b1_0 * a31.y + b2_0 * a31.z + b3_0 * a31.w;
    c31_1 += b0_1 * a31.x + b1_1 * a31.y + b2_1 * a31.z + b3_1 * a31.w;
    c31_2 += b0_2 * a31.x + b1_2 * a31.y + b2_2 * a31.z + b3_2 * a31.w;
    c31_3 += b0_3 * a31.x + b1_3 * a31.y + b2_3 * a31.z + b3_3 * a31.w;
  }
  let cbase = p.c_off + wid.z * p.c_bs;
  // one store_texel call site for the whole tile: block t (rows 4·(t / 4) …, quad t % 4) is picked by a switch
  for (var t = 0u; t < valid_block_rows(m, 8u) * 4u; t++) {
    var blk: mat4x4<f32>;
    switch t {
      case 0u: { blk = mat4x4<f32>(c0_0, c1_0, c2_0, c3_0); }
      case 1u: { blk = mat4x4<f32>(c0_1, c1_1, c2_1, c3_1); }
      case 2u: { blk = mat4x4<f32>(c0_2, c1_2, c2_2, c3_2); }
      case 3u: { blk = mat4x4<f32>(c0_3, c1_3, c2_3, c3_3); }
      case 4u: { blk = mat4x4<f32>(c4_0, c5_0, c6_0, c7_0); }
      case 5u: { blk = mat4x4<f32>(c4_1, c5_1, c6_1, c7_1); }
      case 6u: { blk = mat4x4<f32>(c4_2, c5_2, c6_2, c7_2); }
      case 7u: { blk = mat4x4<f32>(c4_3, c5_3, c6_3, c7_3); }
      case 8u: { blk = mat4x4<f32>(c8_0, c9_0, c10_0, c11_0); }
      case 9u: { blk = mat4x4<f32>(c8_1, c9_1, c10_1, c11_1); }
      case 10u: { blk = mat4x4<f32>(c8_2, c9_2, c10_2, c11_2); }
      case 11u: { blk = mat4x4<f32>(c8_3, c9_3, c10_3, c11_3); }
      case 12u: { blk = mat4x4<f32>(c12_0, c13_0, c14_0, c15_0); }
      case 13u: { blk = mat4x4<f32>(c12_1, c13_1, c14_1, c15_1); }
      case 14u: { blk = mat4x4<f32>(c12_2, c13_2, c14_2, c15_2); }
      case 15u: { blk = mat4x4<f32>(c12_3, c13_3, c14_3, c15_3); }
      case 16u: { blk = mat4x4<f32>(c16_0, c17_0, c18_0, c19_0); }
      case 17u: { blk = mat4x4<f32>(c16_1, c17_1, c18_1, c19_1); }
      case 18u: { blk = mat4x4<f32>(c16_2, c17_2, c18_2, c19_2); }
      case 19u: { blk = mat4x4<f32>(c16_3, c17_3, c18_3, c19_3); }
      case 20u: { blk = mat4x4<f32>(c20_0, c21_0, c22_0, c23_0); }
      case 21u: { blk = mat4x4<f32>(c20_1, c21_1, c22_1, c23_1); }
      case 22u: { blk = mat4x4<f32>(c20_2, c21_2, c22_2, c23_2); }
      case 23u: { blk = mat4x4<f32>(c20_3, c21_3, c22_3, c23_3); }
      case 24u: { blk = mat4x4<f32>(c24_0, c25_0, c26_0, c27_0); }
      case 25u: { blk = mat4x4<f32>(c24_1, c25_1, c26_1, c27_1); }
      case 26u: { blk = mat4x4<f32>(c24_2, c25_2, c26_2, c27_2); }
      case 27u: { blk = mat4x4<f32>(c24_3, c25_3, c26_3, c27_3); }
      case 28u: { blk = mat4x4<f32>(c28_0, c29_0, c30_0, c31_0); }
      case 29u: { blk = mat4x4<f32>(c28_1, c29_1, c30_1, c31_1); }
      case 30u: { blk = mat4x4<f32>(c28_2, c29_2, c30_2, c31_2); }
      default: { blk = mat4x4<f32>(c28_3, c29_3, c30_3, c31_3); }
    }
    store_texel(cbase, m + 4u * (t / 4u), n + 4u * (t % 4u), blk);
  }
}

// ---- skinny kernel for few rows -----------------------------------------------------------------------

// Each thread owns a 4×16 block of C; workgroup 32×1 threads covers 4 rows × 512 columns. With few rows
// a 128-row tile would compute mostly discarded rows; here op(B) (usually a weight) is read once per 4
// rows of C. Dispatch (ceil(n/512), ceil(m/4), batch).
@compute @workgroup_size(32, 1)
fn mm_skinny(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let abase = p.a_off + wid.z * p.a_bs;
  let bbase = p.b_off + wid.z * p.b_bs;
  let m = wid.y * 4u;
  let n = wid.x * 512u + lid.x * 16u;
  var c0 = mat4x4<f32>();
  var c1 = mat4x4<f32>();
  var c2 = mat4x4<f32>();
  var c3 = mat4x4<f32>();
  for (var k = 0u; k < p.k; k += 4u) {
    let a = a_blk_masked(abase, m, k);
    c0 += b_blk_masked(bbase, k, n) * a;
    c1 += b_blk_masked(bbase, k, n + 4u) * a;
    c2 += b_blk_masked(bbase, k, n + 8u) * a;
    c3 += b_blk_masked(bbase, k, n + 12u) * a;
  }
  let cbase = p.c_off + wid.z * p.c_bs;
  // one store_blk call site for the whole tile: block t is picked by a switch
  for (var t = 0u; t < valid_block_rows(m, 1u) * 4u; t++) {
    var blk: mat4x4<f32>;
    switch t {
      case 0u: { blk = c0; }
      case 1u: { blk = c1; }
      case 2u: { blk = c2; }
      default: { blk = c3; }
    }
    store_blk(cbase, m + 4u * (t / 4u), n + 4u * (t % 4u), blk);
  }
}

// ---- workgroup-memory tiled kernel ----------------------------------------------------------------------

// K-tile of 16: As[r * 4 + q] = A[m0+r][k0+4q .. k0+4q+3] (128 rows), Bs[kk * 32 + j] = B[k0+kk][n0+4j ..]
// (16 rows of 128 columns). 2 × 8 KiB of workgroup memory.
var<workgroup> As: array<vec4<f32>, 512>;
var<workgroup> Bs: array<vec4<f32>, 512>;

fn tile_a(r: u32, q: u32) -> mat4x4<f32> {
  // column t = As row r+t at k-quad q
  return mat4x4<f32>(As[r * 4u + q], As[(r + 1u) * 4u + q], As[(r + 2u) * 4u + q], As[(r + 3u) * 4u + q]);
}

fn tile_b(q: u32, j: u32) -> mat4x4<f32> {
  // column l = Bs row 4q+l at column quad j
  let r = q * 128u + j;
  return mat4x4<f32>(Bs[r], Bs[r + 32u], Bs[r + 64u], Bs[r + 96u]);
}

@compute @workgroup_size(8, 8)
fn mm_tiled(
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(local_invocation_id) lid: vec3<u32>,
  @builtin(local_invocation_index) li: u32,
) {
  let abase = p.a_off + wid.z * p.a_bs;
  let bbase = p.b_off + wid.z * p.b_bs;
  let m0 = wid.y * 128u;
  let n0 = wid.x * 128u;
  let tr = lid.y * 16u; // this thread's rows (tile-local)
  let tq = lid.x * 4u; // this thread's first column quad (tile-local)
  var c00 = mat4x4<f32>();
  var c01 = mat4x4<f32>();
  var c02 = mat4x4<f32>();
  var c03 = mat4x4<f32>();
  var c10 = mat4x4<f32>();
  var c11 = mat4x4<f32>();
  var c12 = mat4x4<f32>();
  var c13 = mat4x4<f32>();
  var c20 = mat4x4<f32>();
  var c21 = mat4x4<f32>();
  var c22 = mat4x4<f32>();
  var c23 = mat4x4<f32>();
  var c30 = mat4x4<f32>();
  var c31 = mat4x4<f32>();
  var c32 = mat4x4<f32>();
  var c33 = mat4x4<f32>();
  for (var k0 = 0u; k0 < p.k; k0 += 16u) {
    // stage: 128 A blocks (32 row blocks × 4 k-quads) and 128 B blocks (4 k-quads × 32 column quads),
    // two of each per thread
    for (var e = li; e < 128u; e += 64u) {
      let rb = e / 4u;
      let q = e % 4u;
      let a = a_blk_masked(abase, m0 + rb * 4u, k0 + q * 4u);
      As[(rb * 4u) * 4u + q] = a[0];
      As[(rb * 4u + 1u) * 4u + q] = a[1];
      As[(rb * 4u + 2u) * 4u + q] = a[2];
      As[(rb * 4u + 3u) * 4u + q] = a[3];
      let bq = e / 32u;
      let j = e % 32u;
      let b = b_blk_masked(bbase, k0 + bq * 4u, n0 + j * 4u);
      Bs[(bq * 4u) * 32u + j] = b[0];
      Bs[(bq * 4u + 1u) * 32u + j] = b[1];
      Bs[(bq * 4u + 2u) * 32u + j] = b[2];
      Bs[(bq * 4u + 3u) * 32u + j] = b[3];
    }
    workgroupBarrier();
    for (var q = 0u; q < 4u; q++) {
      let a0 = tile_a(tr, q);
      let a1 = tile_a(tr + 4u, q);
      let a2 = tile_a(tr + 8u, q);
      let a3 = tile_a(tr + 12u, q);
      let b0 = tile_b(q, tq);
      let b1 = tile_b(q, tq + 1u);
      let b2 = tile_b(q, tq + 2u);
      let b3 = tile_b(q, tq + 3u);
      c00 += b0 * a0;
      c01 += b1 * a0;
      c02 += b2 * a0;
      c03 += b3 * a0;
      c10 += b0 * a1;
      c11 += b1 * a1;
      c12 += b2 * a1;
      c13 += b3 * a1;
      c20 += b0 * a2;
      c21 += b1 * a2;
      c22 += b2 * a2;
      c23 += b3 * a2;
      c30 += b0 * a3;
      c31 += b1 * a3;
      c32 += b2 * a3;
      c33 += b3 * a3;
    }
    workgroupBarrier();
  }
  let m = m0 + tr;
  let n = n0 + tq * 4u;
  let cbase = p.c_off + wid.z * p.c_bs;
  // one store_blk call site for the whole tile: block t is picked by a switch
  for (var t = 0u; t < valid_block_rows(m, 4u) * 4u; t++) {
    var blk: mat4x4<f32>;
    switch t {
      case 0u: { blk = c00; }
      case 1u: { blk = c01; }
      case 2u: { blk = c02; }
      case 3u: { blk = c03; }
      case 4u: { blk = c10; }
      case 5u: { blk = c11; }
      case 6u: { blk = c12; }
      case 7u: { blk = c13; }
      case 8u: { blk = c20; }
      case 9u: { blk = c21; }
      case 10u: { blk = c22; }
      case 11u: { blk = c23; }
      case 12u: { blk = c30; }
      case 13u: { blk = c31; }
      case 14u: { blk = c32; }
      default: { blk = c33; }
    }
    store_blk(cbase, m + 4u * (t / 4u), n + 4u * (t % 4u), blk);
  }
}

// ---- naive baseline ----------------------------------------------------------------------------------

@compute @workgroup_size(16, 16)
fn mm_naive(@builtin(global_invocation_id) g: vec3<u32>) {
  let n = g.x;
  let m = g.y;
  if (m >= p.m || n >= p.n) {
    return;
  }
  let abase = p.a_off + g.z * p.a_bs;
  let bbase = p.b_off + g.z * p.b_bs;
  var acc = 0.0;
  for (var k = 0u; k < p.k; k++) {
    var a: f32;
    var b: f32;
    if (TRANS_A) {
      a = f32(A[abase + k * p.lda + m]);
    } else {
      a = f32(A[abase + m * p.lda + k]);
    }
    if (TRANS_B) {
      b = f32(B[bbase + n * p.ldb + k]);
    } else {
      b = f32(B[bbase + k * p.ldb + n]);
    }
    acc += a * b;
  }
  finish(p.c_off + g.z * p.c_bs, m, n, acc);
}

@compute @workgroup_size(16, 16)
fn mm_reduce(@builtin(global_invocation_id) g: vec3<u32>) {
  let n = g.x;
  let m = g.y;
  if (m >= p.m || n >= p.n) {
    return;
  }
  var acc = 0.0;
  for (var s = 0u; s < p.k; s++) {
    acc += f32(A[p.a_off + s * p.a_bs + m * p.lda + n]);
  }
  finish(p.c_off, m, n, acc);
}

// ---- few rows, every row in one invocation (CPU adapters) ----------------------------------------------

// mm_rows: each thread owns up to 64 rows (ROWB blocks of 4) × up to 16 columns (COLB blocks of 4) of C, so
// every element of op(B) (usually a weight: the LM head's E) is read by one thread only, once per row
// group, and feeds 4·ROWB FMAs. op(A) comes packed by mm_pack into the texture At (op(A) as [m, k/4]
// texels, zeros past k): the rows a thread reads are the same for all its SIMD lanes, and a texel fetch is
// cheap on lavapipe where a storage read is a per-lane loop. op(B) is read from storage (each element
// once: packing it would cost that read too). Workgroup 8×1 (one SIMD group) covers 4·ROWB rows ×
// 32·COLB columns; dispatch (ceil(n/(32·COLB)), ceil(m/(4·ROWB)), batch), batch z reading At from
// element column a_off + z·a_bs and B from b_off + z·b_bs (the host splits long K into slices this way,
// see lib/ops/matmul_rows.ts). p.k is this slice's K. Blocks past ROWB / COLB are removed at pipeline
// creation (override constants), so one source serves every row count.
// With B_TEX, op(B) is read from the texture Bt instead (a weight packed once for many products, see
// lib/ops/matmul_frozen.ts): slice z's rows at texel columns b_off + z·b_bs …, texture row = K index in the
// slice, zero rows past its K.
override B_TEX: bool = false;
override ROWB: u32 = 8u;
// 4-column blocks per thread (1, 2 or 4)
override COLB: u32 = 4u;

@compute @workgroup_size(8, 1)
fn mm_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let n = wid.x * (32u * COLB) + lid.x * (4u * COLB);
  if (n >= p.n) {
    return; // no barriers below: lanes past the last column leave at once
  }
  let ak = p.a_off + wid.z * p.a_bs; // first K element of this slice in At
  let bbase = p.b_off + wid.z * p.b_bs;
  let m = wid.y * (4u * ROWB);
  var c0_0 = mat4x4<f32>();
  var c0_1 = mat4x4<f32>();
  var c0_2 = mat4x4<f32>();
  var c0_3 = mat4x4<f32>();
  var c1_0 = mat4x4<f32>();
  var c1_1 = mat4x4<f32>();
  var c1_2 = mat4x4<f32>();
  var c1_3 = mat4x4<f32>();
  var c2_0 = mat4x4<f32>();
  var c2_1 = mat4x4<f32>();
  var c2_2 = mat4x4<f32>();
  var c2_3 = mat4x4<f32>();
  var c3_0 = mat4x4<f32>();
  var c3_1 = mat4x4<f32>();
  var c3_2 = mat4x4<f32>();
  var c3_3 = mat4x4<f32>();
  var c4_0 = mat4x4<f32>();
  var c4_1 = mat4x4<f32>();
  var c4_2 = mat4x4<f32>();
  var c4_3 = mat4x4<f32>();
  var c5_0 = mat4x4<f32>();
  var c5_1 = mat4x4<f32>();
  var c5_2 = mat4x4<f32>();
  var c5_3 = mat4x4<f32>();
  var c6_0 = mat4x4<f32>();
  var c6_1 = mat4x4<f32>();
  var c6_2 = mat4x4<f32>();
  var c6_3 = mat4x4<f32>();
  var c7_0 = mat4x4<f32>();
  var c7_1 = mat4x4<f32>();
  var c7_2 = mat4x4<f32>();
  var c7_3 = mat4x4<f32>();
  var c8_0 = mat4x4<f32>();
  var c8_1 = mat4x4<f32>();
  var c8_2 = mat4x4<f32>();
  var c8_3 = mat4x4<f32>();
  var c9_0 = mat4x4<f32>();
  var c9_1 = mat4x4<f32>();
  var c9_2 = mat4x4<f32>();
  var c9_3 = mat4x4<f32>();
  var c10_0 = mat4x4<f32>();
  var c10_1 = mat4x4<f32>();
  var c10_2 = mat4x4<f32>();
  var c10_3 = mat4x4<f32>();
  var c11_0 = mat4x4<f32>();
  var c11_1 = mat4x4<f32>();
  var c11_2 = mat4x4<f32>();
  var c11_3 = mat4x4<f32>();
  var c12_0 = mat4x4<f32>();
  var c12_1 = mat4x4<f32>();
  var c12_2 = mat4x4<f32>();
  var c12_3 = mat4x4<f32>();
  var c13_0 = mat4x4<f32>();
  var c13_1 = mat4x4<f32>();
  var c13_2 = mat4x4<f32>();
  var c13_3 = mat4x4<f32>();
  var c14_0 = mat4x4<f32>();
  var c14_1 = mat4x4<f32>();
  var c14_2 = mat4x4<f32>();
  var c14_3 = mat4x4<f32>();
  var c15_0 = mat4x4<f32>();
  var c15_1 = mat4x4<f32>();
  var c15_2 = mat4x4<f32>();
  var c15_3 = mat4x4<f32>();
  let kmain = p.k & ~3u;
  for (var k = 0u; k < p.k; k += 4u) {
    var b0: mat4x4<f32>;
    var b1: mat4x4<f32>;
    var b2: mat4x4<f32>;
    var b3: mat4x4<f32>;
    if (B_TEX) {
      let x0 = p.b_off + wid.z * p.b_bs;
      b0 = b_tex(x0, k, n);
      if (COLB > 1u) {
        b1 = b_tex(x0, k, n + 4u);
      }
      if (COLB > 2u) {
        b2 = b_tex(x0, k, n + 8u);
        b3 = b_tex(x0, k, n + 12u);
      }
    } else if (k >= kmain) {
      // the last, partial K quad (At holds zeros there)
      b0 = b_blk_masked(bbase, k, n);
      if (COLB > 1u) {
        b1 = b_blk_masked(bbase, k, n + 4u);
      }
      if (COLB > 2u) {
        b2 = b_blk_masked(bbase, k, n + 8u);
        b3 = b_blk_masked(bbase, k, n + 12u);
      }
    } else {
      b0 = b_blk(bbase, k, n);
      if (COLB > 1u) {
        b1 = b_blk(bbase, k, n + 4u);
      }
      if (COLB > 2u) {
        b2 = b_blk(bbase, k, n + 8u);
        b3 = b_blk(bbase, k, n + 12u);
      }
    }
    let ka = ak + k;
    let a0 = a_tex(m + 0u, ka);
    c0_0 += b0 * a0;
    if (COLB > 1u) {
      c0_1 += b1 * a0;
    }
    if (COLB > 2u) {
      c0_2 += b2 * a0;
      c0_3 += b3 * a0;
    }
    if (ROWB > 1u) {
      let a1 = a_tex(m + 4u, ka);
      c1_0 += b0 * a1;
      if (COLB > 1u) {
        c1_1 += b1 * a1;
      }
      if (COLB > 2u) {
        c1_2 += b2 * a1;
        c1_3 += b3 * a1;
      }
    }
    if (ROWB > 2u) {
      let a2 = a_tex(m + 8u, ka);
      c2_0 += b0 * a2;
      if (COLB > 1u) {
        c2_1 += b1 * a2;
      }
      if (COLB > 2u) {
        c2_2 += b2 * a2;
        c2_3 += b3 * a2;
      }
    }
    if (ROWB > 3u) {
      let a3 = a_tex(m + 12u, ka);
      c3_0 += b0 * a3;
      if (COLB > 1u) {
        c3_1 += b1 * a3;
      }
      if (COLB > 2u) {
        c3_2 += b2 * a3;
        c3_3 += b3 * a3;
      }
    }
    if (ROWB > 4u) {
      let a4 = a_tex(m + 16u, ka);
      c4_0 += b0 * a4;
      if (COLB > 1u) {
        c4_1 += b1 * a4;
      }
      if (COLB > 2u) {
        c4_2 += b2 * a4;
        c4_3 += b3 * a4;
      }
    }
    if (ROWB > 5u) {
      let a5 = a_tex(m + 20u, ka);
      c5_0 += b0 * a5;
      if (COLB > 1u) {
        c5_1 += b1 * a5;
      }
      if (COLB > 2u) {
        c5_2 += b2 * a5;
        c5_3 += b3 * a5;
      }
    }
    if (ROWB > 6u) {
      let a6 = a_tex(m + 24u, ka);
      c6_0 += b0 * a6;
      if (COLB > 1u) {
        c6_1 += b1 * a6;
      }
      if (COLB > 2u) {
        c6_2 += b2 * a6;
        c6_3 += b3 * a6;
      }
    }
    if (ROWB > 7u) {
      let a7 = a_tex(m + 28u, ka);
      c7_0 += b0 * a7;
      if (COLB > 1u) {
        c7_1 += b1 * a7;
      }
      if (COLB > 2u) {
        c7_2 += b2 * a7;
        c7_3 += b3 * a7;
      }
    }
    if (ROWB > 8u) {
      let a8 = a_tex(m + 32u, ka);
      c8_0 += b0 * a8;
      if (COLB > 1u) {
        c8_1 += b1 * a8;
      }
      if (COLB > 2u) {
        c8_2 += b2 * a8;
        c8_3 += b3 * a8;
      }
    }
    if (ROWB > 9u) {
      let a9 = a_tex(m + 36u, ka);
      c9_0 += b0 * a9;
      if (COLB > 1u) {
        c9_1 += b1 * a9;
      }
      if (COLB > 2u) {
        c9_2 += b2 * a9;
        c9_3 += b3 * a9;
      }
    }
    if (ROWB > 10u) {
      let a10 = a_tex(m + 40u, ka);
      c10_0 += b0 * a10;
      if (COLB > 1u) {
        c10_1 += b1 * a10;
      }
      if (COLB > 2u) {
        c10_2 += b2 * a10;
        c10_3 += b3 * a10;
      }
    }
    if (ROWB > 11u) {
      let a11 = a_tex(m + 44u, ka);
      c11_0 += b0 * a11;
      if (COLB > 1u) {
        c11_1 += b1 * a11;
      }
      if (COLB > 2u) {
        c11_2 += b2 * a11;
        c11_3 += b3 * a11;
      }
    }
    if (ROWB > 12u) {
      let a12 = a_tex(m + 48u, ka);
      c12_0 += b0 * a12;
      if (COLB > 1u) {
        c12_1 += b1 * a12;
      }
      if (COLB > 2u) {
        c12_2 += b2 * a12;
        c12_3 += b3 * a12;
      }
    }
    if (ROWB > 13u) {
      let a13 = a_tex(m + 52u, ka);
      c13_0 += b0 * a13;
      if (COLB > 1u) {
        c13_1 += b1 * a13;
      }
      if (COLB > 2u) {
        c13_2 += b2 * a13;
        c13_3 += b3 * a13;
      }
    }
    if (ROWB > 14u) {
      let a14 = a_tex(m + 56u, ka);
      c14_0 += b0 * a14;
      if (COLB > 1u) {
        c14_1 += b1 * a14;
      }
      if (COLB > 2u) {
        c14_2 += b2 * a14;
        c14_3 += b3 * a14;
      }
    }
    if (ROWB > 15u) {
      let a15 = a_tex(m + 60u, ka);
      c15_0 += b0 * a15;
      if (COLB > 1u) {
        c15_1 += b1 * a15;
      }
      if (COLB > 2u) {
        c15_2 += b2 * a15;
        c15_3 += b3 * a15;
      }
    }
  }
  let cbase = p.c_off + wid.z * p.c_bs;
  // one store_blk call site for the whole tile: block t (rows 4·(t/4), columns 4·(t%4)) by a switch
  for (var t = 0u; t < valid_block_rows(m, ROWB) * 4u; t++) {
    if (t % 4u >= COLB) {
      continue;
    }
    var blk: mat4x4<f32>;
    switch t {
      case 0u: { blk = c0_0; }
      case 1u: { blk = c0_1; }
      case 2u: { blk = c0_2; }
      case 3u: { blk = c0_3; }
      case 4u: { blk = c1_0; }
      case 5u: { blk = c1_1; }
      case 6u: { blk = c1_2; }
      case 7u: { blk = c1_3; }
      case 8u: { blk = c2_0; }
      case 9u: { blk = c2_1; }
      case 10u: { blk = c2_2; }
      case 11u: { blk = c2_3; }
      case 12u: { blk = c3_0; }
      case 13u: { blk = c3_1; }
      case 14u: { blk = c3_2; }
      case 15u: { blk = c3_3; }
      case 16u: { blk = c4_0; }
      case 17u: { blk = c4_1; }
      case 18u: { blk = c4_2; }
      case 19u: { blk = c4_3; }
      case 20u: { blk = c5_0; }
      case 21u: { blk = c5_1; }
      case 22u: { blk = c5_2; }
      case 23u: { blk = c5_3; }
      case 24u: { blk = c6_0; }
      case 25u: { blk = c6_1; }
      case 26u: { blk = c6_2; }
      case 27u: { blk = c6_3; }
      case 28u: { blk = c7_0; }
      case 29u: { blk = c7_1; }
      case 30u: { blk = c7_2; }
      case 31u: { blk = c7_3; }
      case 32u: { blk = c8_0; }
      case 33u: { blk = c8_1; }
      case 34u: { blk = c8_2; }
      case 35u: { blk = c8_3; }
      case 36u: { blk = c9_0; }
      case 37u: { blk = c9_1; }
      case 38u: { blk = c9_2; }
      case 39u: { blk = c9_3; }
      case 40u: { blk = c10_0; }
      case 41u: { blk = c10_1; }
      case 42u: { blk = c10_2; }
      case 43u: { blk = c10_3; }
      case 44u: { blk = c11_0; }
      case 45u: { blk = c11_1; }
      case 46u: { blk = c11_2; }
      case 47u: { blk = c11_3; }
      case 48u: { blk = c12_0; }
      case 49u: { blk = c12_1; }
      case 50u: { blk = c12_2; }
      case 51u: { blk = c12_3; }
      case 52u: { blk = c13_0; }
      case 53u: { blk = c13_1; }
      case 54u: { blk = c13_2; }
      case 55u: { blk = c13_3; }
      case 56u: { blk = c14_0; }
      case 57u: { blk = c14_1; }
      case 58u: { blk = c14_2; }
      case 59u: { blk = c14_3; }
      case 60u: { blk = c15_0; }
      case 61u: { blk = c15_1; }
      case 62u: { blk = c15_2; }
      default: { blk = c15_3; }
    }
    store_blk(cbase, m + 4u * (t / 4u), n + 4u * (t % 4u), blk);
  }
}
