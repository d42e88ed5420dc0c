/**
 * Model validation helpers shared by loading and the commands (the config-against-weights shape check is
 * lib/model/shapes.ts):
 *
 * - every weight is finite ({@link countNonFiniteBits}, run on the host as tensors are read);
 * - the one token-length check every command shares ({@link checkTokenCount}).
 * @module
 */

/**
 * Counts NaN/±inf values of f32 or f16 data by their exponent bits (fast: no float compares).
 */
export function countNonFiniteBits(data: Float32Array | Float16Array): number {
  let n = 0;
  if (data instanceof Float32Array) {
    const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
    for (let i = 0; i < bits.length; i++) if ((bits[i] & 0x7f800000) === 0x7f800000) n++;
  } else {
    const bits = new Uint16Array(data.buffer, data.byteOffset, data.length);
    for (let i = 0; i < bits.length; i++) if ((bits[i] & 0x7c00) === 0x7c00) n++;
  }
  return n;
}

/**
 * The one length check: a sequence of `tokens` tokens must fit the model's `maxPositions` positions
 * (config.maxPositions).
 * `what` describes the sequence (e.g. `request "Angola": the prompt with the longest template`).
 */
export function checkTokenCount(maxPositions: number, tokens: number, what: string): void {
  if (tokens > maxPositions) {
    throw new Error(
      `${what} is ${tokens} tokens, more than the model's ${maxPositions} positions ` +
        `(n_positions / max_position_embeddings); shorten it`,
    );
  }
}
