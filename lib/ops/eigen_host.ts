/**
 * The symmetric eigen-decomposition in f64 on the host (cyclic Jacobi, row by row): the small k×k problems
 * of the null space's Rayleigh–Ritz refinement (lib/edit/null_space.ts), and the tests' reference for
 * shaders/eigen.wgsl.
 * @module
 */

/** Eigenvalues ascending and the eigenvectors as the columns of `vectors` ([n, n] row-major). */
export interface EigenReference {
  values: Float64Array;
  vectors: Float64Array;
}

/** A = V Λ Vᵀ of a symmetric row-major [n, n] matrix (only symmetric input is meaningful). */
export function eigenReference(a: ArrayLike<number>, n: number, maxSweeps = 60): EigenReference {
  const A = Float64Array.from(a);
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let off = 0, total = 0;
    for (let i = 0; i < n * n; i++) total += A[i] * A[i];
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += 2 * A[p * n + q] ** 2;
    if (off <= 1e-30 * total || off === 0) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = A[p * n + q];
        if (apq === 0) continue;
        const app = A[p * n + p], aqq = A[q * n + q];
        const tau = (aqq - app) / (2 * apq);
        const t = Math.sign(tau || 1) / (Math.abs(tau) + Math.sqrt(1 + tau * tau));
        const c = 1 / Math.sqrt(1 + t * t), s = t * c;
        for (let j = 0; j < n; j++) {
          const x = A[p * n + j], y = A[q * n + j];
          A[p * n + j] = c * x - s * y, A[q * n + j] = s * x + c * y;
        }
        for (let i = 0; i < n; i++) {
          const x = A[i * n + p], y = A[i * n + q];
          A[i * n + p] = c * x - s * y, A[i * n + q] = s * x + c * y;
          const vx = V[i * n + p], vy = V[i * n + q];
          V[i * n + p] = c * vx - s * vy, V[i * n + q] = s * vx + c * vy;
        }
        A[p * n + p] = app - t * apq, A[q * n + q] = aqq + t * apq;
        A[p * n + q] = 0, A[q * n + p] = 0;
      }
    }
  }
  const order = [...Array(n).keys()].sort((i, j) => A[i * n + i] - A[j * n + j]);
  const values = Float64Array.from(order, (i) => A[i * n + i]);
  const vectors = new Float64Array(n * n);
  for (let i = 0; i < n; i++) order.forEach((src, j) => vectors[i * n + j] = V[i * n + src]);
  return { values, vectors };
}
