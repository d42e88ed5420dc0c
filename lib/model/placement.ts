/**
 * Placement of a model's layers on devices: `--devices N` splits the layers into N contiguous groups of
 * near-equal size; an explicit map gives each layer's device index.
 * @module
 */

/** Layer → device index for `numLayers` layers on `devices` devices (contiguous, balanced). */
export function evenPlacement(numLayers: number, devices: number): number[] {
  if (!Number.isInteger(devices) || devices < 1) {
    throw new Error(`devices: expected a positive integer, got ${devices}`);
  }
  if (devices > numLayers) throw new Error(`devices: ${devices} devices for only ${numLayers} layers`);
  const out: number[] = [];
  for (let i = 0; i < numLayers; i++) out.push(Math.floor((i * devices) / numLayers));
  return out;
}

/** Validates an explicit layer → device map. */
export function checkPlacement(map: number[], numLayers: number, devices: number): number[] {
  if (map.length !== numLayers) {
    throw new Error(`device map: has ${map.length} entries but the model has ${numLayers} layers`);
  }
  map.forEach((d, i) => {
    if (!Number.isInteger(d) || d < 0 || d >= devices) {
      throw new Error(`device map: layer ${i} names device ${d}, expected 0..${devices - 1}`);
    }
  });
  return map;
}

/** Parses `--devices` values: "2" or "0,0,0,1,1,1". */
export function parseDevices(value: string | number, numLayers: number): { count: number; map: number[] } {
  if (typeof value === "number" || /^\d+$/.test(value)) {
    const n = Number(value);
    return { count: n, map: evenPlacement(numLayers, n) };
  }
  const map = value.split(",").map((s) => Number(s.trim()));
  const count = Math.max(...map) + 1;
  return { count, map: checkPlacement(map, numLayers, count) };
}
