/**
 * File helpers: atomic writes (write to a temporary file beside the target, then rename) and keg's cache
 * directory.
 * @module
 */

/** Writes bytes or text to `path` atomically: nothing half-written is ever visible at `path`. */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  try {
    if (typeof data === "string") await Deno.writeTextFile(tmp, data);
    else await Deno.writeFile(tmp, data);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** keg's cache root: $KEG_CACHE, else $XDG_CACHE_HOME/keg, else ~/.cache/keg. Created on demand. */
export async function cacheDir(sub: string): Promise<string> {
  const root = Deno.env.get("KEG_CACHE") ??
    `${Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME") ?? "."}/.cache`}/keg`;
  const dir = `${root}/${sub}`;
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

/** Hex sha256 of text or bytes. */
export async function sha256Hex(data: string | Uint8Array): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const h = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(h), (b) => b.toString(16).padStart(2, "0")).join("");
}
