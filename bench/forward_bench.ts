/**
 * Model throughput: tokens/s of a forward pass (the prefill of a right-padded batch, logits of the last
 * rows) and of KV-cache decoding (one token per row per step, attention over the cached prompt, argmax read
 * back as generation does), in f32, f16 and mixed precision, on one and two devices, for
 * ../shared/models/tiny-llama-counterfact and tiny-gpt2-counterfact. Run:
 * `deno bench -A bench/forward_bench.ts`.
 *
 * Sizes via KEG_BENCH_BATCH (rows, default 4), KEG_BENCH_SEQ (prompt tokens per row, default 32),
 * KEG_BENCH_REPS (timed repetitions for the table, default 5) and KEG_BENCH_N (deno bench iterations,
 * default 10).
 *
 * The table printed first comes from its own timed loop (median of the repetitions, each waiting for every
 * device, after an untimed run that compiles the pipelines), with each configuration's weight bytes
 * (`Transformer.weightBytes()`), KV-cache bytes and peak GPU memory (`gpu.memory().peakBytes`, per device,
 * weights included); the `deno bench` rows time the same work. Skips with a message when ../shared is
 * missing.
 * @module
 */
import { type LoadedModel, loadModel } from "../lib/model/load.ts";
import { type ModelKvCache, padBatch, type TokenBatch, type Transformer } from "../lib/model/transformer.ts";
import { type Precision, PRECISIONS } from "../lib/model/precision.ts";
import { argmaxRows } from "../lib/ops/loss.ts";

const env = (k: string, dflt: string) => Number(Deno.env.get(k) ?? dflt);
const BATCH = env("KEG_BENCH_BATCH", "4");
const SEQ = env("KEG_BENCH_SEQ", "32");
const REPS = env("KEG_BENCH_REPS", "5");
const N = env("KEG_BENCH_N", "10");
const MODELS = ["tiny-llama-counterfact", "tiny-gpt2-counterfact"];
const DEVICES = [1, 2] as const;

function modelDir(name: string): string | null {
  const p = new URL(`../../shared/models/${name}`, import.meta.url).pathname;
  try {
    Deno.statSync(`${p}/config.json`);
    return p;
  } catch {
    return null;
  }
}

/** A loaded configuration with its prompt batch, a primed KV cache and the decoding step. */
interface Setup {
  model: LoadedModel;
  prompt: TokenBatch;
  cache: ModelKvCache;
  step: TokenBatch;
}

async function setup(dir: string, precision: Precision, devices: number): Promise<Setup> {
  const model = await loadModel(dir, { precision, devices, quiet: true });
  const V = model.config.vocabSize;
  // deterministic ids spread over the vocabulary; rows of lengths SEQ, SEQ−1, … (right padding)
  const rows = Array.from(
    { length: BATCH },
    (_, r) => Array.from({ length: Math.max(1, SEQ - r) }, (_, i) => (r * 7919 + i * 104729 + 13) % V),
  );
  const prompt = padBatch(rows);
  const net = model.net;
  const cache = net.createKvCache(BATCH, SEQ + 1);
  (await net.forwardCached(prompt, cache)).dispose();
  const step: TokenBatch = {
    batch: BATCH,
    seq: 1,
    lengths: new Array<number>(BATCH).fill(1),
    ids: Uint32Array.from({ length: BATCH }, (_, r) => (r * 31 + 5) % V),
  };
  const s = { model, prompt, cache, step };
  await prefill(s), await decode(s); // compile every pipeline before anything is timed
  return s;
}

async function syncAll(net: Transformer): Promise<void> {
  for (const g of net.devices) await g.sync();
}

/** One forward pass of the prompt batch (logits of each row's last token). */
async function prefill(s: Setup): Promise<void> {
  const r = await s.model.net.forward(s.prompt, { logitRows: "last" });
  r.logits.dispose();
  await syncAll(s.model.net);
}

/** One decoding step at context length SEQ (keep 0: the cache stays primed, every step costs the same). */
async function decode(s: Setup): Promise<void> {
  const logits = await s.model.net.forwardCached(s.step, s.cache, {
    logitRows: "all",
    keep: new Array<number>(BATCH).fill(0),
  });
  await argmaxRows(logits);
  logits.dispose();
  await syncAll(s.model.net);
}

async function dispose(s: Setup): Promise<void> {
  s.cache.dispose();
  await s.model.dispose();
}

async function median(fn: () => Promise<void>): Promise<number> {
  const ts: number[] = [];
  for (let i = 0; i < REPS; i++) {
    const t0 = performance.now();
    await fn();
    ts.push((performance.now() - t0) / 1000);
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)];
}

const mib = (b: number) => (b / 2 ** 20).toFixed(1);
const perDevice = (xs: number[]) => xs.map(mib).join(" + ");

const present = MODELS.map((m) => [m, modelDir(m)] as const).filter(([m, d]) => {
  if (!d) console.log(`SKIP forward_bench: ../shared/models/${m} not found`);
  return d !== null;
}) as (readonly [string, string])[];

if (present.length === 0) {
  Deno.bench({ name: "forward_bench (../shared/models missing)", ignore: true, fn() {} });
} else {
  const promptTokens = (s: Setup) => s.prompt.lengths.reduce((a, b) => a + b, 0);
  const table: Record<string, string>[] = [];
  for (const [name, dir] of present) {
    for (const precision of PRECISIONS) {
      for (const devices of DEVICES) {
        const s = await setup(dir, precision, devices);
        try {
          const tPre = await median(() => prefill(s));
          const tDec = await median(() => decode(s));
          const net = s.model.net;
          table.push({
            model: name,
            precision,
            devices: String(devices),
            "prefill tok/s": (promptTokens(s) / tPre).toFixed(0),
            "prefill ms": (tPre * 1e3).toFixed(1),
            "decode tok/s": (BATCH / tDec).toFixed(1),
            "decode ms/step": (tDec * 1e3).toFixed(1),
            "weights MiB": perDevice(net.weightBytes()),
            "KV cache MiB": perDevice(s.cache.bytes(net)),
            "peak MiB": perDevice(net.devices.map((g) => g.memory().peakBytes)),
          });
        } finally {
          await dispose(s);
        }
      }
    }
  }
  console.log(
    `\nforward_bench: prefill of ${BATCH} rows of ${SEQ}…${Math.max(1, SEQ - BATCH + 1)} tokens; decoding ` +
      `${BATCH} rows at context ${SEQ} (median of ${REPS}; peak includes weights)`,
  );
  console.table(table);

  // deno bench rows: configurations load lazily, one at a time (in registration order).
  let current: { key: string; s: Setup } | null = null;
  const get = async (dir: string, precision: Precision, devices: number): Promise<Setup> => {
    const key = `${dir}|${precision}|${devices}`;
    if (current?.key !== key) {
      if (current) await dispose(current.s);
      current = null;
      current = { key, s: await setup(dir, precision, devices) };
    }
    return current.s;
  };
  for (const [name, dir] of present) {
    for (const precision of PRECISIONS) {
      for (const devices of DEVICES) {
        const tag = `${name} ${precision} ×${devices}`;
        Deno.bench({
          name: `prefill ${tag} (${BATCH}×${SEQ})`,
          n: N,
          warmup: 1,
          async fn(b) {
            const s = await get(dir, precision, devices);
            b.start();
            await prefill(s);
            b.end();
          },
        });
        Deno.bench({
          name: `decode ${tag} (${BATCH} rows @${SEQ})`,
          n: N,
          warmup: 1,
          async fn(b) {
            const s = await get(dir, precision, devices);
            b.start();
            await decode(s);
            b.end();
          },
        });
      }
    }
  }
}
