/**
 * WebGPU adapters and devices: acquisition, limits, the pipeline cache, command batching, buffer
 * pooling, readback and error reporting. One {@link Gpu} wraps one `GPUDevice`; several can be open at
 * once so that a model's layers can be split across devices.
 * @module
 */
import type { DType } from "./dtype.ts";
import { GpuError, NO_ADAPTER_HELP } from "./errors.ts";
import { composeShader, loadShaderSource } from "./shader.ts";

/** Options for {@link Gpu.open}. */
export interface GpuOptions {
  /** Caps the bytes of one storage binding below the adapter's limit (tests use it to force chunking). */
  maxBindingBytes?: number;
  /** Requested power preference. */
  powerPreference?: GPUPowerPreference;
  /** Prints nothing (the f16 fallback warning included). */
  quiet?: boolean;
  /** A label for messages and reports, e.g. `gpu0`. */
  label?: string;
  /** Act as if the adapter lacked `shader-f16` (tests the f32 fallback). */
  disableF16?: boolean;
}

/** Adapter facts keg reports to the user. */
export interface GpuReport {
  label: string;
  description: string;
  vendor: string;
  isFallbackAdapter: boolean;
  shaderF16: boolean;
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  /** The binding cap keg uses (≤ maxStorageBufferBindingSize). */
  maxBindingBytes: number;
  /** The native API Deno chose: `DENO_WEBGPU_BACKEND` when set, else inferred (`gl` has no f16 here). */
  backend: string;
}

/** A pipeline request: shader family, entry point, type aliases and override constants. */
export interface PipelineSpec {
  family: string;
  entry: string;
  types?: Record<string, DType>;
  constants?: Record<string, number>;
}

/**
 * The backend of an adapter. Deno's WebGPU does not expose it; `DENO_WEBGPU_BACKEND` (a comma list)
 * decides when set, and otherwise a GL adapter is recognised by what Deno's GL backend lacks here
 * (`shader-f16` on a software adapter whose subgroups span 4…128 lanes).
 */
export function adapterBackend(adapter: GPUAdapter): string {
  const env = Deno.env.get("DENO_WEBGPU_BACKEND")?.trim().toLowerCase();
  if (env && !env.includes(",")) return env === "gles" || env === "opengl" ? "gl" : env;
  const info = adapter.info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number };
  const software = info.isFallbackAdapter || /llvmpipe|swiftshader/i.test(info.description ?? "");
  if (software && !adapter.features.has("shader-f16") && info.subgroupMaxSize !== info.subgroupMinSize) {
    return "gl";
  }
  return Deno.build.os === "darwin" ? "metal" : Deno.build.os === "windows" ? "dx12" : "vulkan";
}

/** The one-time warning for a GL / fallback adapter without f16, naming the fix. */
export const GL_ADAPTER_HELP: string = [
  "running on a GL adapter (no shader-f16; about 10x slower than Vulkan on this machine).",
  "Fix: run `./keg setup` (installs lavapipe, Vulkan on the CPU: apt-get install -y mesa-vulkan-drivers",
  "libvulkan1) or, where a Vulkan driver exists, set DENO_WEBGPU_BACKEND=vulkan.",
].join(" ");

let glWarned = false;
function slowAdapterWarning(gpu: Gpu, opts: GpuOptions): void {
  if (glWarned || opts.quiet) return;
  glWarned = true;
  console.error(`keg warning (${gpu.label}): ${GL_ADAPTER_HELP}`);
}

const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** One WebGPU device with keg's helpers. */
export class Gpu {
  /** The underlying WebGPU device. */
  readonly device: GPUDevice;
  /** Whether `shader-f16` is enabled; when false, f16 tensors are stored as f32. */
  readonly f16: boolean;
  /** The largest byte size keg binds as one storage buffer; larger tensors are chunked. */
  readonly maxBindingBytes: number;
  /** Adapter facts. */
  readonly report: GpuReport;
  /** Label used in messages. */
  readonly label: string;

  #pipelines = new Map<string, Promise<GPUComputePipeline>>();
  #encoder: GPUCommandEncoder | null = null;
  #encoderOps: string[] = [];
  #transient: GPUBuffer[] = [];
  #pendingErrors: Promise<void>[] = [];
  #pool = new Map<number, GPUBuffer[]>();
  #pooledBytes = 0;
  #liveBytes = 0;
  #peakBytes = 0;
  #quiet: boolean;
  #warned = new Set<string>();

  private constructor(device: GPUDevice, adapter: GPUAdapter, f16: boolean, opts: GpuOptions) {
    this.device = device;
    this.f16 = f16;
    this.label = opts.label ?? "gpu0";
    this.#quiet = opts.quiet ?? false;
    const lim = device.limits;
    this.maxBindingBytes = Math.min(
      lim.maxStorageBufferBindingSize,
      lim.maxBufferSize,
      opts.maxBindingBytes ?? Infinity,
    );
    const info = adapter.info;
    this.report = {
      label: this.label,
      description: info.description || info.device || "unknown adapter",
      vendor: info.vendor,
      isFallbackAdapter: info.isFallbackAdapter ?? false,
      shaderF16: f16,
      maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize,
      maxBufferSize: lim.maxBufferSize,
      maxComputeWorkgroupStorageSize: lim.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: lim.maxComputeInvocationsPerWorkgroup,
      maxBindingBytes: this.maxBindingBytes,
      backend: adapterBackend(adapter),
    };
    device.lost.then((info) => {
      if (info.reason !== "destroyed") console.error(`keg: ${this.label} lost: ${info.message}`);
    });
  }

  /** Opens one device on a fresh adapter, with the adapter's largest limits and `shader-f16` if present. */
  static async open(opts: GpuOptions = {}): Promise<Gpu> {
    if (typeof navigator === "undefined" || !("gpu" in navigator) || !navigator.gpu) {
      throw new GpuError("gpu.open", NO_ADAPTER_HELP);
    }
    const adapter = await navigator.gpu.requestAdapter({ powerPreference: opts.powerPreference });
    if (!adapter) throw new GpuError("gpu.open", NO_ADAPTER_HELP);
    const f16 = adapter.features.has("shader-f16") && !opts.disableF16;
    const al = adapter.limits;
    const requiredLimits: Record<string, number> = {
      maxStorageBufferBindingSize: al.maxStorageBufferBindingSize,
      maxBufferSize: al.maxBufferSize,
      maxComputeWorkgroupStorageSize: al.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: al.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: al.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupSizeY: al.maxComputeWorkgroupSizeY,
      maxStorageBuffersPerShaderStage: al.maxStorageBuffersPerShaderStage,
      maxComputeWorkgroupsPerDimension: al.maxComputeWorkgroupsPerDimension,
    };
    const device = await adapter.requestDevice({
      requiredFeatures: f16 ? ["shader-f16"] : [],
      requiredLimits,
    });
    const gpu = new Gpu(device, adapter, f16, opts);
    if (gpu.report.backend === "gl") {
      slowAdapterWarning(gpu, opts);
    } else if (!f16) {
      gpu.warnOnce("f16", "adapter lacks shader-f16: f16 tensors are stored and computed as f32");
    }
    return gpu;
  }

  /** Opens `n` devices (one adapter each; on a single-GPU machine they share the hardware). */
  static async openMany(n: number, opts: GpuOptions = {}): Promise<Gpu[]> {
    const out: Gpu[] = [];
    for (let i = 0; i < n; i++) out.push(await Gpu.open({ ...opts, label: `gpu${i}` }));
    return out;
  }

  /** Whether the adapter runs shaders on the CPU (lavapipe/llvmpipe, SwiftShader, WARP, a fallback adapter). */
  get isCpuAdapter(): boolean {
    const r = this.report;
    return r.isFallbackAdapter || /llvmpipe|lavapipe|swiftshader|warp|\bcpu\b/i.test(r.description);
  }

  /** Prints a warning once per key (stderr), unless quiet. */
  warnOnce(key: string, message: string): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    if (!this.#quiet) console.error(`keg warning (${this.label}): ${message}`);
  }

  /** The storage type actually used for a requested type (f16 falls back to f32 without shader-f16). */
  storageType(dtype: DType): DType {
    return dtype === "f16" && !this.f16 ? "f32" : dtype;
  }

  /** Compiles (or returns the cached) compute pipeline for a spec. Compile errors name the op. */
  pipeline(spec: PipelineSpec): Promise<GPUComputePipeline> {
    const types = spec.types ?? {};
    const key = JSON.stringify([spec.family, spec.entry, types, spec.constants ?? {}]);
    let p = this.#pipelines.get(key);
    if (!p) {
      p = (async () => {
        const code = composeShader(await loadShaderSource(spec.family), types);
        this.device.pushErrorScope("validation");
        const module = this.device.createShaderModule({ code, label: spec.family });
        const err = await this.device.popErrorScope();
        if (err) throw new GpuError(`${spec.family}.${spec.entry}`, `shader compile failed: ${err.message}`);
        try {
          return await this.device.createComputePipelineAsync({
            layout: "auto",
            label: `${spec.family}.${spec.entry}`,
            compute: { module, entryPoint: spec.entry, constants: spec.constants },
          });
        } catch (e) {
          throw new GpuError(
            `${spec.family}.${spec.entry}`,
            `pipeline creation failed: ${(e as Error).message}`,
          );
        }
      })();
      p.catch(() => this.#pipelines.delete(key));
      this.#pipelines.set(key, p);
    }
    return p;
  }

  /** Allocates a storage buffer (from the pool when one of that size is free). */
  createStorage(bytes: number, op: string): GPUBuffer {
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    if (size > this.device.limits.maxBufferSize) {
      throw new GpuError(
        op,
        `buffer of ${size} bytes exceeds this adapter's maxBufferSize ${this.device.limits.maxBufferSize}`,
      );
    }
    const pooled = this.#pool.get(size);
    if (pooled && pooled.length) {
      this.#pooledBytes -= size;
      return pooled.pop()!;
    }
    this.device.pushErrorScope("out-of-memory");
    this.device.pushErrorScope("validation");
    const buf = this.device.createBuffer({ size, usage: STORAGE, label: op });
    this.#trackScopes(op, 2);
    this.#liveBytes += size;
    this.#peakBytes = Math.max(this.#peakBytes, this.#liveBytes);
    return buf;
  }

  /** Returns a storage buffer to the pool (small buffers) or destroys it. */
  release(buf: GPUBuffer): void {
    const size = buf.size;
    if (size <= 64 << 20 && this.#pooledBytes + size <= 512 << 20) {
      const list = this.#pool.get(size) ?? [];
      list.push(buf);
      this.#pool.set(size, list);
      this.#pooledBytes += size;
      return;
    }
    this.#liveBytes -= size;
    this.#transient.push(buf);
  }

  /** Bytes of storage buffers currently allocated (pooled ones included) and the peak so far. */
  memory(): { liveBytes: number; peakBytes: number; pooledBytes: number } {
    return { liveBytes: this.#liveBytes, peakBytes: this.#peakBytes, pooledBytes: this.#pooledBytes };
  }

  /** Resets the peak-memory counter to the current live bytes. */
  resetPeak(): void {
    this.#peakBytes = this.#liveBytes;
  }

  /** Writes host data into a buffer at a byte offset (after all work recorded so far). */
  write(buf: GPUBuffer, offset: number, data: ArrayBufferView): void {
    this.flush(); // recorded work that reads a reused buffer must run before the write lands
    const bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4 === 0) {
      this.device.queue.writeBuffer(buf, offset, bytes);
    } else {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      this.device.queue.writeBuffer(buf, offset, padded);
    }
  }

  /**
   * Records one compute dispatch into the current batch. `uniforms` (u32/f32 words) become binding 0 when
   * given; `buffers` follow in binding order (`null` skips a binding the entry point does not use). Nothing runs until {@link flush} or a readback.
   */
  dispatch(
    op: string,
    pipeline: GPUComputePipeline,
    buffers: (GPUBuffer | GPUBufferBinding | null)[],
    workgroups: [number, number?, number?],
    uniforms?: Uint32Array,
  ): void {
    const maxWg = this.device.limits.maxComputeWorkgroupsPerDimension;
    for (const w of workgroups) {
      if (w !== undefined && (w > maxWg || w < 0 || !Number.isInteger(w))) {
        throw new GpuError(op, `dispatch size ${JSON.stringify(workgroups)} exceeds ${maxWg} per dimension`);
      }
    }
    if (workgroups.some((w) => w === 0)) return;
    const entries: GPUBindGroupEntry[] = [];
    let binding = 0;
    if (uniforms) {
      const ub = this.device.createBuffer({
        size: Math.max(16, Math.ceil(uniforms.byteLength / 16) * 16),
        usage: GPUBufferUsage.UNIFORM,
        mappedAtCreation: true,
      });
      new Uint32Array(ub.getMappedRange()).set(uniforms);
      ub.unmap();
      this.#transient.push(ub);
      entries.push({ binding: binding++, resource: { buffer: ub } });
    }
    for (const b of buffers) {
      const at = binding++;
      if (b) entries.push({ binding: at, resource: b instanceof GPUBuffer ? { buffer: b } : b });
    }
    this.device.pushErrorScope("validation");
    const group = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
    const enc = this.#encoder ??= this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1);
    pass.end();
    this.#trackScopes(op, 1);
    this.#encoderOps.push(op);
    if (this.#encoderOps.length >= 256) this.flush();
  }

  /** Records a buffer-to-buffer copy into the current batch. */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    const enc = this.#encoder ??= this.device.createCommandEncoder();
    enc.copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
    this.#encoderOps.push("copy");
  }

  /** Submits the recorded batch. */
  flush(): void {
    if (!this.#encoder) return;
    const ops = this.#encoderOps.slice(-8).join(", ");
    this.device.pushErrorScope("out-of-memory");
    this.device.pushErrorScope("validation");
    this.device.queue.submit([this.#encoder.finish()]);
    this.#trackScopes(`batch [${ops}]`, 2);
    this.#encoder = null;
    this.#encoderOps = [];
    const done = this.#transient;
    this.#transient = [];
    if (done.length) {
      this.device.queue.onSubmittedWorkDone().then(() => done.forEach((b) => b.destroy()));
    }
  }

  /** Flushes, waits for the GPU to finish, and throws the first GPU error recorded since the last sync. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    await this.#checkErrors();
  }

  /** Copies `bytes` from a buffer at `offset` back to the host. */
  async read(buf: GPUBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({
      size: Math.max(4, size),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    this.copy(buf, offset, staging, 0, size);
    this.flush();
    await staging.mapAsync(GPUMapMode.READ);
    const out = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    staging.destroy();
    await this.#checkErrors();
    return out;
  }

  /** Waits for all work and releases the device. */
  async destroy(): Promise<void> {
    try {
      await this.sync();
    } finally {
      for (const list of this.#pool.values()) list.forEach((b) => b.destroy());
      this.#pool.clear();
      this.device.destroy();
    }
  }

  #trackScopes(op: string, n: number): void {
    for (let i = 0; i < n; i++) {
      const p = this.device.popErrorScope().then((err) => {
        if (err) throw new GpuError(op, err.message);
      });
      p.catch(() => {}); // observed in #checkErrors
      this.#pendingErrors.push(p);
    }
  }

  async #checkErrors(): Promise<void> {
    const pending = this.#pendingErrors;
    this.#pendingErrors = [];
    const results = await Promise.allSettled(pending);
    const bad = results.find((r) => r.status === "rejected") as PromiseRejectedResult | undefined;
    if (bad) throw bad.reason;
  }
}
