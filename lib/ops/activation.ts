/**
 * Elementwise MLP activations (GPT-2/GPT-J `gelu_new`, Llama/Mistral SiLU gate) with their input
 * gradients, and residual adds. Operands may have different storage types (f32/f16) and different row
 * chunkings; math is f32.
 * @module
 */
import type { DType } from "../gpu/dtype.ts";
import { GpuError } from "../gpu/errors.ts";
import { Tensor } from "../gpu/tensor.ts";
import { grid1d, rowSegments, words } from "./_chunks.ts";
import { scale } from "./elementwise.ts";

/** Options of the forward activations. */
export interface ActivationOptions {
  /** Storage type of the output (default: the (first) input's). */
  outDtype?: DType;
}

/** Options of the activation backward ops. */
export interface ActivationBackwardOptions {
  /** Storage type of the gradients (default f32). */
  outDtype?: DType;
}

function checkSame(op: string, ref: Tensor, others: Tensor[]): void {
  for (const t of others) {
    if (t.shape.length !== ref.shape.length || t.shape.some((d, i) => d !== ref.shape[i])) {
      throw new GpuError(op, `shape mismatch: [${ref.shape}] vs [${t.shape}]`);
    }
    if (t.gpu !== ref.gpu) {
      throw new GpuError(op, `tensors live on different devices (${ref.gpu.label}, ${t.gpu.label})`);
    }
  }
}

/** Dispatches an activation.wgsl entry over all elements: inputs bind a, b, c; outputs o, o2. */
async function run(
  op: string,
  entry: string,
  inputs: [Tensor, Tensor?, Tensor?],
  outputs: [Tensor, Tensor?],
): Promise<void> {
  const ins = inputs.filter((t): t is Tensor => !!t);
  const outs = outputs.filter((t): t is Tensor => !!t);
  const gpu = ins[0].gpu;
  const dt = (t?: Tensor): DType => t ? t.dtype : "f32";
  const pipe = await gpu.pipeline({
    family: "activation",
    entry,
    types: {
      TA: dt(inputs[0]),
      TB: dt(inputs[1]),
      TC: dt(inputs[2]),
      TO: dt(outputs[0]),
      TP: dt(outputs[1]),
    },
  });
  const all = [...ins, ...outs];
  const rs = ins[0].rowSize;
  for (const s of rowSegments(all)) {
    const at = (t: Tensor | undefined) => t ? s.at[all.indexOf(t)] : undefined;
    const buf = (t: Tensor | undefined) => t ? t.chunks[at(t)!.chunk] : null;
    const off = (t: Tensor | undefined) => t ? at(t)!.offset : 0;
    const n = s.rows * rs;
    gpu.dispatch(
      op,
      pipe,
      [buf(inputs[0]), buf(inputs[1]), buf(inputs[2]), buf(outputs[0]), buf(outputs[1])],
      grid1d(n),
      words(
        n,
        off(inputs[0]),
        off(inputs[1]),
        off(inputs[2]),
        off(outputs[0]),
        off(outputs[1]),
      ),
    );
  }
}

/** `gelu_new(x) = 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (GPT-2, GPT-J). Returns a new tensor. */
export async function geluNew(x: Tensor, opts: ActivationOptions = {}): Promise<Tensor> {
  const y = Tensor.empty(x.gpu, x.shape, opts.outDtype ?? x.dtype, { name: "geluNew" });
  await run("geluNew", "gelu_new", [x], [y]);
  return y;
}

/** Gradient of {@link geluNew} w.r.t. x: `dy · gelu_new'(x)`. Returns a new tensor (f32 by default). */
export async function geluNewBackward(
  x: Tensor,
  dy: Tensor,
  opts: ActivationBackwardOptions = {},
): Promise<Tensor> {
  checkSame("geluNewBackward", x, [dy]);
  const dx = Tensor.empty(x.gpu, x.shape, opts.outDtype ?? "f32", { name: "geluNewBackward" });
  await run("geluNewBackward", "gelu_new_bwd", [x, dy], [dx]);
  return dx;
}

/** The Llama/Mistral MLP hidden `silu(gate) · up` with `silu(g) = g·σ(g)`. Returns a new tensor. */
export async function siluMul(gate: Tensor, up: Tensor, opts: ActivationOptions = {}): Promise<Tensor> {
  checkSame("siluMul", gate, [up]);
  const h = Tensor.empty(gate.gpu, gate.shape, opts.outDtype ?? gate.dtype, { name: "siluMul" });
  await run("siluMul", "silu_mul", [gate, up], [h]);
  return h;
}

/**
 * Gradients of {@link siluMul} given the upstream gradient dh:
 * `dGate = dh·up·σ(g)·(1 + g·(1 − σ(g)))`, `dUp = dh·silu(g)`. New tensors (f32 by default).
 */
export async function siluMulBackward(
  gate: Tensor,
  up: Tensor,
  dh: Tensor,
  opts: ActivationBackwardOptions = {},
): Promise<{ dGate: Tensor; dUp: Tensor }> {
  checkSame("siluMulBackward", gate, [up, dh]);
  const dt = opts.outDtype ?? "f32";
  const dGate = Tensor.empty(gate.gpu, gate.shape, dt, { name: "siluMulBackward.dGate" });
  const dUp = Tensor.empty(gate.gpu, gate.shape, dt, { name: "siluMulBackward.dUp" });
  await run("siluMulBackward", "silu_mul_bwd", [gate, up, dh], [dGate, dUp]);
  return { dGate, dUp };
}

/** `a + b` (same shape, any dtype mix). Returns a new tensor (default dtype: a's). */
export async function add(a: Tensor, b: Tensor, opts: ActivationOptions = {}): Promise<Tensor> {
  checkSame("add", a, [b]);
  const y = Tensor.empty(a.gpu, a.shape, opts.outDtype ?? a.dtype, { name: "add" });
  await run("add", "add", [a, b], [y]);
  return y;
}

/** `y += x` in place (same shape, any dtype mix; the sum is rounded once to y's dtype). */
export async function addInPlace(y: Tensor, x: Tensor): Promise<void> {
  checkSame("addInPlace", y, [x]);
  // y += y: one buffer cannot be bound both read-only and writable
  if (x.chunks.some((c, i) => c === y.chunks[i])) return await scale(y, 2);
  await run("addInPlace", "add_inplace", [x], [y]);
}
