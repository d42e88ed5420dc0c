/**
 * `keg selfcheck`: the adapter report, every core kernel against its plain-TS reference on random data
 * (f32 and f16), and a forward pass of a model. Exits non-zero when a check fails.
 * @module
 */
import { Gpu } from "../gpu/device.ts";
import type { DType } from "../gpu/dtype.ts";
import { Tensor } from "../gpu/tensor.ts";
import { matmul } from "../ops/matmul.ts";
import { matmulReference } from "../testing/matmul_reference.ts";
import { outerUpdate } from "../ops/outer.ts";
import { covarianceAccumulate } from "../ops/covariance.ts";
import { choleskyFactor } from "../ops/cholesky.ts";
import { covarianceReference, multiplyReference, outerReference } from "../testing/linalg_reference.ts";
import { loadModel } from "../model/load.ts";
import { topNext } from "../model/score.ts";
import { rng } from "../util/random.ts";
import { parseFlags } from "./args.ts";
import { adapterReport, memoryReport } from "./report.ts";

/** Usage text. */
export const SELFCHECK_USAGE: string = `keg selfcheck [--model <dir|hub id>] [--prompt "text"]
  Prints the WebGPU adapters, checks matmul, the rank-one update, covariance accumulation and the
  Cholesky solve against plain-TS references in f32 and f16, then runs a forward pass of the model
  (default ../shared/models/tiny-gpt2-counterfact when present).`;

function rand(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
}

function relMax(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let e = 0, m = 0;
  for (let i = 0; i < want.length; i++) {
    e = Math.max(e, Math.abs(got[i] - want[i])), m = Math.max(m, Math.abs(want[i]));
  }
  return e / (m || 1);
}

/** Runs the kernel checks; returns rows of [name, dtype, relative error, tolerance]. */
export async function kernelChecks(gpu: Gpu): Promise<[string, DType, number, number][]> {
  const rows: [string, DType, number, number][] = [];
  for (const dt of ["f32", "f16"] as DType[]) {
    const round = (x: Float32Array) => dt === "f16" ? Float32Array.from(Float16Array.from(x)) : x;
    // tolerances: a few units of the storage type's rounding, relative to the largest output
    const tol = dt === "f16" ? 4e-3 : 1e-5;
    const m = 37, k = 70, n = 29;
    const a = round(rand(m * k, 1)), b = round(rand(k * n, 2));
    const c = await matmul(Tensor.from(gpu, a, [m, k], dt), Tensor.from(gpu, b, [k, n], dt), {
      outDtype: "f32",
    });
    rows.push([
      "matmul 37×70×29",
      dt,
      relMax(await c.read(), matmulReference(a, b, { m, n, k }).values),
      tol,
    ]);
    const w = round(rand(45 * 19, 3)), u = rand(45, 4), v = rand(19, 5);
    const wt = Tensor.from(gpu, w, [45, 19], dt);
    await outerUpdate(wt, Tensor.from(gpu, u, [45], "f32"), Tensor.from(gpu, v, [19], "f32"), 0.5, {
      layout: "in_out",
    });
    rows.push([
      "outer update 45×19",
      dt,
      relMax(await wt.read(), outerReference(w, u, v, 0.5, "in_out")),
      tol,
    ]);
    const d = 33, nx = 90;
    const x = round(rand(nx * d, 6));
    const ct = Tensor.zeros(gpu, [d, d], "f32");
    await covarianceAccumulate(ct, Tensor.from(gpu, x, [nx, d], dt));
    const cov = await ct.read();
    rows.push(["covariance XᵀX 90×33", dt, relMax(cov, covarianceReference(null, x, nx, d).c), 1e-5]);
    // SPD solve: (XᵀX/n + I) x = b
    const spd = Float32Array.from(cov, (val, i) => val / nx + (i % (d + 1) === 0 ? 1 : 0));
    const f = await choleskyFactor(Tensor.from(gpu, spd, [d, d], "f32"));
    const rhs = rand(d, 7);
    const sol = await (await f.solve(Tensor.from(gpu, rhs, [d], "f32"))).read();
    rows.push(["Cholesky solve 33 (residual)", "f32", relMax(multiplyReference(spd, sol, d), rhs), 1e-5]);
    f.dispose();
  }
  return rows;
}

/** Runs the command. */
export async function selfcheckCommand(args: string[]): Promise<void> {
  const v = parseFlags("selfcheck", args, { model: { type: "string" }, prompt: { type: "string" } });
  const gpu = await Gpu.open();
  console.log(adapterReport([gpu]));
  const rows = await kernelChecks(gpu);
  let failed = 0;
  for (const [name, dt, err, tol] of rows) {
    const ok = err <= tol;
    if (!ok) failed++;
    console.log(
      `${ok ? "ok  " : "FAIL"} ${name.padEnd(30)} ${dt}  max rel err ${err.toExponential(2)} (tol ${tol})`,
    );
  }
  await gpu.destroy();
  let modelName = v.model as string | undefined;
  if (!modelName) {
    const guess = new URL("../../../shared/models/tiny-gpt2-counterfact", import.meta.url).pathname;
    if (await Deno.stat(guess).then(() => true, () => false)) modelName = guess;
  }
  if (modelName) {
    const prompt = (v.prompt as string | undefined) ?? "Angola is located in";
    const t0 = performance.now();
    const model = await loadModel(modelName, { quiet: true });
    try {
      if (!model.tokenizer) throw new Error(`${model.dir} has no tokenizer`);
      const [top] = await topNext(model.net, model.tokenizer, [prompt], 5);
      console.log(
        `forward ${model.config.modelType} (${model.dir}): ${JSON.stringify(prompt)} → ${
          top.map((t) => `${JSON.stringify(t.text)} ${(100 * t.prob).toFixed(1)}%`).join(", ")
        } (${((performance.now() - t0) / 1000).toFixed(1)} s with load)`,
      );
      console.log(memoryReport(model.net));
    } finally {
      await model.dispose();
    }
  } else {
    console.log("forward: skipped (no --model and ../shared/models/tiny-gpt2-counterfact not found)");
  }
  if (failed) throw new Error(`${failed} kernel check(s) failed`);
}
