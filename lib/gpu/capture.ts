/**
 * Capture and replay of recorded GPU work: a loop whose every iteration runs the same dispatches on the
 * same buffers (the v* optimisation, statistics batches) is recorded once with {@link Gpu.beginCapture}
 * / {@link Gpu.endCapture} and replayed per iteration with no host work beyond encoding: no pipeline or
 * bind-group lookups, no uniform or buffer allocation, no shape checks.
 * @module
 */
import type { Gpu } from "./device.ts";

/** One recorded command. */
export type CapturedCommand =
  | {
    kind: "dispatch";
    op: string;
    pipeline: GPUComputePipeline;
    group: GPUBindGroup;
    x: number;
    y: number;
    z: number;
  }
  | { kind: "copy"; src: GPUBuffer; srcOffset: number; dst: GPUBuffer; dstOffset: number; bytes: number }
  | { kind: "clear"; buf: GPUBuffer }
  | ({ kind: "texcopy" } & TextureCopy);

/**
 * A copy of `height` rows of `width` texels from a buffer (row r at `offset + r·bytesPerRow`; `bytesPerRow`
 * a multiple of 256, `offset` of the texel size) into texture rows 0 … height − 1 from texel column `x` on
 * (default 0); `op` names it in profiles and errors.
 */
export interface TextureCopy {
  op: string;
  src: GPUBuffer;
  offset: number;
  bytesPerRow: number;
  texture: GPUTexture;
  width: number;
  height: number;
  x?: number;
}

/** @internal What a capture collects while it records. */
export class CaptureRecorder {
  readonly commands: CapturedCommand[] = [];
  /** Staging buffers of recorded writes (their data is replayed as is). */
  readonly staging: GPUBuffer[] = [];
  /** Every buffer a recorded command touches. */
  readonly touched: Set<GPUBuffer> = new Set();
  /** Touched buffers released while recording that the pool did not keep (the capture will own them). */
  readonly released: Set<GPUBuffer> = new Set();
  /** Cache keys of the bind groups the commands use. */
  readonly groups: Set<string> = new Set();

  touch(buf: GPUBuffer): void {
    this.touched.add(buf);
  }

  dispatches(): number {
    return this.commands.filter((c) => c.kind === "dispatch").length;
  }
}

/** A recorded command sequence; {@link replay} re-records it into the device's current batch. */
export class Capture {
  /** The device it was recorded on. */
  readonly gpu: Gpu;
  /** The commands, in order. */
  readonly commands: readonly CapturedCommand[];
  /** Dispatches per replay. */
  readonly dispatches: number;
  /** @internal Staging buffers of recorded writes. */
  readonly staging: GPUBuffer[];
  /** @internal Buffers released while reserved by this capture (returned to the pool on dispose). */
  readonly owned: Set<GPUBuffer> = new Set();
  /** @internal Cache keys of the bind groups it replays (kept cached while it lives). */
  readonly groups: string[] = [];
  #disposed = false;

  /** @internal Made by {@link Gpu.endCapture}. */
  constructor(gpu: Gpu, commands: CapturedCommand[], staging: GPUBuffer[], dispatches: number) {
    this.gpu = gpu;
    this.commands = commands;
    this.staging = staging;
    this.dispatches = dispatches;
  }

  /** Records the captured commands again (they run at the next flush or readback). */
  replay(): void {
    if (this.#disposed) throw new Error("capture: replay after dispose");
    this.gpu.replayCommands(this);
  }

  /** Frees the workspace the capture reserved (buffers go back to the pool). */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.gpu.releaseCapture(this);
  }
}
