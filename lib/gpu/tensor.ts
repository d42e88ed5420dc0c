/**
 * GPU tensors: a shape, a storage dtype and one or more buffers ("chunks"). Tensors larger than the
 * adapter's storage-binding limit are split along their first dimension into chunks of whole rows, and
 * every kernel in lib/ops loops over chunks, so a 500 MiB embedding works on a 128 MiB-binding adapter.
 * @module
 */
import type { Gpu } from "./device.ts";
import { type DType, dtypeBytes } from "./dtype.ts";
import { GpuError } from "./errors.ts";

/** Host data accepted for upload. */
export type HostData = Float32Array | Float16Array | Float64Array | number[];

/** Options for creating a tensor. */
export interface TensorOptions {
  /** Name used in error messages (e.g. the checkpoint tensor name). */
  name?: string;
}

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** A row-chunked GPU tensor. */
export class Tensor {
  /** The device that owns the buffers. */
  readonly gpu: Gpu;
  /** Logical shape, row-major. */
  readonly shape: readonly number[];
  /** Storage type on the GPU (f16 requested on an adapter without shader-f16 becomes f32). */
  readonly dtype: DType;
  /** Buffers, each holding `rowsPerChunk` rows (the last may hold fewer). */
  readonly chunks: GPUBuffer[];
  /** Rows (along dim 0) per chunk. */
  readonly rowsPerChunk: number;
  /** Name used in error messages. */
  readonly name: string;
  #disposed = false;

  private constructor(
    gpu: Gpu,
    shape: readonly number[],
    dtype: DType,
    chunks: GPUBuffer[],
    rowsPerChunk: number,
    name: string,
  ) {
    this.gpu = gpu;
    this.shape = shape;
    this.dtype = dtype;
    this.chunks = chunks;
    this.rowsPerChunk = rowsPerChunk;
    this.name = name;
  }

  /** Number of elements. */
  get size(): number {
    return product(this.shape);
  }
  /** Length of dim 0 (1 for a scalar). */
  get rows(): number {
    return this.shape.length ? this.shape[0] : 1;
  }
  /** Elements per row (product of dims after the first). */
  get rowSize(): number {
    return product(this.shape.slice(1));
  }
  /** Bytes of data (not counting padding). */
  get byteLength(): number {
    return this.size * dtypeBytes(this.dtype);
  }
  /** Rows held by chunk `i`. */
  chunkRows(i: number): number {
    return Math.min(this.rowsPerChunk, this.rows - i * this.rowsPerChunk);
  }
  /** The single buffer of an unchunked tensor; throws a clear error for chunked ones. */
  get buffer(): GPUBuffer {
    if (this.chunks.length !== 1) {
      throw new GpuError(
        this.name,
        `tensor of ${this.byteLength} bytes spans ${this.chunks.length} chunks; this op needs one binding`,
      );
    }
    return this.chunks[0];
  }

  /** Plans the row chunking of a shape on a device. */
  static planChunks(gpu: Gpu, shape: readonly number[], dtype: DType, name = "tensor"): number {
    const rows = shape.length ? shape[0] : 1;
    const rowBytes = product(shape.slice(1)) * dtypeBytes(dtype);
    const limit = gpu.maxBindingBytes;
    if (rowBytes > limit) {
      throw new GpuError(
        name,
        `one row of shape [${shape}] (${rowBytes} bytes) exceeds the adapter's storage binding limit of ${limit} bytes`,
      );
    }
    // keep 4-byte alignment of every chunk boundary for f16
    let per = Math.max(1, Math.floor(limit / Math.max(1, rowBytes)));
    if (dtype === "f16" && (product(shape.slice(1)) % 2) === 1 && per > 1) per -= per % 2;
    return Math.min(rows, per) || 1;
  }

  /** Allocates an uninitialised tensor (contents are unspecified: pooled buffers are reused). */
  static empty(gpu: Gpu, shape: readonly number[], dtype: DType, opts: TensorOptions = {}): Tensor {
    const name = opts.name ?? "tensor";
    const dt = gpu.storageType(dtype);
    const per = Tensor.planChunks(gpu, shape, dt, name);
    const rows = shape.length ? shape[0] : 1;
    const rowBytes = product(shape.slice(1)) * dtypeBytes(dt);
    const chunks: GPUBuffer[] = [];
    for (let r = 0; r < rows || chunks.length === 0; r += per) {
      chunks.push(gpu.createStorage(Math.min(per, rows - r) * rowBytes, name));
      if (rows === 0) break;
    }
    return new Tensor(gpu, [...shape], dt, chunks, per, name);
  }

  /** Allocates a tensor filled with zeros. */
  static zeros(gpu: Gpu, shape: readonly number[], dtype: DType, opts: TensorOptions = {}): Tensor {
    const t = Tensor.empty(gpu, shape, dtype, opts);
    for (const c of t.chunks) gpu.clear(c);
    return t;
  }

  /** Uploads host values (converted to the storage dtype). */
  static from(
    gpu: Gpu,
    data: HostData,
    shape: readonly number[],
    dtype: DType,
    opts: TensorOptions = {},
  ): Tensor {
    const n = product(shape);
    if (data.length !== n) {
      throw new GpuError(
        opts.name ?? "upload",
        `data has ${data.length} values but shape [${shape}] needs ${n}`,
      );
    }
    const t = Tensor.empty(gpu, shape, dtype, opts);
    t.write(data);
    return t;
  }

  /** Overwrites the whole tensor with host values. */
  write(data: HostData): void {
    const host = this.dtype === "f16"
      ? (data instanceof Float16Array ? data : Float16Array.from(data as ArrayLike<number>))
      : (data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>));
    const rs = this.rowSize;
    for (let i = 0; i < this.chunks.length; i++) {
      const start = i * this.rowsPerChunk * rs;
      const part = host.subarray(start, start + this.chunkRows(i) * rs);
      this.gpu.write(this.chunks[i], 0, part);
    }
  }

  /** Reads the tensor back as f32 values. */
  async read(): Promise<Float32Array> {
    const out = new Float32Array(this.size);
    const rs = this.rowSize;
    const eb = dtypeBytes(this.dtype);
    for (let i = 0; i < this.chunks.length; i++) {
      const count = this.chunkRows(i) * rs;
      if (count === 0) continue;
      const bytes = await this.gpu.read(this.chunks[i], 0, count * eb);
      const vals = this.dtype === "f16" ? new Float16Array(bytes) : new Float32Array(bytes);
      out.set(vals, i * this.rowsPerChunk * rs);
    }
    return out;
  }

  /** A view with another shape over the same buffers (same element count; unchunked, or same row size). */
  reshape(shape: readonly number[]): Tensor {
    if (product(shape) !== this.size) {
      throw new GpuError(this.name, `cannot reshape [${this.shape}] to [${shape}]`);
    }
    if (this.chunks.length > 1 && product(shape.slice(1)) !== this.rowSize) {
      throw new GpuError(this.name, `cannot reshape a chunked tensor [${this.shape}] to [${shape}]`);
    }
    const rows = shape.length ? shape[0] : 1;
    return new Tensor(
      this.gpu,
      [...shape],
      this.dtype,
      this.chunks,
      this.chunks.length > 1 ? this.rowsPerChunk : rows,
      this.name,
    );
  }

  /** Whether {@link dispose} was called. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** Returns the buffers to the device's pool. Views made by reshape share them: dispose only one. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const c of this.chunks) this.gpu.release(c);
  }
}
