/**
 * Test helpers: a shared device per test file, seeded random data, tolerance checks, and paths into
 * ../shared with the skip-or-fail rule (skip with a message locally, fail under CI=true).
 * @module
 */
import { Gpu, type GpuOptions } from "../lib/gpu/mod.ts";

let shared: Promise<Gpu> | null = null;

// After a test file's last test: wait for every device it opened and release it, so that no GPU work is in
// flight and no driver device is left when the file's runtime is torn down.
Deno.test.afterAll(() => Gpu.destroyOpen());

/** The test file's device (opened once, quiet). */
export function testGpu(opts: GpuOptions = {}): Promise<Gpu> {
  if (Object.keys(opts).length) return Gpu.open({ quiet: true, ...opts });
  return shared ??= Gpu.open({ quiet: true });
}

/** A small deterministic PRNG (mulberry32) so failures reproduce. */
export { rng } from "../lib/util/random.ts";
import { rng } from "../lib/util/random.ts";

/** n uniform values in [-scale, scale). */
export function randArray(n: number, seed: number, scale = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (r() * 2 - 1) * scale;
  return out;
}

/** Rounds values through f16 (what an f16 tensor holds). */
export function roundF16(x: ArrayLike<number>): Float32Array {
  return Float32Array.from(Float16Array.from(x as ArrayLike<number>));
}

/** Asserts |a − e| ≤ atol + rtol·|e| elementwise, reporting the worst index. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  atol: number,
  rtol = 0,
  label = "values",
): void {
  if (actual.length !== expected.length) {
    throw new Error(`${label}: length ${actual.length} != expected ${expected.length}`);
  }
  let worst = -1, worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i], e = expected[i];
    const excess = Math.abs(a - e) - (atol + rtol * Math.abs(e));
    if (!(excess <= 0) && (worst < 0 || !(excess <= worstExcess))) {
      worst = i;
      worstExcess = excess;
      if (Number.isNaN(excess)) break;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${label}: index ${worst}: got ${actual[worst]}, expected ${
        expected[worst]
      } (atol ${atol}, rtol ${rtol})`,
    );
  }
}

/** Max |a − e|. */
export function maxAbsDiff(a: ArrayLike<number>, e: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - e[i]));
  return m;
}

const SHARED = new URL("../../shared/", import.meta.url);

/**
 * Resolves a path under ../shared. Returns null (and the test should return early) when it is missing
 * locally; under CI=true a missing path throws so that a wrong path never passes silently.
 */
export function sharedPath(rel: string): string | null {
  const p = new URL(rel, SHARED).pathname;
  try {
    Deno.statSync(p);
    return p;
  } catch {
    const msg = `../shared/${rel} not found`;
    if (Deno.env.get("CI") === "true") throw new Error(`${msg} (CI=true: shared data is required)`);
    console.warn(`SKIP: ${msg}`);
    return null;
  }
}

/**
 * ../shared fixtures covering every block wiring: GPT-2 (LayerNorm, learned positions), GPT-J (parallel
 * block, interleaved partial rotary, LM-head bias), Llama (RMSNorm, GQA, rotate_half, gated MLP), Mistral
 * (sliding window), Llama-3 (llama3 rope scaling; 3.2 tied head), Qwen2 (q/k/v biases; tied) and Qwen3
 * (per-head q/k RMSNorm before rotary, head_dim ≠ hidden/heads, tied head).
 */
export const WIRING_FIXTURES: readonly string[] = [
  "gpt2-tiny",
  "gptj-tiny",
  "llama-tiny-gqa",
  "mistral-tiny",
  "llama3-tiny-rope-scaled",
  "llama3.2-tiny-tied",
  "qwen2-tiny",
  "qwen2-tiny-tied",
  "qwen3-tiny",
];
