/**
 * Errors raised by keg's GPU layer. Every error names the operation that caused it.
 * @module
 */

/** A GPU failure (no adapter, validation error, out of memory, tensor too large) tied to a named op. */
export class GpuError extends Error {
  /** The keg operation that failed, e.g. `matmul` or `upload(transformer.wte.weight)`. */
  readonly op: string;
  constructor(op: string, message: string) {
    super(`${op}: ${message}`);
    this.name = "GpuError";
    this.op = op;
  }
}

/** The message printed when `navigator.gpu` is missing or yields no adapter, with the fix. */
export const NO_ADAPTER_HELP: string = [
  "no WebGPU adapter found.",
  "keg needs a WebGPU adapter from Deno's navigator.gpu. On a machine without a GPU install the",
  "Vulkan CPU driver (lavapipe):  apt-get install -y mesa-vulkan-drivers libvulkan1",
  "On a GPU machine make sure the Vulkan loader (libvulkan1) and the vendor's Vulkan driver are installed.",
].join("\n");
