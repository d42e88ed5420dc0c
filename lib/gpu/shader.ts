/**
 * Loading WGSL kernel files from `shaders/`, resolved relative to this module so that importing
 * keg from an http(s) URL loads its shaders from the same place.
 * @module
 */
import type { DType } from "./dtype.ts";

const SHADER_ROOT = new URL("../../shaders/", import.meta.url);
const sources = new Map<string, Promise<string>>();

/** Reads `shaders/<family>.wgsl` (cached). Works for file: and http(s): module URLs. */
export function loadShaderSource(family: string): Promise<string> {
  let p = sources.get(family);
  if (!p) {
    const url = new URL(`${family}.wgsl`, SHADER_ROOT);
    p = url.protocol === "file:" ? Deno.readTextFile(url) : fetch(url).then(async (r) => {
      if (!r.ok) throw new Error(`cannot load shader ${url}: HTTP ${r.status}`);
      return await r.text();
    });
    p.catch(() => sources.delete(family));
    sources.set(family, p);
  }
  return p;
}

/**
 * Builds the text a pipeline compiles: `enable f16;` when any alias is f16, one `alias NAME = f16|f32;`
 * per entry of `types`, one `const NAME: u32 = Nu;` per entry of `consts` (compile-time sizes such as
 * private array lengths, which WGSL override constants cannot give), then the family's source.
 */
export function composeShader(
  source: string,
  types: Record<string, DType>,
  consts: Record<string, number> = {},
): string {
  const needF16 = Object.values(types).includes("f16");
  const head = needF16 ? ["enable f16;"] : [];
  for (const [name, dt] of Object.entries(types)) head.push(`alias ${name} = ${dt};`);
  for (const [name, n] of Object.entries(consts)) {
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
      throw new Error(`shader constant ${name} must be a u32, got ${n}`);
    }
    head.push(`const ${name}: u32 = ${n}u;`);
  }
  return head.join("\n") + "\n" + source;
}
