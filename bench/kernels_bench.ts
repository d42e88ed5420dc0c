/**
 * Kernel benchmarks: matmul 1024³ (direct, workgroup-memory tiled and naive kernels; f32, f16 and mixed
 * f32·f16 storage), keg's own shapes, the LM head of v* (forward and backward at 21 and 60 rows for both
 * ../shared models, the `rows` kernel against what `auto` ran before) and gemv 4096×4096 (both weight
 * layouts, f32 and f16 weights). Run `deno bench -A bench/kernels_bench.ts`; sizes via KEG_BENCH_MATMUL
 * (n of n³) and KEG_BENCH_GEMV ("rows,cols"), a subset via KEG_BENCH_ONLY (a regex on kernel and group).
 *
 * Before the `deno bench` rows, a table goes to stderr with each case's rate (GFLOP/s or GB/s of weight
 * read, best of a few runs, each a batch of calls and one wait for the GPU: see {@link KernelCase.batch}),
 * best and mean times per call, the ratio to its group's
 * baseline measured in the same run, and its max error against an f64 reference of the unrounded f32
 * data, so the precision cost of f16 storage shows beside its speed.
 *
 * Other kernel families plug in through the exported helpers: describe a {@link KernelCase}, then
 * `rows.push(await measure(c))` for the table and `register(c)` for `deno bench`.
 * @module
 */
import { type DType, Gpu, Tensor } from "../lib/gpu/mod.ts";
import { gemv } from "../lib/ops/gemv.ts";
import { matmul, type MatmulKernel } from "../lib/ops/matmul.ts";

/** The device every case runs on. */
export const gpu: Gpu = await Gpu.open({ quiet: true });

const env = (k: string, dflt: string) => Deno.env.get(k) ?? dflt;
const MM = Number(env("KEG_BENCH_MATMUL", "1024"));
const [GV_ROWS, GV_COLS] = env("KEG_BENCH_GEMV", "4096,4096").split(",").map(Number);

/** A prepared benchmark case: inputs live on the GPU; `run` records one call. */
export interface Prepared {
  /** Records the work once (the caller syncs). */
  run(): Promise<unknown>;
  /** Max |result − f64 reference| (may sample part of the result; see the case's note). */
  maxError(): Promise<number>;
  /** Frees the case's tensors. */
  dispose(): void;
}

/** One benchmark case. */
export interface KernelCase {
  /** Kernel family and variant, e.g. `matmul direct`. */
  kernel: string;
  /** Problem size, e.g. `1024³`. */
  size: string;
  /** Storage types, e.g. `f32`, `f16`, `f32·f16`. */
  dtype: string;
  /** Work of one run: floating-point operations (GFLOP/s) or bytes moved (GB/s). */
  work: { flops: number } | { bytes: number };
  /** Builds the inputs (once). */
  setup(): Promise<Prepared>;
  /** deno bench group (cases of one group are compared with each other). */
  group?: string;
  /** This case is the group's baseline. */
  baseline?: boolean;
  /** deno bench iterations (default 10) and timed runs for the table (default 3). */
  n?: number;
  reps?: number;
  /**
   * Calls per timed run of the table (default 1), all recorded before the run's one wait; the row shows
   * time per call. `auto`: enough calls for about 600 ms per run (2 … 20). Deno's GPU wait adds a blocking
   * poll and a ≈10 ms sleep, so a single call's wall time overstates a kernel that keg pipelines with
   * others (the `deno bench` rows keep one call + wait per iteration: latency, not throughput).
   */
  batch?: number | "auto";
}

/** One line of the table. */
export interface Row {
  kernel: string;
  size: string;
  dtype: string;
  /** Best and mean wall time of the timed runs. */
  ms: number;
  meanMs?: number;
  rate: string;
  maxError: number;
  /** The case's group (its baseline is the row the ratio compares against). */
  group?: string;
  baseline?: boolean;
}

const prepared = new Map<KernelCase, Promise<Prepared>>();

function prepare(c: KernelCase): Promise<Prepared> {
  let p = prepared.get(c);
  if (!p) {
    p = c.setup();
    prepared.set(c, p);
  }
  return p;
}

/** Best wall time in ms of `reps` runs (after one warm-up run), each waiting for the GPU. */
export async function bestMs(run: () => Promise<unknown>, reps: number): Promise<number> {
  return (await timeMs(run, reps)).best;
}

/**
 * Best and mean wall time in ms per call of `reps` runs (after one warm-up run), each run `batch` calls
 * and one wait for the GPU (see {@link KernelCase.batch}).
 */
export async function timeMs(
  run: () => Promise<unknown>,
  reps: number,
  batch: number | "auto" = 1,
): Promise<{ best: number; mean: number }> {
  const w0 = performance.now();
  await run();
  await gpu.sync();
  const calls = batch === "auto"
    ? Math.min(20, Math.max(2, Math.ceil(600 / (performance.now() - w0))))
    : batch;
  let best = Infinity, sum = 0;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    for (let j = 0; j < calls; j++) await run();
    await gpu.sync();
    const t = (performance.now() - t0) / calls;
    best = Math.min(best, t);
    sum += t;
  }
  return { best, mean: sum / reps };
}

/** Times a case and measures its error: one table row. */
export async function measure(c: KernelCase): Promise<Row> {
  const p = await prepare(c);
  const { best: ms, mean } = await timeMs(() => p.run(), c.reps ?? 3, c.batch ?? 1);
  const rate = "flops" in c.work
    ? `${(c.work.flops / ms / 1e6).toFixed(2)} GFLOP/s`
    : `${(c.work.bytes / ms / 1e6).toFixed(2)} GB/s`;
  return {
    kernel: c.kernel,
    size: c.size,
    dtype: c.dtype,
    ms,
    meanMs: mean,
    rate,
    maxError: await p.maxError(),
    group: c.group,
    baseline: c.baseline,
  };
}

/** Prints rows as an aligned table (to stderr). */
export function printTable(title: string, rows: Row[], notes: string[] = []): void {
  const head = [
    "kernel",
    "size",
    "storage",
    "best ms",
    "mean ms",
    "rate",
    "× baseline (best, mean)",
    "max |err| vs f64",
  ];
  const base = (r: Row) => rows.find((b) => b.baseline && b.group !== undefined && b.group === r.group);
  const ratio = (r: Row) => {
    const b = base(r);
    if (!b || b === r) return b === r ? "baseline" : "";
    const mean = b.meanMs && r.meanMs ? ` ${(b.meanMs / r.meanMs).toFixed(2)}` : "";
    return `${(b.ms / r.ms).toFixed(2)}${mean}`;
  };
  const body = rows.map((r) => [
    r.kernel,
    r.size,
    r.dtype,
    r.ms.toFixed(1),
    r.meanMs?.toFixed(1) ?? "",
    r.rate,
    ratio(r),
    r.maxError.toExponential(2),
  ]);
  const width = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => "| " + cells.map((c, i) => c.padEnd(width[i])).join(" | ") + " |";
  const out = [`\n${title} (${gpu.report.description})`, line(head), line(width.map((w) => "-".repeat(w)))];
  out.push(...body.map(line), ...notes.map((n) => `  ${n}`), "");
  console.error(out.join("\n"));
}

/** Registers a case with `deno bench` (timing dispatch + sync of one run). */
export function register(c: KernelCase): void {
  Deno.bench({
    name: `${c.kernel} ${c.size} ${c.dtype}`,
    group: c.group,
    baseline: c.baseline,
    n: c.n ?? 10,
    warmup: 1,
    async fn(b) {
      const p = await prepare(c);
      b.start();
      await p.run();
      await gpu.sync();
      b.end();
    },
  });
}

/** Deterministic uniform values in [-1, 1) (mulberry32). */
export function rand(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return out;
}

// ---- matmul ------------------------------------------------------------------------------------------

/** Rows of C compared against the f64 reference (a full 1024³ reference in TS takes too long). */
const SAMPLE_ROWS = 16;

/** C [n, n] = A [n, n] · B [n, n] with the given kernel and storage types. */
export function matmulCase(n: number, kernel: MatmulKernel, ta: DType, tb: DType, tc: DType): KernelCase {
  const dtype = ta === tb && tb === tc ? ta : `${ta}·${tb}→${tc}`;
  return {
    ...shapeCase(n, n, n, false, kernel, ta, tb, tc),
    size: `${n}³`,
    group: `matmul ${n}³ ${dtype}`,
    baseline: kernel === "naive",
    n: kernel === "naive" ? 2 : 10,
    reps: kernel === "naive" ? 1 : 3,
  };
}

/**
 * C [m, n] = A [m, k] · op(B) with B stored [k, n] (or [n, k] with `transB`, an LM head or nn.Linear
 * weight): keg's real shapes. The group's baseline is the `direct` kernel (the CPU default before `texel`).
 */
export function shapeCase(
  m: number,
  k: number,
  n: number,
  transB: boolean,
  kernel: MatmulKernel,
  ta: DType = "f32",
  tb: DType = "f32",
  tc: DType = "f32",
  splitK = true,
): KernelCase {
  const dtype = ta === tb && tb === tc ? ta : `${ta}·${tb}→${tc}`;
  const size = `${m}×${k}·${k}×${n}${transB ? " (Bᵀ)" : ""}`;
  return {
    kernel: `matmul ${kernel}${kernel === "skinny" && !splitK ? " (K not split)" : ""}`,
    size,
    dtype,
    work: { flops: 2 * m * n * k },
    group: `matmul ${size} ${dtype}`,
    baseline: kernel === "direct",
    n: 5,
    reps: 3,
    batch: "auto",
    setup() {
      const a = rand(m * k, 11), b = rand(k * n, 12);
      const A = Tensor.from(gpu, a, [m, k], ta), B = Tensor.from(gpu, b, transB ? [n, k] : [k, n], tb);
      const C = Tensor.empty(gpu, [m, n], tc);
      return Promise.resolve({
        run: () => matmul(A, B, { out: C, kernel, transB, splitK }),
        async maxError() {
          await matmul(A, B, { out: C, kernel, transB, splitK });
          const got = await C.read();
          let err = 0;
          const step = Math.max(1, Math.floor(m / SAMPLE_ROWS));
          const acc = new Float64Array(n);
          for (let i = 0; i < m; i += step) {
            acc.fill(0);
            for (let l = 0; l < k; l++) {
              const av = a[i * k + l];
              for (let j = 0; j < n; j++) acc[j] += av * b[transB ? j * k + l : l * n + j];
            }
            for (let j = 0; j < n; j++) err = Math.max(err, Math.abs(got[i * n + j] - acc[j]));
          }
          return err;
        },
        dispose() {
          for (const t of [A, B, C]) t.dispose();
        },
      });
    },
  };
}

// ---- gemv ---------------------------------------------------------------------------------------------

/** y = W x for W stored [rows, cols] in `layout` (f32 x and y), GB/s of W read. */
export function gemvCase(rows: number, cols: number, layout: "out_in" | "in_out", tw: DType): KernelCase {
  const inDim = layout === "out_in" ? cols : rows;
  return {
    kernel: `gemv ${layout}`,
    size: `${rows}×${cols}`,
    dtype: tw === "f32" ? "f32" : "f16·f32",
    work: { bytes: rows * cols * (tw === "f32" ? 4 : 2) },
    group: `gemv ${rows}×${cols} ${layout}`,
    baseline: tw === "f32",
    n: 20,
    reps: 5,
    batch: "auto",
    setup() {
      const w = rand(rows * cols, 21), x = rand(inDim, 22);
      const W = Tensor.from(gpu, w, [rows, cols], tw), X = Tensor.from(gpu, x, [inDim], "f32");
      const Y = Tensor.empty(gpu, [layout === "out_in" ? rows : cols], "f32");
      return Promise.resolve({
        run: () => gemv(W, X, { layout, out: Y }),
        async maxError() {
          await gemv(W, X, { layout, out: Y });
          const got = await Y.read();
          const want = new Float64Array(got.length);
          for (let r = 0; r < rows; r++) {
            for (let c = 0; c < cols; c++) {
              if (layout === "out_in") want[r] += w[r * cols + c] * x[c];
              else want[c] += w[r * cols + c] * x[r];
            }
          }
          let err = 0;
          for (let i = 0; i < got.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
          return err;
        },
        dispose() {
          for (const t of [W, X, Y]) t.dispose();
        },
      });
    },
  };
}

// ---- the cases ----------------------------------------------------------------------------------------

/**
 * The matmul cases: each storage mix with the texel, direct and tiled kernels, f32 also with the naive
 * one; then keg's own shapes (a stats batch through GPT-2's QKV, an MLP on 200 tokens, the Cholesky
 * update's rank 64, 100 LM-head rows over a 50,257 vocabulary) with `direct` as their baseline, and the
 * LM head's backward (21 rows, K = 50,257) split along K against the unsplit skinny kernel.
 */
export const matmulCases: KernelCase[] = [
  matmulCase(MM, "naive", "f32", "f32", "f32"),
  matmulCase(MM, "direct", "f32", "f32", "f32"),
  matmulCase(MM, "texel", "f32", "f32", "f32"),
  matmulCase(MM, "tiled", "f32", "f32", "f32"),
  matmulCase(MM, "direct", "f16", "f16", "f16"),
  matmulCase(MM, "texel", "f16", "f16", "f16"),
  matmulCase(MM, "tiled", "f16", "f16", "f16"),
  matmulCase(MM, "direct", "f32", "f16", "f32"),
  matmulCase(MM, "texel", "f32", "f16", "f32"),
  matmulCase(MM, "tiled", "f32", "f16", "f32"),
  ...([[4096, 256, 768, false], [200, 256, 1024, true], [960, 64, 960, false], [
    100,
    256,
    50257,
    true,
  ]] as const)
    .flatMap(([m, k, n, t]) => (["direct", "texel"] as const).map((kn) => shapeCase(m, k, n, t, kn))),
  // the LM head's backward in v* (dlogits [21, V] · W [V, 256]): few rows, long K — skinny split along K
  // and the texel kernel (what auto picks on CPU adapters) against skinny unsplit (the baseline: what keg
  // ran before) and direct
  { ...shapeCase(21, 50257, 256, false, "skinny", "f32", "f32", "f32", false), baseline: true },
  shapeCase(21, 50257, 256, false, "skinny", "f32", "f32", "f32", true),
  shapeCase(21, 50257, 256, false, "texel"),
  { ...shapeCase(21, 50257, 256, false, "direct"), baseline: false },
];

/** The vocabulary of both ../shared fact models (tiny-gpt2-counterfact: d = 256, tiny-llama: d = 160). */
const VOCAB = 50257;

/** The kernel `auto` picked on CPU adapters before `rows` (the same-run baseline of the LM-head rows). */
function previousAuto(m: number, k: number, n: number): MatmulKernel {
  if (m <= 40) return k >= 4096 && 4 * n <= k ? "texel" : "skinny";
  return "texel";
}

/**
 * The LM head of v* at R = 21 and 60 rows for both models' widths: forward logits = h [R, d] · Eᵀ (E
 * [V, d], `out_in`) and backward dh = dlogits [R, V] · E, the `rows` kernel (auto on CPU adapters) against
 * what auto ran before as the group's baseline; also f16 E (f32·f16 storage) at R = 21, d = 256.
 */
export const lmHeadCases: KernelCase[] = ([[21, 256, "f32"], [60, 256, "f32"], [21, 160, "f32"], [
  60,
  160,
  "f32",
], [21, 256, "f16"]] as const).flatMap(([r, d, te]) =>
  ([[r, d, VOCAB, true], [r, VOCAB, d, false]] as const).flatMap(([m, k, n, t]) => {
    const lm = (kn: MatmulKernel, baseline: boolean): KernelCase => {
      const c = shapeCase(m, k, n, t, kn, "f32", te, "f32");
      return { ...c, kernel: `${c.kernel} (LM head ${t ? "fwd" : "bwd"})`, baseline };
    };
    return [lm(previousAuto(m, k, n), true), lm("rows", false)];
  })
);

/** Products recorded per timed run of the few-row cases (one sync each, as in a v* step's batch). */
const FEW_ROW_REPEAT = 20;

/**
 * Linear layers on the few rows of a v* step: GPT-2's c_attn, c_fc and c_proj (`in_out`) and Llama's
 * gate/up and down (`out_in`) of both ../shared models, at 21 and 60 rows, `rows` against what auto ran
 * before. Each run records FEW_ROW_REPEAT products before waiting, so the kernels' time, not the sync
 * latency, is measured.
 */
export const fewRowCases: KernelCase[] = ([
  [21, 256, 768, false],
  [21, 256, 1024, false],
  [
    21,
    1024,
    256,
    false,
  ],
  [60, 256, 1024, false],
  [21, 160, 448, true],
  [21, 448, 160, true],
  [60, 160, 448, true],
] as const)
  .flatMap(([m, k, n, t]) =>
    ([[previousAuto(m, k, n), true], ["rows", false]] as const).map(([kn, baseline]) => {
      const c = shapeCase(m, k, n, t, kn);
      return {
        ...c,
        kernel: `${c.kernel} (few-row linear)`,
        size: `${c.size} ×${FEW_ROW_REPEAT}`,
        work: { flops: 2 * m * n * k * FEW_ROW_REPEAT },
        baseline,
        async setup() {
          const p = await c.setup();
          return {
            ...p,
            async run() {
              for (let i = 0; i < FEW_ROW_REPEAT; i++) await p.run();
            },
          };
        },
      };
    })
  );

/** The gemv cases: both layouts, f32 and f16 weights. */
export const gemvCases: KernelCase[] = (["out_in", "in_out"] as const).flatMap((layout) =>
  (["f32", "f16"] as const).map((tw) => gemvCase(GV_ROWS, GV_COLS, layout, tw))
);

// KEG_BENCH_ONLY=<regex>: only the cases whose group matches (e.g. "LM|1024³ f32$" for the LM head
// and the f32 1024³ rows)
const only = Deno.env.get("KEG_BENCH_ONLY");
const cases = [...matmulCases, ...lmHeadCases, ...fewRowCases, ...gemvCases].filter((c) =>
  !only || new RegExp(only).test(`${c.kernel} ${c.group ?? ""}`)
);
const rows: Row[] = [];
for (const c of cases) rows.push(await measure(c));
printTable("keg kernels", rows, [
  `matmul errors: max over ${SAMPLE_ROWS} sampled rows of C; inputs uniform in [-1, 1); f16 rows include`,
  "the rounding of the inputs to f16 (the reference uses the unrounded f32 values).",
  "gemv rate: bytes of W read per second.",
  "× baseline: the group baseline's time over this row's (best of the runs, mean of the runs); > 1 is faster.",
]);
for (const c of cases) register(c);
