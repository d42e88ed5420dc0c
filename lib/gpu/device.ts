/**
 * WebGPU adapters and devices: acquisition, limits, the pipeline cache, command batching, buffer
 * pooling, readback and error reporting. One {@link Gpu} wraps one `GPUDevice`; several can be open at
 * once so that a model's layers can be split across devices.
 * @module
 */
import type { DType } from "./dtype.ts";
import { GpuError, NO_ADAPTER_HELP } from "./errors.ts";
import { composeShader, loadShaderSource } from "./shader.ts";
import { Capture, CaptureRecorder, type TextureCopy } from "./capture.ts";
import { emptyCounters, type GpuCounters, GpuProfiler, type ProfileReport } from "./profile.ts";

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

/**
 * A pipeline request: shader family, entry point, type aliases, override constants and `consts`
 * (u32 module constants prepended to the source; see {@link composeShader}).
 */
export interface PipelineSpec {
  family: string;
  entry: string;
  types?: Record<string, DType>;
  constants?: Record<string, number>;
  consts?: Record<string, number>;
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

/** One binding of a dispatch: a whole buffer, a buffer range, a texture view, or none (skipped). */
export type Binding = GPUBuffer | GPUBufferBinding | GPUTextureView | null;

/** A cached bind group and the resources it binds. */
interface BindEntry {
  group: GPUBindGroup;
  /** The buffers and texture views it binds (apart from its uniform buffer). */
  resources: (GPUBuffer | GPUTextureView)[];
  uniform: GPUBuffer | null;
  /** Live captures that replay this group. */
  pins: number;
}

/** Dispatches per submitted batch. */
const BATCH_OPS = 1024;
/** Cached bind groups per device before the cache is dropped and rebuilt. */
const GROUP_CACHE_MAX = 16384;
/** Bytes of one in-stream staging buffer for host writes. */
const STAGING_BYTES = 1 << 20;
/** Writes larger than this submit pending work and go straight to the queue. */
const STAGING_MAX_WRITE = 4 << 20;

const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** The invocation-wide loop cap of llvmpipe (LP_MAX_TGSI_LOOP_ITERATIONS). */
export const LLVMPIPE_LOOP_LIMIT = 65535;

/** Devices opened by {@link Gpu.open} and not destroyed yet (held weakly: an unreachable one may be collected). */
const openDevices = new Set<WeakRef<Gpu>>();

/** Whether an adapter description names llvmpipe / lavapipe (whose loops stop at {@link LLVMPIPE_LOOP_LIMIT}). */
export function hasLoopLimit(description: string): boolean {
  return /llvmpipe|lavapipe/i.test(description);
}

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
  #pass: GPUComputePassEncoder | null = null;
  #groupCacheMax = GROUP_CACHE_MAX;
  #passPipeline: GPUComputePipeline | null = null;
  #encoderOps: string[] = [];
  #transient: GPUBuffer[] = [];
  #pendingErrors: Promise<void>[] = [];
  #pool = new Map<number, GPUBuffer[]>();
  #pooledBytes = 0;
  #liveBytes = 0;
  #peakBytes = 0;
  #quiet: boolean;
  #warned = new Set<string>();
  #ids = new WeakMap<object, number>();
  #nextId = 1;
  #groups = new Map<string, BindEntry>();
  #groupsOf = new Map<GPUBuffer | GPUTextureView, Set<string>>();
  #staging: { buf: GPUBuffer; bytes: Uint8Array; used: number } | null = null;
  #capture: CaptureRecorder | null = null;
  #pinned = new Map<GPUBuffer, Capture>();
  #destroyed = false;
  #openRef: WeakRef<Gpu> | null = null;
  #liveCaptures = 0;
  #profiler: GpuProfiler | null = null;
  #counters: GpuCounters = emptyCounters();

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
    const features: GPUFeatureName[] = f16 ? ["shader-f16"] : [];
    if (adapter.features.has("timestamp-query")) features.push("timestamp-query");
    const device = await adapter.requestDevice({
      requiredFeatures: features,
      requiredLimits,
    });
    const gpu = new Gpu(device, adapter, f16, opts);
    openDevices.add(gpu.#openRef = new WeakRef(gpu));
    if (gpu.report.backend === "gl") {
      slowAdapterWarning(gpu, opts);
    } else if (!f16) {
      gpu.warnOnce("f16", "adapter lacks shader-f16: f16 tensors are stored and computed as f32");
    }
    return gpu;
  }

  /**
   * A Gpu over a device and adapter that were not opened by {@link open}: keg plan's virtual device
   * (lib/gpu/virtual.ts), which allocates and dispatches nothing but keeps this class's accounting.
   */
  static fromDevice(device: GPUDevice, adapter: GPUAdapter, f16: boolean, opts: GpuOptions = {}): Gpu {
    return new Gpu(device, adapter, f16, opts);
  }

  /** Opens `n` devices (one adapter each; on a single-GPU machine they share the hardware). */
  static async openMany(n: number, opts: GpuOptions = {}): Promise<Gpu[]> {
    const out: Gpu[] = [];
    for (let i = 0; i < n; i++) out.push(await Gpu.open({ ...opts, label: `gpu${i}` }));
    return out;
  }

  /**
   * Loop iterations one shader invocation may run: llvmpipe stops all of an invocation's loops after
   * {@link LLVMPIPE_LOOP_LIMIT} back-edges, silently, so kernels there keep under 90 % of it; unbounded
   * elsewhere.
   */
  get loopBudget(): number {
    return hasLoopLimit(this.report.description) ? Math.floor(0.9 * LLVMPIPE_LOOP_LIMIT) : Infinity;
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
    if (this.#profiler?.serial && this.#encoderOps.length) {
      return this.#serialBarrier().then(() => this.pipeline(spec));
    }
    const types = spec.types ?? {};
    const key = JSON.stringify([spec.family, spec.entry, types, spec.constants ?? {}, spec.consts ?? {}]);
    let p = this.#pipelines.get(key);
    if (!p) {
      p = (async () => {
        const code = composeShader(await loadShaderSource(spec.family), types, spec.consts);
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
    const cap = this.#pinned.get(buf);
    if (cap) {
      cap.owned.add(buf); // reserved by a live capture: kept until it is disposed
      return;
    }
    const size = buf.size;
    if (size <= 64 << 20 && this.#pooledBytes + size <= 512 << 20) {
      const list = this.#pool.get(size) ?? [];
      list.push(buf);
      this.#pool.set(size, list);
      this.#pooledBytes += size;
      return;
    }
    if (this.#capture?.touched.has(buf)) {
      // the capture being recorded uses it: it must outlive the recording (endCapture makes it the
      // capture's), or every replay would read a destroyed buffer (seen once the pool was full)
      this.#capture.released.add(buf);
      return;
    }
    this.#liveBytes -= size;
    this.#forgetResource(buf);
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

  /**
   * Writes host data into a buffer at a byte offset, ordered after all work recorded so far. With work
   * pending, small writes travel in the command stream (a staging copy) instead of forcing a submit;
   * large ones (weights) submit the pending work first and go straight to the queue.
   */
  write(buf: GPUBuffer, offset: number, data: ArrayBufferView): void {
    let bytes = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4 !== 0) {
      const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
      padded.set(bytes);
      bytes = padded;
    }
    this.#counters.writes++;
    if (this.#capture) {
      // a replayed write copies from its own staging buffer, filled once
      const staging = this.device.createBuffer({
        size: Math.max(4, bytes.byteLength),
        usage: GPUBufferUsage.COPY_SRC,
        mappedAtCreation: true,
        label: "capture.write",
      });
      new Uint8Array(staging.getMappedRange()).set(bytes);
      staging.unmap();
      this.#capture.staging.push(staging);
      this.#copyCommand(staging, 0, buf, offset, bytes.byteLength, true);
      return;
    }
    if (!this.#encoder || bytes.byteLength > STAGING_MAX_WRITE) {
      this.flush();
      this.device.queue.writeBuffer(buf, offset, bytes);
      return;
    }
    let st = this.#staging;
    if (!st || st.used + bytes.byteLength > st.bytes.byteLength) {
      this.#closeStaging();
      const size = Math.max(STAGING_BYTES, bytes.byteLength);
      const sbuf = this.device.createBuffer({
        size,
        usage: GPUBufferUsage.COPY_SRC,
        mappedAtCreation: true,
        label: "staging",
      });
      st = this.#staging = { buf: sbuf, bytes: new Uint8Array(sbuf.getMappedRange()), used: 0 };
    }
    st.bytes.set(bytes, st.used);
    this.#copyCommand(st.buf, st.used, buf, offset, bytes.byteLength, false);
    st.used += bytes.byteLength;
  }

  /** Records zero-filling a whole buffer into the current batch. */
  clear(buf: GPUBuffer): void {
    const enc = this.#commandEncoder();
    this.#endPass();
    enc.clearBuffer(buf);
    this.#encoderOps.push("clear");
    this.#capture?.commands.push({ kind: "clear", buf });
    this.#capture?.touch(buf);
  }

  /**
   * Records one compute dispatch into the current batch (many dispatches share one compute pass).
   * `uniforms` (u32/f32 words) become binding 0 when given; `buffers` follow in binding order (`null`
   * skips a binding the entry point does not use; a texture view binds a texture). Bind groups and their uniform buffers are cached by
   * (pipeline, buffers, uniform words), so a repeated dispatch costs a map lookup. Nothing runs until
   * {@link flush} or a readback.
   */
  dispatch(
    op: string,
    pipeline: GPUComputePipeline,
    buffers: Binding[],
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
    const group = this.#bindGroup(op, pipeline, buffers, uniforms);
    const x = workgroups[0], y = workgroups[1] ?? 1, z = workgroups[2] ?? 1;
    this.#encodeDispatch(op, pipeline, group, x, y, z);
    this.#counters.dispatches++;
    if (this.#capture) {
      this.#capture.commands.push({ kind: "dispatch", op, pipeline, group, x, y, z });
      for (const b of buffers) {
        if (b instanceof GPUBuffer) this.#capture.touch(b);
        else if (b && !(b instanceof GPUTextureView)) this.#capture.touch(b.buffer);
      }
    }
    if (this.#encoderOps.length >= BATCH_OPS) this.flush();
  }

  /**
   * Records a buffer → texture copy ({@link TextureCopy}) in command order with the dispatches around it
   * (captured and replayed like them).
   */
  copyToTexture(c: TextureCopy): void {
    if (c.width === 0 || c.height === 0) return;
    this.#encodeTexCopy(c);
    if (this.#capture) {
      this.#capture.commands.push({ kind: "texcopy", ...c });
      this.#capture.touch(c.src);
    }
    if (this.#encoderOps.length >= BATCH_OPS) this.flush();
  }

  #encodeTexCopy(c: TextureCopy): void {
    const enc = this.#commandEncoder();
    this.#endPass();
    enc.copyBufferToTexture(
      { buffer: c.src, offset: c.offset, bytesPerRow: c.bytesPerRow },
      { texture: c.texture, origin: [c.x ?? 0, 0] },
      [c.width, c.height],
    );
    this.#encoderOps.push(c.op);
  }

  /** Records a buffer-to-buffer copy into the current batch. */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    this.#copyCommand(src, srcOffset, dst, dstOffset, bytes, !!this.#capture);
  }

  /** Submits the recorded batch (one submit, one pair of error scopes for all of it). */
  flush(): void {
    if (!this.#encoder) return;
    this.#endPass();
    this.#closeStaging();
    const ops = this.#encoderOps;
    const resolve = this.#profiler?.resolve(this.#encoder);
    this.device.queue.submit([this.#encoder.finish()]);
    this.#counters.submits++;
    this.#trackBatchScopes(ops);
    this.#encoder = null;
    this.#encoderOps = [];
    if (resolve) resolve();
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
    if (this.#capture) {
      throw new GpuError("read", "a readback inside a capture: captured work must stay on the GPU");
    }
    const size = Math.ceil(bytes / 4) * 4;
    const staging = this.device.createBuffer({
      size: Math.max(4, size),
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    if (this.#profiler?.serial) await this.#serialBarrier();
    this.copy(buf, offset, staging, 0, size);
    this.flush();
    this.#counters.readbacks++;
    this.#profiler?.readback();
    const t0 = performance.now();
    await staging.mapAsync(GPUMapMode.READ);
    if (this.#profiler?.serial) this.#profiler.addWait((performance.now() - t0) / 1000);
    const out = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    staging.destroy();
    await this.#checkErrors();
    return out;
  }

  /**
   * Starts recording the commands that follow (they still run as usual) into a {@link Capture} that
   * {@link endCapture} returns and {@link Capture.replay} re-records later with no host work: same
   * pipelines, bind groups, workgroup counts and buffers. Readbacks are refused while recording. Every
   * buffer the recorded commands touch stays reserved for the capture until it is disposed (a buffer
   * released meanwhile is kept, not pooled), so a replay never races other work for its workspace.
   */
  beginCapture(): void {
    if (this.#capture) throw new GpuError("capture", "a capture is already being recorded");
    this.#capture = new CaptureRecorder();
  }

  /** Ends the recording started by {@link beginCapture}. */
  endCapture(): Capture {
    const rec = this.#capture;
    if (!rec) throw new GpuError("capture", "endCapture without beginCapture");
    this.#capture = null;
    const cap = new Capture(this, rec.commands, rec.staging, rec.dispatches());
    this.#liveCaptures++;
    for (const k of rec.groups) {
      const e = this.#groups.get(k);
      if (e) e.pins++, cap.groups.push(k);
    }
    for (const b of rec.released) cap.owned.add(b);
    for (const b of rec.touched) {
      this.#pinned.set(b, cap);
      const list = this.#pool.get(b.size);
      const at = list ? list.indexOf(b) : -1;
      if (at >= 0) {
        list!.splice(at, 1);
        this.#pooledBytes -= b.size;
        cap.owned.add(b);
      }
    }
    return cap;
  }

  /** @internal Re-records a capture's commands (see {@link Capture.replay}). */
  replayCommands(cap: Capture): void {
    if (this.#capture) throw new GpuError("capture", "replay inside a capture");
    for (const c of cap.commands) {
      if (c.kind === "dispatch") {
        this.#encodeDispatch(c.op, c.pipeline, c.group, c.x, c.y, c.z);
        this.#counters.replayed++;
      } else if (c.kind === "texcopy") {
        this.#encodeTexCopy(c);
      } else if (c.kind === "copy") {
        const enc = this.#commandEncoder();
        this.#endPass();
        enc.copyBufferToBuffer(c.src, c.srcOffset, c.dst, c.dstOffset, c.bytes);
        this.#encoderOps.push("copy");
      } else {
        const enc = this.#commandEncoder();
        this.#endPass();
        enc.clearBuffer(c.buf);
        this.#encoderOps.push("clear");
      }
    }
    if (this.#encoderOps.length >= BATCH_OPS) this.flush();
  }

  /** @internal Releases what a disposed capture reserved. */
  releaseCapture(cap: Capture): void {
    this.#liveCaptures--;
    for (const [b, c] of this.#pinned) if (c === cap) this.#pinned.delete(b);
    for (const k of cap.groups) {
      const e = this.#groups.get(k);
      if (e) e.pins--;
    }
    for (const b of cap.owned) this.release(b);
    cap.owned.clear();
    this.#transient.push(...cap.staging);
  }

  /**
   * Whether a capture is being recorded or a recorded one is alive: resources its commands may use
   * (buffers, textures, bind groups) must not be destroyed or repurposed meanwhile.
   */
  get capturing(): boolean {
    return this.#capture !== null || this.#liveCaptures > 0;
  }

  /** Counts of recorded and replayed dispatches, submits, readbacks, writes and bind-group cache use. */
  counters(): GpuCounters {
    return { ...this.#counters };
  }

  /** Resets {@link counters}. */
  resetCounters(): void {
    this.#counters = emptyCounters();
  }

  /**
   * Starts GPU timing per op; {@link stopProfile} returns the totals. On a GPU: from timestamp queries
   * (each dispatch then gets its own compute pass); returns false when the adapter lacks
   * `timestamp-query`. On a CPU adapter, whose timestamps do not bracket its kernels (lavapipe writes them
   * without waiting for the dispatch: a 1 s matmul reads as 0.1 ms), `serial` timing: each op's dispatches
   * are submitted alone when the next op starts and waited for, and that wait is the op's time; captures
   * are then not replayed ({@link timesEachOp}), so every op is seen.
   */
  startProfile(): boolean {
    const serial = this.isCpuAdapter;
    if (!serial && !this.device.features.has("timestamp-query")) return false;
    this.flush();
    this.#profiler ??= new GpuProfiler(this.device, serial);
    return true;
  }

  /** True while a serial profile runs: loops should record every step instead of replaying a capture. */
  get timesEachOp(): boolean {
    return !!this.#profiler?.serial;
  }

  /**
   * Serial profiling: submits the ops recorded so far, waits for them and books the wait to them, less
   * the wait's fixed cost. (Deno resolves `onSubmittedWorkDone` and `mapAsync` by a blocking device poll
   * followed by an unconditional 10 ms sleep, so every wait lasts the remaining GPU work + ~10 ms; that
   * floor is measured on empty waits first and subtracted.)
   */
  async #serialBarrier(): Promise<void> {
    const p = this.#profiler;
    if (!p) return;
    if (p.waitFloor === null) {
      // (what is recorded but not yet submitted stays so; the first wait absorbs earlier submits)
      await this.device.queue.onSubmittedWorkDone();
      const waits: number[] = [];
      for (let i = 0; i < 5; i++) {
        const t = performance.now();
        await this.device.queue.onSubmittedWorkDone();
        waits.push((performance.now() - t) / 1000);
      }
      p.waitFloor = waits.sort((a, b) => a - b)[2];
    }
    const ops = this.#encoderOps.filter((o) => o !== "copy" && o !== "clear");
    if (!this.#encoder) return;
    this.flush();
    const t0 = performance.now();
    await this.device.queue.onSubmittedWorkDone();
    const waited = (performance.now() - t0) / 1000;
    p.addSerial(ops.length ? ops : ["copy"], Math.max(0, waited - p.waitFloor), waited);
  }

  /** Stops profiling and returns GPU time per op (waits for outstanding timings). */
  async stopProfile(): Promise<ProfileReport> {
    const p = this.#profiler;
    if (p?.serial) await this.#serialBarrier();
    await this.sync();
    this.#profiler = null;
    return p ? await p.report() : { ops: [], stages: [], gpuSeconds: 0 };
  }

  /**
   * Waits for and releases every device {@link open} returned that is still open (tests call it after their
   * last test, the CLI before it exits), so that no work is in flight and no driver device is left when
   * the process or a test module ends. Errors of one device do not stop the others; the first is thrown.
   */
  static async destroyOpen(): Promise<void> {
    let first: unknown = null;
    for (const ref of [...openDevices]) {
      openDevices.delete(ref);
      try {
        await ref.deref()?.destroy();
      } catch (e) {
        first ??= e;
      }
    }
    if (first !== null) throw first;
  }

  /** Waits for all work and releases the device (once: later calls return at once). */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    if (this.#openRef) openDevices.delete(this.#openRef);
    try {
      await this.sync();
    } finally {
      for (const list of this.#pool.values()) list.forEach((b) => b.destroy());
      this.#pool.clear();
      this.#groups.clear();
      this.#groupsOf.clear();
      this.device.destroy();
    }
  }

  #commandEncoder(): GPUCommandEncoder {
    if (!this.#encoder) {
      this.device.pushErrorScope("out-of-memory");
      this.device.pushErrorScope("validation");
      this.#encoder = this.device.createCommandEncoder();
    }
    return this.#encoder;
  }

  #endPass(): void {
    if (this.#pass) {
      this.#pass.end();
      this.#pass = null;
      this.#passPipeline = null;
    }
  }

  #encodeDispatch(
    op: string,
    pipeline: GPUComputePipeline,
    group: GPUBindGroup,
    x: number,
    y: number,
    z: number,
  ): void {
    const enc = this.#commandEncoder();
    if (this.#profiler && !this.#profiler.serial) {
      this.#endPass();
      const pass = enc.beginComputePass({ timestampWrites: this.#profiler.next(op, enc) });
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(x, y, z);
      pass.end();
    } else {
      const pass = this.#pass ??= enc.beginComputePass();
      if (this.#passPipeline !== pipeline) {
        pass.setPipeline(pipeline);
        this.#passPipeline = pipeline;
      }
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(x, y, z);
    }
    this.#encoderOps.push(op);
  }

  #copyCommand(
    src: GPUBuffer,
    srcOffset: number,
    dst: GPUBuffer,
    dstOffset: number,
    bytes: number,
    record: boolean,
  ): void {
    const enc = this.#commandEncoder();
    this.#endPass();
    enc.copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
    this.#encoderOps.push("copy");
    if (record && this.#capture) {
      this.#capture.commands.push({ kind: "copy", src, srcOffset, dst, dstOffset, bytes });
      this.#capture.touch(src), this.#capture.touch(dst);
    }
  }

  #closeStaging(): void {
    const st = this.#staging;
    if (!st) return;
    st.buf.unmap();
    this.#transient.push(st.buf);
    this.#staging = null;
  }

  #id(o: object): number {
    let id = this.#ids.get(o);
    if (id === undefined) this.#ids.set(o, id = this.#nextId++);
    return id;
  }

  #bindGroup(
    op: string,
    pipeline: GPUComputePipeline,
    buffers: Binding[],
    uniforms?: Uint32Array,
  ): GPUBindGroup {
    let key = `${this.#id(pipeline)}|${uniforms ? uniforms.join(",") : "-"}`;
    for (const b of buffers) {
      if (!b) key += "|_";
      else if (b instanceof GPUBuffer) key += `|${this.#id(b)}`;
      else if (b instanceof GPUTextureView) key += `|t${this.#id(b)}`;
      else key += `|${this.#id(b.buffer)}@${b.offset ?? 0}+${b.size ?? "all"}`;
    }
    const hit = this.#groups.get(key);
    if (hit) {
      this.#counters.groupHits++;
      this.#capture?.groups.add(key);
      return hit.group;
    }
    this.#counters.groupMisses++;
    if (this.#groups.size >= this.#groupCacheMax) this.#dropGroups();
    const entries: GPUBindGroupEntry[] = [];
    const used: (GPUBuffer | GPUTextureView)[] = [];
    let binding = 0;
    let ub: GPUBuffer | null = null;
    if (uniforms) {
      ub = this.device.createBuffer({
        size: Math.max(16, Math.ceil(uniforms.byteLength / 16) * 16),
        usage: GPUBufferUsage.UNIFORM,
        mappedAtCreation: true,
        label: `${op}.uniforms`,
      });
      new Uint32Array(ub.getMappedRange()).set(uniforms);
      ub.unmap();
      entries.push({ binding: binding++, resource: { buffer: ub } });
    }
    for (const b of buffers) {
      const at = binding++;
      if (!b) continue;
      if (b instanceof GPUTextureView) {
        used.push(b);
        entries.push({ binding: at, resource: b });
        continue;
      }
      const buf = b instanceof GPUBuffer ? b : b.buffer;
      used.push(buf);
      entries.push({ binding: at, resource: b instanceof GPUBuffer ? { buffer: b } : b });
    }
    this.device.pushErrorScope("validation");
    const group = this.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries, label: op });
    this.#trackScopes(op, 1);
    this.#groups.set(key, { group, resources: used, uniform: ub, pins: 0 });
    this.#capture?.groups.add(key);
    for (const b of used) {
      let keys = this.#groupsOf.get(b);
      if (!keys) this.#groupsOf.set(b, keys = new Set());
      keys.add(key);
    }
    return group;
  }

  /**
   * Destroys a texture once the recorded work is submitted, after forgetting the cached bind groups that
   * bind one of its views (a later view gets a new id, so they would never be hit again, only kept).
   */
  destroyTexture(tex: GPUTexture, views: readonly GPUTextureView[]): void {
    this.flush();
    for (const v of views) this.#forgetResource(v);
    tex.destroy();
  }

  /** Forgets the cached bind groups that reference a buffer (or texture view) about to be destroyed. */
  #forgetResource(res: GPUBuffer | GPUTextureView): void {
    const keys = this.#groupsOf.get(res);
    if (!keys) return;
    for (const k of [...keys]) this.#retireGroup(k); // (the last one removes res from #groupsOf)
  }

  /**
   * Drops every cached bind group that no live capture replays, nor the capture being recorded (its groups
   * are pinned only when it ends: dropping one of them destroyed its uniform buffer under later replays).
   */
  #dropGroups(): void {
    for (const [k, e] of this.#groups) if (!e.pins && !this.#capture?.groups.has(k)) this.#retireGroup(k);
  }

  /** @internal Bind groups in the cache now (tests). */
  get cachedGroups(): number {
    return this.#groups.size;
  }

  /** @internal Sets how many bind groups the cache holds before it drops them (tests); returns the old limit. */
  setGroupCacheLimit(n: number): number {
    const old = this.#groupCacheMax;
    this.#groupCacheMax = n;
    return old;
  }

  #retireGroup(key: string): void {
    const e = this.#groups.get(key);
    if (!e) return;
    this.#groups.delete(key);
    for (const b of e.resources) {
      const keys = this.#groupsOf.get(b);
      keys?.delete(key);
      if (keys?.size === 0) this.#groupsOf.delete(b);
    }
    if (e.uniform) this.#transient.push(e.uniform); // destroyed once the batch that may use it is done
  }

  /** Error scopes of one submitted batch: a failure names the op the message points at, else the batch. */
  #trackBatchScopes(ops: string[]): void {
    for (let i = 0; i < 2; i++) {
      const p = this.device.popErrorScope().then((err) => {
        if (!err) return;
        const named = ops.find((o) => o !== "copy" && o !== "clear" && err.message.includes(`'${o}'`));
        const tail = [...new Set(ops.slice(-8))].join(", ");
        throw new GpuError(named ?? `batch [${tail}]`, err.message);
      });
      p.catch(() => {}); // observed in #checkErrors
      this.#pendingErrors.push(p);
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
