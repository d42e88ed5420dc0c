/**
 * The eigensolver and AlphaEdit's null-space projector at d = 1024 and 2048 (d_ff of the ../shared models
 * and twice that) on lavapipe, against the f64 host Jacobi reference (lib/ops/eigen_host.ts).
 *
 * A dense d = 1024 matrix takes about ten minutes on lavapipe (≈ 3d³ per sweep, ~10 sweeps; d = 2048 eight
 * times that), so the test matrices are symmetric with 4×4 blocks (2×2 at d = 2048, where one sweep is 8×
 * d = 1024's and a 2×2 block converges in one) on random index sets (every index in one
 * block, the blocks interleaved over the whole matrix): the GPU solver runs its full addressing, pairing,
 * skip criterion and convergence at size d (inside a block it iterates as on a dense matrix; pairs across
 * blocks have a_pq = 0 exactly and are skipped), while the f64 reference is the host Jacobi on each
 * block. The null space reuses the solver's decomposition (one solve per size). Eigenvalues span 1e-4 … 50 with some in AlphaEdit's refinement window around the threshold.
 * Checked: every eigenvalue within 64·eps·‖block‖ of the reference (the dense bound would be 4·d·eps·‖C‖), every eigenvector supported on its block
 * and equal to the reference vector (up to sign) within 1e-4, P's rank and the null-space property
 * ΔW·k ≈ 0 for preserved keys k (combinations of the eigenvectors above the threshold) with an edit that
 * writes (ΔW·K ≠ 0 for the edit keys).
 */
import assert from "node:assert/strict";
import { Tensor } from "../../lib/gpu/mod.ts";
import { symmetricEigen } from "../../lib/ops/eigen.ts";
import { eigenReference } from "../../lib/ops/eigen_host.ts";
import { nullSpaceOf } from "../../lib/edit/null_space.ts";
import { alphaEditAdj } from "../../lib/edit/memit_solve.ts";
import { randArray, rng, testGpu } from "../_util.ts";

interface BlockMatrix {
  d: number;
  /** The dense matrix (f32 values). */
  a: Float32Array;
  /** Index sets of the blocks. */
  blocks: number[][];
  /** Reference eigenpairs, all blocks together: value, block, vector on the block's indices. */
  pairs: { value: number; block: number; vec: Float64Array }[];
}

function blockMatrix(d: number, seed: number, size: number): BlockMatrix {
  const rand = rng(seed);
  const perm = [...Array(d).keys()];
  for (let i = d - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  const a = new Float32Array(d * d);
  const blocks: number[][] = [];
  const pairs: BlockMatrix["pairs"] = [];
  for (let b = 0; b * size < d; b++) {
    const idx = perm.slice(size * b, size * b + size);
    // B = Q diag(λ) Qᵀ with a random orthogonal Q (Gram–Schmidt of a random 4×4) and λ over decades
    const lam = Array.from({ length: size }, () => 10 ** (-4 + 5.7 * rand()));
    const q = randArray(size * size, seed * 1000 + b);
    for (let j = 0; j < size; j++) {
      for (let k = 0; k < j; k++) {
        let dot = 0;
        for (let i = 0; i < size; i++) dot += q[i * size + j] * q[i * size + k];
        for (let i = 0; i < size; i++) q[i * size + j] -= dot * q[i * size + k];
      }
      let n = 0;
      for (let i = 0; i < size; i++) n += q[i * size + j] ** 2;
      for (let i = 0; i < size; i++) q[i * size + j] /= Math.sqrt(n);
    }
    const blk = new Float32Array(size * size);
    for (let i = 0; i < size; i++) {
      for (let j = 0; j <= i; j++) {
        let s = 0;
        for (let k = 0; k < size; k++) s += q[i * size + k] * lam[k] * q[j * size + k];
        blk[i * size + j] = blk[j * size + i] = s;
      }
    }
    for (let i = 0; i < size; i++) for (let j = 0; j < size; j++) a[idx[i] * d + idx[j]] = blk[i * size + j];
    const ref = eigenReference(blk, size);
    for (let j = 0; j < size; j++) {
      pairs.push({
        value: ref.values[j],
        block: b,
        vec: Float64Array.from({ length: size }, (_, i) => ref.vectors[i * size + j]),
      });
    }
    blocks.push(idx);
  }
  pairs.sort((x, y) => x.value - y.value);
  return { d, a, blocks, pairs };
}

// KEG_TEST_EIGEN_D=128 runs the same checks at a small size (a quick look while changing the kernel)
const SIZES = (Deno.env.get("KEG_TEST_EIGEN_D") ?? "1024,2048").split(",").map(Number).filter((x) => x > 0);
for (const d of SIZES) {
  Deno.test({
    name: `symmetricEigen and the null space at d = ${d} match the f64 reference; ΔW·k_preserved ≈ 0`,
    sanitizeResources: false,
    fn: async () => {
      const gpu = await testGpu();
      const m = blockMatrix(d, d, d > 1024 ? 2 : 4);
      const c = Tensor.from(gpu, m.a, [d, d], "f32");
      const res = await symmetricEigen(c);
      assert.ok(res.converged, `not converged after ${res.sweeps} sweeps`);
      const V = await res.vectors.read();
      // each block is rotated only with itself, so its errors scale with its own norm (64 eps of it), far
      // inside the dense bound 4·d·eps·‖C‖
      const blockNorm = m.blocks.map((_, b) =>
        Math.max(...m.pairs.filter((p) => p.block === b).map((p) => p.value))
      );
      // each computed pair is matched by its support (the block holding its largest entry) to the closest
      // reference pair of that block: eigenvalues from different blocks can be closer than f32 resolves,
      // so sorted positions alone may swap them
      const rowBlock = new Int32Array(d);
      m.blocks.forEach((idx, b) => idx.forEach((row) => rowBlock[row] = b));
      const used = new Set<number>();
      let worstVec = 0;
      for (let j = 0; j < d; j++) {
        let top = 0;
        for (let i = 1; i < d; i++) if (Math.abs(V[i * d + j]) > Math.abs(V[top * d + j])) top = i;
        const b = rowBlock[top];
        const cands = m.pairs.map((p, k) => ({ p, k })).filter(({ p }) => p.block === b);
        const { p: ref, k } = cands.reduce((x, y) =>
          Math.abs(y.p.value - res.values[j]) < Math.abs(x.p.value - res.values[j]) ? y : x
        );
        const tol = 64 * 2 ** -24 * blockNorm[b];
        assert.ok(Math.abs(res.values[j] - ref.value) <= tol, `λ[${j}] ${res.values[j]} vs ${ref.value}`);
        assert.ok(!used.has(k), `reference pair ${k} matched twice`);
        used.add(k);
        // the vector lives on its block: compare there (sign-free), and nothing outside
        const idx = m.blocks[b];
        let dot = 0, inside = 0, total = 0;
        for (let i = 0; i < d; i++) total += V[i * d + j] ** 2;
        idx.forEach((row, t) => {
          dot += V[row * d + j] * ref.vec[t];
          inside += V[row * d + j] ** 2;
        });
        const gap = Math.min(...cands.filter((c) => c.k !== k).map((c) => Math.abs(c.p.value - ref.value)));
        if (gap < 1e-2 * blockNorm[b]) continue; // near-degenerate inside its block: not unique
        worstVec = Math.max(worstVec, 1 - Math.abs(dot), total - inside);
      }
      // and the sorted eigenvalues against the sorted reference (the dense bound 4·d·eps·‖C‖)
      const norm = m.pairs[d - 1].value;
      res.values.forEach((l, j) => assert.ok(Math.abs(l - m.pairs[j].value) <= 4 * d * 2 ** -24 * norm));
      assert.ok(worstVec <= 1e-4, `eigenvectors differ from the reference by ${worstVec}`);

      // the null space: P's rank from the reference eigenvalues; ΔW·k ≈ 0 for preserved keys
      const threshold = 0.02;
      const ns = await nullSpaceOf(c, threshold, { eigen: res }); // the same decomposition, not redone
      const rank = m.pairs.filter((p) => p.value < threshold).length;
      assert.equal(ns.rank, rank);
      const B = 4;
      const K = randArray(B * d, 7);
      const adj = await alphaEditAdj(ns.u0, null, K, B, 1e-3);
      const above = m.pairs.filter((p) => p.value >= threshold);
      const rand = rng(11);
      let worst = 0, writes = 0;
      for (let t = 0; t < 8; t++) {
        const k = new Float64Array(d);
        for (const p of above) {
          const w = Math.sqrt(p.value) * (rand() * 2 - 1);
          m.blocks[p.block].forEach((row, i) => k[row] += w * p.vec[i]);
        }
        const kn = Math.sqrt(k.reduce((s, x) => s + x * x, 0));
        for (let b = 0; b < B; b++) {
          let s = 0, an = 0;
          for (let i = 0; i < d; i++) s += adj[b * d + i] * k[i], an += adj[b * d + i] ** 2;
          worst = Math.max(worst, Math.abs(s) / (Math.sqrt(an) * kn));
        }
      }
      for (let b = 0; b < B; b++) {
        let s = 0;
        for (let i = 0; i < d; i++) s += adj[b * d + i] * K[b * d + i];
        writes = Math.max(writes, Math.abs(s));
      }
      assert.ok(worst <= 1e-4, `|adj·k_preserved| / (‖adj‖‖k‖) = ${worst}`);
      assert.ok(writes > 1e-3, `the edit writes nothing on its keys (${writes})`);
      console.log(
        `d = ${d}: ${res.sweeps} sweeps, P rank ${ns.rank}, worst eigenvector error ${
          worstVec.toExponential(2)
        }, ` +
          `null-space leak ${worst.toExponential(2)}`,
      );
      ns.u0.dispose(), c.dispose();
    },
  });
}
