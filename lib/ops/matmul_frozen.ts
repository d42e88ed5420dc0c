/**
 * Packed textures of operands that stay fixed for a while, on CPU adapters. Between
 * {@link freezeOperands} and its `release()`, the caller promises that the given buffers are not
 * written; `mm_rows` then reads an op(B) held in one of them (a weight: v* runs the same few-row products
 * against the same weights every step) from a texture packed on first use, instead of from storage. On
 * lavapipe a storage read is a per-lane loop with bounds checks (≈65 cycles per SIMD group for a vec4)
 * while a storage-texture load costs ≈7, and op(B) is most of what a few-row product reads.
 *
 * Textures are kept per (buffer, slice layout) up to a byte budget (beyond it products read storage as
 * before) and destroyed by the release that unfreezes their buffer.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";

/** Bytes of frozen-operand textures a device keeps at most (default of {@link freezeOperands}). */
export const FROZEN_TEXTURE_BYTES = 512 << 20;

interface Entry {
  tex: GPUTexture;
  view: GPUTextureView;
  bytes: number;
}

interface FrozenState {
  /** Buffer → number of live scopes freezing it. */
  counts: Map<GPUBuffer, number>;
  textures: Map<GPUBuffer, Map<string, Entry>>;
  bytes: number;
  budget: number;
}

const states = new WeakMap<Gpu, FrozenState>();

/** A freeze scope (see {@link freezeOperands}). */
export interface FrozenOperands {
  /**
   * Ends the scope: buffers no other scope freezes are writable again and their textures are destroyed
   * (after submitting recorded work). Dispose captures that replay products reading them first.
   */
  release(): void;
}

/**
 * Declares `buffers` unchanged until the returned scope's `release()`, so that few-row products on a CPU
 * adapter may read them through packed textures (see the module doc). A no-op on other adapters. Scopes
 * nest: a buffer stays frozen while any scope holding it is live. `budget`: texture bytes kept at most
 * on this device (the first scope's value holds).
 */
export function freezeOperands(
  gpu: Gpu,
  buffers: Iterable<GPUBuffer>,
  opts: { budget?: number } = {},
): FrozenOperands {
  if (!gpu.isCpuAdapter) return { release() {} };
  let st = states.get(gpu);
  if (!st) {
    st = { counts: new Map(), textures: new Map(), bytes: 0, budget: opts.budget ?? FROZEN_TEXTURE_BYTES };
    states.set(gpu, st);
  }
  const mine = [...new Set(buffers)];
  for (const b of mine) st.counts.set(b, (st.counts.get(b) ?? 0) + 1);
  let live = true;
  return {
    release() {
      if (!live) return;
      live = false;
      const s = states.get(gpu)!;
      const dropped: Entry[] = [];
      for (const b of mine) {
        const c = (s.counts.get(b) ?? 1) - 1;
        if (c > 0) {
          s.counts.set(b, c);
          continue;
        }
        s.counts.delete(b);
        for (const e of s.textures.get(b)?.values() ?? []) dropped.push(e);
        s.textures.delete(b);
      }
      if (!dropped.length) return;
      gpu.flush();
      for (const e of dropped) {
        gpu.destroyTexture(e.tex, [e.view]);
        s.bytes -= e.bytes;
      }
    },
  };
}

/** Whether `buf` is frozen on this device now. */
export function isFrozen(gpu: Gpu, buf: GPUBuffer): boolean {
  return !!states.get(gpu)?.counts.has(buf);
}

/**
 * @internal The texture (w × h texels, rgba32float) holding a frozen buffer's operand in the layout `key`
 * describes; `pack` fills a new one (recorded in command order). Null when `buf` is not frozen, the
 * texture would exceed the device's dimensions or the budget.
 */
export async function frozenTexture(
  gpu: Gpu,
  buf: GPUBuffer,
  key: string,
  w: number,
  h: number,
  pack: (target: { tex: GPUTexture; view: GPUTextureView }) => Promise<void>,
): Promise<GPUTextureView | null> {
  const st = states.get(gpu);
  if (!st?.counts.has(buf)) return null;
  let perBuf = st.textures.get(buf);
  const hit = perBuf?.get(key);
  if (hit) return hit.view;
  const max = gpu.device.limits.maxTextureDimension2D;
  const bytes = w * h * 16;
  if (w > max || h > max || w === 0 || h === 0 || st.bytes + bytes > st.budget) return null;
  const tex = gpu.device.createTexture({
    label: `frozen operand ${key}`,
    size: [w, h],
    format: "rgba32float",
    usage: GPUTextureUsage.STORAGE_BINDING | GPUTextureUsage.COPY_DST,
  });
  const e = { tex, view: tex.createView(), bytes };
  await pack(e);
  if (!perBuf) st.textures.set(buf, perBuf = new Map());
  perBuf.set(key, e);
  st.bytes += bytes;
  return e.view;
}
