/**
 * Virtual devices for `keg plan`: a stand-in `GPUDevice` behind the ordinary {@link Gpu} class, so that
 * every allocation goes through the same buffer pool and peak accounting (`Gpu.memory()`) as on a real
 * device, while nothing is allocated on any hardware and no shader runs.
 *
 * Buffer contents are never computed. A buffer reads back what the host last wrote into it
 * (`queue.writeBuffer`, or zeros after `clearBuffer`; copies carry contents along), and a buffer nothing
 * wrote reads as f32 0.5 everywhere. Once a buffer is bound to a dispatch, any value in it that is not a
 * finite f32 (or f16) number, or is a denormal-sized f32 (an integer's bits), reads as 0.5 (a pooled buffer that held integer ids may become a kernel's
 * float output). Host-side decisions therefore follow the ordinary path: a NaN counter written as 0 reads
 * 0, keys and values read 0.5 (finite, non-zero), losses stay finite.
 * @module
 */
import { Gpu, type GpuOptions } from "./device.ts";

/** What a virtual device pretends to be. */
export interface VirtualGpuOptions {
  /** Adapter description; a CPU-like one (e.g. "llvmpipe") makes keg pick its CPU kernels. */
  description?: string;
  /** Whether shader-f16 is present (default true). */
  f16?: boolean;
  /** Device limits (default: {@link DEFAULT_VIRTUAL_LIMITS}); copy a real device's to mimic it. */
  limits?: Partial<Record<string, number>>;
  /** Caps one storage binding (as {@link GpuOptions.maxBindingBytes}). */
  maxBindingBytes?: number;
}

/**
 * Limits of a typical discrete GPU under Deno's WebGPU (Vulkan): 2 GiB bindings and buffers, 32 KiB of
 * workgroup memory, 1024 invocations.
 */
export const DEFAULT_VIRTUAL_LIMITS: Readonly<Record<string, number>> = {
  maxStorageBufferBindingSize: 2 ** 31 - 4,
  maxBufferSize: 2 ** 31 - 4,
  maxComputeWorkgroupStorageSize: 32768,
  maxComputeInvocationsPerWorkgroup: 1024,
  maxComputeWorkgroupSizeX: 1024,
  maxComputeWorkgroupSizeY: 1024,
  maxComputeWorkgroupSizeZ: 64,
  maxComputeWorkgroupsPerDimension: 65535,
  maxStorageBuffersPerShaderStage: 16,
  maxUniformBufferBindingSize: 65536,
  maxBindGroups: 4,
  maxTextureDimension2D: 8192,
};

/** f32 0.5, the value of a buffer nothing wrote. */
const PATTERN_WORD = new Uint32Array(new Float32Array([0.5]).buffer)[0];

type Fill = { kind: "pattern" } | { kind: "zero" } | { kind: "bytes"; data: Uint8Array };

/** A buffer that holds only what the host wrote into it. */
class VirtualBuffer {
  readonly size: number;
  readonly usage: number;
  readonly label: string;
  #fill: Fill = { kind: "pattern" };
  #mapped: ArrayBuffer | null = null;
  #clean = true;

  constructor(d: GPUBufferDescriptor) {
    this.size = d.size;
    this.usage = d.usage;
    this.label = d.label ?? "";
    // a buffer mapped at creation (staging, uniforms): what the host puts in the mapped range is its content
    if (d.mappedAtCreation) {
      const data = new Uint8Array(d.size);
      this.#fill = { kind: "bytes", data };
      this.#mapped = data.buffer;
      this.#clean = false;
    }
  }

  /** Contents of bytes [at, at + n). */
  bytes(at: number, n: number): Uint8Array {
    const f = this.#fill;
    if (f.kind === "bytes") return f.data.slice(at, at + n);
    if (f.kind === "zero") return new Uint8Array(n);
    // whole f32 words of 0.5, then the bytes [at, at + n) of that pattern
    const words = new Uint32Array(Math.ceil((n + (at % 4)) / 4) + 1).fill(PATTERN_WORD);
    return new Uint8Array(words.buffer, at % 4, n).slice();
  }

  write(at: number, src: Uint8Array): void {
    this.#clean = false;
    if (at === 0 && src.length === this.size) {
      this.#fill = { kind: "bytes", data: src.slice() };
      return;
    }
    if (this.#fill.kind !== "bytes") this.#fill = { kind: "bytes", data: this.bytes(0, this.size) };
    this.#fill.data.set(src, at);
  }

  /** Takes over another buffer's contents without materialising unwritten ones. */
  copyFrom(src: VirtualBuffer, so: number, at: number, n: number): void {
    if (at === 0 && n === this.size && src.#fill.kind !== "bytes") this.#fill = { ...src.#fill };
    else this.write(at, src.bytes(so, n));
  }

  clear(): void {
    this.#fill = { kind: "zero" };
  }

  /** Bound to a dispatch: non-finite f32 words and f16 halves become 0.5 (see the module documentation). */
  bind(): void {
    if (this.#clean || this.#fill.kind !== "bytes") return;
    this.#clean = true;
    const b = this.#fill.data;
    const n = b.byteLength >> 2;
    const f = new Float32Array(b.buffer, b.byteOffset, n);
    for (let i = 0; i < n; i++) {
      const x = f[i];
      if (!Number.isFinite(x) || (x !== 0 && Math.abs(x) < 1e-30)) f[i] = 0.5; // NaN/inf, or an integer's bits
    }
    const h = new Uint16Array(b.buffer, b.byteOffset, n * 2);
    for (let i = 0; i < h.length; i++) if ((h[i] & 0x7c00) === 0x7c00) h[i] = 0x3800;
  }

  mapAsync(): Promise<void> {
    return Promise.resolve();
  }

  getMappedRange(offset = 0, size?: number): ArrayBuffer {
    this.#mapped ??= this.bytes(0, this.size).buffer as ArrayBuffer;
    const end = size === undefined ? this.size : offset + size;
    return offset === 0 && end === this.size ? this.#mapped : this.#mapped.slice(offset, end);
  }

  unmap(): void {
    this.#mapped = null;
  }

  destroy(): void {
    this.#fill = { kind: "pattern" };
  }
}

// Virtual buffers pass the `instanceof GPUBuffer` checks of the dispatch engine (their own fields and
// methods shadow the prototype's).
if (typeof GPUBuffer !== "undefined") Object.setPrototypeOf(VirtualBuffer.prototype, GPUBuffer.prototype);

/** A texture view (the CPU-adapter matmul binds its packed operands as textures; they hold nothing here). */
class VirtualTextureView {
  readonly label: string;
  constructor(label: string) {
    this.label = label;
  }
}
if (typeof GPUTextureView !== "undefined") {
  Object.setPrototypeOf(VirtualTextureView.prototype, GPUTextureView.prototype);
}

/** A texture: keg's Gpu does not count textures in its memory figures, and neither does this. */
function virtualTexture(d: GPUTextureDescriptor): GPUTexture {
  const label = d.label ?? "";
  return { label, createView: () => new VirtualTextureView(label), destroy: noop } as unknown as GPUTexture;
}

function asBuffer(b: unknown): VirtualBuffer {
  if (!(b instanceof VirtualBuffer)) throw new Error("virtual device: a buffer of another device was used");
  return b;
}

const noop = (): void => {};

/**
 * A command encoder that records nothing but copies and clears (which it applies at once; a copy into a
 * texture only checks its source, textures hold nothing here).
 */
function encoder(): GPUCommandEncoder {
  const pass = { setPipeline: noop, setBindGroup: noop, dispatchWorkgroups: noop, end: noop };
  const enc = {
    beginComputePass: () => pass,
    copyBufferToBuffer: (src: unknown, so: number, dst: unknown, at: number, n: number) =>
      asBuffer(dst).copyFrom(asBuffer(src), so, at, n),
    clearBuffer: (b: unknown) => asBuffer(b).clear(),
    copyBufferToTexture: (src: { buffer: unknown }) => void asBuffer(src.buffer),
    finish: () => ({}),
  };
  return enc as unknown as GPUCommandEncoder;
}

/** The stand-in GPUDevice and GPUAdapter of one virtual device. */
function virtualDevice(o: VirtualGpuOptions): { device: GPUDevice; adapter: GPUAdapter } {
  const limits = { ...DEFAULT_VIRTUAL_LIMITS, ...o.limits };
  const features = new Set<string>(o.f16 === false ? [] : ["shader-f16"]);
  const pipeline = { getBindGroupLayout: () => ({}) };
  const device = {
    limits,
    features,
    lost: new Promise<never>(noop),
    pushErrorScope: noop,
    popErrorScope: () => Promise.resolve(null),
    createBuffer: (d: GPUBufferDescriptor) => new VirtualBuffer(d),
    createShaderModule: () => ({}),
    createTexture: virtualTexture,
    createComputePipelineAsync: () => Promise.resolve(pipeline),
    createComputePipeline: () => pipeline,
    createBindGroup: (d: GPUBindGroupDescriptor) => {
      for (const e of d.entries) {
        const r = e.resource as unknown;
        if (r instanceof VirtualBuffer) r.bind();
        else if (r && typeof r === "object" && (r as { buffer?: unknown }).buffer instanceof VirtualBuffer) {
          (r as { buffer: VirtualBuffer }).buffer.bind();
        }
      }
      return {};
    },
    createCommandEncoder: encoder,
    queue: {
      writeBuffer: (b: unknown, at: number, data: BufferSource, dataOffset = 0, size?: number) => {
        const view = ArrayBuffer.isView(data)
          ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
          : new Uint8Array(data);
        asBuffer(b).write(at, view.subarray(dataOffset, size === undefined ? undefined : dataOffset + size));
      },
      submit: noop,
      onSubmittedWorkDone: () => Promise.resolve(),
    },
    destroy: noop,
  };
  const adapter = {
    info: {
      description: o.description ?? "keg virtual device",
      vendor: "keg",
      device: "virtual",
      architecture: "",
      isFallbackAdapter: false,
    },
    features,
    limits,
  };
  return { device: device as unknown as GPUDevice, adapter: adapter as unknown as GPUAdapter };
}

/** Opens `n` virtual devices labelled gpu0… (see the module documentation). */
export function openVirtual(n: number, o: VirtualGpuOptions = {}): Gpu[] {
  const out: Gpu[] = [];
  for (let i = 0; i < n; i++) {
    const { device, adapter } = virtualDevice(o);
    const opts: GpuOptions = { label: `gpu${i}`, quiet: true, maxBindingBytes: o.maxBindingBytes };
    out.push(Gpu.fromDevice(device, adapter, o.f16 !== false, opts));
  }
  return out;
}

/** Virtual devices that mimic a real one (its limits, f16 support, binding cap and adapter kind). */
export function virtualLike(gpu: Gpu, n: number): Gpu[] {
  const limits: Record<string, number> = {};
  for (const k of Object.keys(DEFAULT_VIRTUAL_LIMITS)) {
    const v = (gpu.device.limits as unknown as Record<string, number>)[k];
    if (typeof v === "number") limits[k] = v;
  }
  return openVirtual(n, {
    description: `${gpu.report.description} (virtual)`,
    f16: gpu.f16,
    limits,
    maxBindingBytes: gpu.maxBindingBytes,
  });
}
