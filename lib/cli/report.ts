/**
 * Human-readable reports the CLI prints: adapters and memory.
 * @module
 */
import type { Gpu } from "../gpu/device.ts";
import type { Transformer } from "../model/transformer.ts";

/** Bytes as MiB/GiB text. */
export function formatBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

/** One line per adapter. */
export function adapterReport(gpus: Gpu[]): string {
  return gpus.map((g) => {
    const r = g.report;
    return `${r.label}: ${r.description}${r.isFallbackAdapter ? " (software)" : ""}, shader-f16 ${
      r.shaderF16 ? "yes" : "no"
    }, max binding ${formatBytes(r.maxStorageBufferBindingSize)}`;
  }).join("\n");
}

/** Weights and peak GPU memory per device. */
export function memoryReport(net: Transformer): string {
  const w = net.weightBytes();
  return net.devices.map((g, i) => {
    const m = g.memory();
    return `${g.label}: weights ${formatBytes(w[i])}, allocated ${formatBytes(m.liveBytes)}, peak ${
      formatBytes(m.peakBytes)
    }, workspace peak ${formatBytes(Math.max(0, m.peakBytes - w[i]))}`;
  }).join("\n");
}
