/**
 * HuggingFace checkpoints on disk: where a model directory is (a local path or a hub id in the standard
 * HF cache) and a uniform view of its weights, whether they are one `model.safetensors` or shards listed in
 * `model.safetensors.index.json`.
 *
 * ```ts
 * const dir = await resolveModelDir("openai-community/gpt2"); // or "./my-model"
 * const ckpt = await openCheckpoint(dir);
 * const wte = await ckpt.readFloat("transformer.wte.weight", "f32");
 * await ckpt.close();
 * ```
 * @module
 */
import {
  type FloatTensor,
  openSafetensors,
  type RawTensor,
  type RowRange,
  type SafetensorsDType,
  type SafetensorsFile,
} from "./safetensors.ts";

/** A model directory or checkpoint that cannot be found or used. */
export class CheckpointError extends Error {
  /** An error with a complete message (it names the directory or file). */
  constructor(message: string) {
    super(message);
    this.name = "CheckpointError";
  }
}

/** File name of a single-file safetensors checkpoint. */
export const SAFE_WEIGHTS_NAME = "model.safetensors";
/** File name of the index of a sharded safetensors checkpoint. */
export const SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json";

function join(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

async function statOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return null;
    throw e;
  }
}

function absolute(path: string): string {
  if (path.startsWith("/")) return path;
  const cwd = Deno.cwd();
  return join(cwd, path.replace(/^\.\//, ""));
}

/**
 * The HF hub cache directories to search, in HuggingFace's order of precedence: `$HF_HUB_CACHE`,
 * `$HUGGINGFACE_HUB_CACHE` (its older name), `$HF_HOME/hub`, `$XDG_CACHE_HOME/huggingface/hub`,
 * `~/.cache/huggingface/hub`. Only variables that are set contribute; duplicates are removed.
 */
export function hubCacheDirs(): string[] {
  const env = (k: string) => {
    const v = Deno.env.get(k);
    return v ? v : undefined;
  };
  const out: string[] = [];
  const add = (p: string | undefined) => {
    if (p && !out.includes(p)) out.push(p);
  };
  add(env("HF_HUB_CACHE"));
  add(env("HUGGINGFACE_HUB_CACHE"));
  const hfHome = env("HF_HOME");
  if (hfHome) add(join(hfHome, "hub"));
  const xdg = env("XDG_CACHE_HOME");
  if (xdg) add(join(xdg, "huggingface/hub"));
  const home = env("HOME") ?? env("USERPROFILE");
  if (home) add(join(home, ".cache/huggingface/hub"));
  return out;
}

const HUB_ID = /^[A-Za-z0-9][\w.-]*(\/[A-Za-z0-9][\w.-]*)?(@[\w./-]+)?$/;

/** Finds a snapshot of `repo` at `rev` in one cache dir; returns the path or a reason it is not there. */
async function findSnapshot(
  cache: string,
  repo: string,
  rev: string | null,
): Promise<string | { why: string }> {
  const repoDir = join(cache, `models--${repo.replace("/", "--")}`);
  if (!(await statOrNull(repoDir))?.isDirectory) return { why: `${repoDir} (not found)` };
  const snaps = join(repoDir, "snapshots");
  const refName = rev ?? "main";
  let commit: string | null = null;
  try {
    commit = (await Deno.readTextFile(join(repoDir, `refs/${refName}`))).trim();
  } catch {
    // no such ref: `rev` may itself be a commit hash, or (rev unset) take the only or newest snapshot
  }
  if (commit === null && rev !== null) commit = rev;
  if (commit !== null) {
    const snap = join(snaps, commit);
    if ((await statOrNull(snap))?.isDirectory) return snap;
    return { why: `${snap} (ref ${refName} → ${commit}, snapshot missing)` };
  }
  const found: { path: string; mtime: number }[] = [];
  try {
    for await (const e of Deno.readDir(snaps)) {
      const p = join(snaps, e.name);
      const st = await statOrNull(p);
      if (st?.isDirectory) found.push({ path: p, mtime: st.mtime?.getTime() ?? 0 });
    }
  } catch {
    return { why: `${snaps} (not found)` };
  }
  if (!found.length) return { why: `${snaps} (no snapshots)` };
  found.sort((a, b) => b.mtime - a.mtime || (a.path < b.path ? 1 : -1));
  return found[0].path;
}

/**
 * Resolves a model given as a local directory or a HuggingFace hub id (`org/name`, `name`, optionally
 * `@revision`) to a directory. Hub ids are looked up in the standard cache (see {@linkcode hubCacheDirs})
 * at `models--org--name/snapshots/<commit>/`, where the commit comes from `refs/<revision>` (default
 * `main`), or is the revision itself; without a ref the only (or newest) snapshot is used. Nothing is
 * downloaded. Throws a {@linkcode CheckpointError} listing every place it looked.
 */
export async function resolveModelDir(nameOrPath: string): Promise<string> {
  const st = await statOrNull(nameOrPath);
  if (st) {
    if (st.isDirectory) return absolute(nameOrPath);
    throw new CheckpointError(
      `${nameOrPath} is a file; expected a model directory (config.json, model.safetensors…)`,
    );
  }
  const looksLocal = nameOrPath.startsWith(".") || nameOrPath.startsWith("/") || nameOrPath.startsWith("~");
  if (looksLocal || !HUB_ID.test(nameOrPath) || nameOrPath.includes("..")) {
    throw new CheckpointError(
      `model directory ${nameOrPath} does not exist (and it is not a hub id like org/name)`,
    );
  }
  const at = nameOrPath.indexOf("@");
  const repo = at < 0 ? nameOrPath : nameOrPath.slice(0, at);
  const rev = at < 0 ? null : nameOrPath.slice(at + 1);
  const looked: string[] = [`./${nameOrPath} (no such local directory)`];
  for (const cache of hubCacheDirs()) {
    const r = await findSnapshot(cache, repo, rev);
    if (typeof r === "string") return r;
    looked.push(r.why);
  }
  throw new CheckpointError(
    `model ${JSON.stringify(nameOrPath)} not found; looked in:\n  ${looked.join("\n  ")}\n` +
      `keg does not download models: fetch it first (e.g. \`huggingface-cli download ${repo}\`) ` +
      `or set HF_HOME / HF_HUB_CACHE to the cache that has it.`,
  );
}

/** Where one tensor of a checkpoint is. */
export interface CheckpointTensorInfo {
  /** Element type in the file. */
  dtype: SafetensorsDType;
  /** Shape. */
  shape: number[];
  /** Path of the safetensors file that holds it. */
  file: string;
  /** Size in bytes. */
  bytes: number;
}

/**
 * The weights of a model directory: one or more open safetensors files behind a single name → tensor
 * view. Tensors are read lazily; {@linkcode Checkpoint.close} releases the file handles.
 */
export class Checkpoint {
  /** The model directory. */
  readonly dir: string;
  /** Paths of the safetensors files, in shard order. */
  readonly files: readonly string[];
  #shards: SafetensorsFile[];
  #where: Map<string, SafetensorsFile>;
  #names: string[];

  /** Use {@linkcode openCheckpoint}. */
  constructor(dir: string, shards: SafetensorsFile[], where: Map<string, SafetensorsFile>) {
    this.dir = dir;
    this.#shards = shards;
    this.files = Object.freeze(shards.map((s) => s.path));
    this.#where = where;
    const order = new Map(shards.map((s, i) => [s, i]));
    this.#names = [...where.keys()].sort((a, b) => {
      const sa = where.get(a)!, sb = where.get(b)!;
      return order.get(sa)! - order.get(sb)! || sa.info(a).dataOffsets[0] - sb.info(b).dataOffsets[0];
    });
  }

  /** All tensor names (shard order, then file order). */
  names(): string[] {
    return [...this.#names];
  }

  /** Whether the checkpoint has a tensor of this name. */
  has(name: string): boolean {
    return this.#where.has(name);
  }

  #file(name: string): SafetensorsFile {
    const f = this.#where.get(name);
    if (f) return f;
    // suggest the names sharing the longest prefix + suffix with the requested one
    const affinity = (n: string) => {
      let p = 0, s = 0;
      while (p < n.length && p < name.length && n[p] === name[p]) p++;
      while (s < n.length - p && s < name.length - p && n[n.length - 1 - s] === name[name.length - 1 - s]) {
        s++;
      }
      return p + s;
    };
    const similar = this.#names.map((n) => ({ n, a: affinity(n) })).filter((x) => x.a > 0)
      .sort((x, y) => y.a - x.a).slice(0, 4).map((x) => x.n);
    throw new CheckpointError(
      `${this.dir}: no tensor ${JSON.stringify(name)} in the checkpoint (${this.#names.length} tensors${
        similar.length ? `; similar: ${similar.join(", ")}` : ""
      })`,
    );
  }

  /** dtype, shape, file and size of a tensor; throws a {@linkcode CheckpointError} if absent. */
  info(name: string): CheckpointTensorInfo {
    const f = this.#file(name);
    const e = f.info(name);
    return {
      dtype: e.dtype,
      shape: [...e.shape],
      file: f.path,
      bytes: e.dataOffsets[1] - e.dataOffsets[0],
    };
  }

  /** Reads a tensor's raw bytes (optionally rows `[start, end)` of dim 0). */
  async read(name: string, rows?: RowRange): Promise<RawTensor> {
    return await this.#file(name).read(name, rows);
  }

  /** Reads a float tensor converted to f32 or f16, with overflow/underflow counts (see SafetensorsFile). */
  async readFloat<T extends "f32" | "f16">(name: string, to: T, rows?: RowRange): Promise<FloatTensor<T>> {
    return await this.#file(name).readFloat(name, to, rows);
  }

  /** Total bytes of all tensors. */
  totalBytes(): number {
    let n = 0;
    for (const name of this.#names) {
      const e = this.#where.get(name)!.info(name);
      n += e.dataOffsets[1] - e.dataOffsets[0];
    }
    return n;
  }

  /**
   * A cheap content fingerprint for cache keys (hex sha256). It covers every file's name, size and header
   * JSON, plus 64 bytes at the start, middle and end of every tensor (all of a tensor ≤ 192 bytes), so re-saved weights that differ
   * in any dense way (e.g. an edited MLP matrix) get a new fingerprint without hashing gigabytes. A change
   * confined to bytes outside those samples would not be seen.
   */
  async fingerprint(): Promise<string> {
    const enc = new TextEncoder();
    const parts: Uint8Array[] = [];
    for (const s of this.#shards) {
      const base = s.path.slice(s.path.lastIndexOf("/") + 1);
      parts.push(enc.encode(`${base}\0${s.size}\0${s.headerText}\0`));
      for (const name of s.names()) {
        const e = s.info(name);
        const n = e.dataOffsets[1] - e.dataOffsets[0];
        if (n <= 192) {
          parts.push(await s.readBytes(name, 0, n));
          continue;
        }
        const mid = Math.floor(n / 2) - 32;
        for (const at of [0, mid, n - 64]) parts.push(await s.readBytes(name, at, at + 64));
      }
    }
    let len = 0;
    for (const p of parts) len += p.length;
    const all = new Uint8Array(len);
    let off = 0;
    for (const p of parts) {
      all.set(p, off);
      off += p.length;
    }
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
    return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
  }

  /** Closes every file. */
  async close(): Promise<void> {
    await Promise.all(this.#shards.map((s) => s.close()));
  }
}

function isPlainRelative(name: string): boolean {
  return name.length > 0 && !name.startsWith("/") && !name.split(/[\\/]/).includes("..");
}

async function openAll(paths: string[]): Promise<SafetensorsFile[]> {
  const opened: SafetensorsFile[] = [];
  try {
    for (const p of paths) opened.push(await openSafetensors(p));
    return opened;
  } catch (e) {
    await Promise.all(opened.map((f) => f.close()));
    throw e;
  }
}

/**
 * Opens the weights of a model directory: `model.safetensors`, or else `model.safetensors.index.json` and
 * the shards its `weight_map` names (each shard is validated; tensors present in a shard but absent from
 * the map are ignored, as transformers does). A directory with only PyTorch `.bin` (or TF/Flax) weights
 * gets a {@linkcode CheckpointError} saying safetensors is required and how to convert. Malformed files
 * raise {@linkcode SafetensorsError}.
 */
export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  const st = await statOrNull(dir);
  if (!st?.isDirectory) throw new CheckpointError(`${dir}: not a directory`);
  const single = join(dir, SAFE_WEIGHTS_NAME);
  if (await statOrNull(single)) {
    const [f] = await openAll([single]);
    return new Checkpoint(dir, [f], new Map(f.names().map((n) => [n, f])));
  }
  const indexPath = join(dir, SAFE_WEIGHTS_INDEX_NAME);
  if (await statOrNull(indexPath)) return await openSharded(dir, indexPath);

  const present: string[] = [];
  for await (const e of Deno.readDir(dir)) present.push(e.name);
  present.sort();
  const torch = present.filter((n) =>
    /^pytorch_model.*\.bin(\.index\.json)?$/.test(n) || /\.(bin|pt|pth|h5|msgpack|ckpt)$/.test(n)
  );
  if (torch.length) {
    throw new CheckpointError(
      `${dir}: keg needs safetensors weights (${SAFE_WEIGHTS_NAME} or ${SAFE_WEIGHTS_INDEX_NAME}), but this ` +
        `directory only has ${torch.join(", ")}. Convert it once in Python: ` +
        "AutoModelForCausalLM.from_pretrained(dir).save_pretrained(out_dir, safe_serialization=True)",
    );
  }
  const stray = present.filter((n) => n.endsWith(".safetensors"));
  throw new CheckpointError(
    `${dir}: no ${SAFE_WEIGHTS_NAME} or ${SAFE_WEIGHTS_INDEX_NAME}` +
      (stray.length ? ` (found ${stray.join(", ")} without an index)` : "") +
      ` — directory holds: ${present.join(", ") || "nothing"}`,
  );
}

async function openSharded(dir: string, indexPath: string): Promise<Checkpoint> {
  let index: unknown;
  try {
    index = JSON.parse(await Deno.readTextFile(indexPath));
  } catch (e) {
    throw new CheckpointError(`${indexPath}: cannot read the shard index: ${(e as Error).message}`);
  }
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (map === null || typeof map !== "object" || Array.isArray(map)) {
    throw new CheckpointError(`${indexPath}: weight_map must be an object {tensor name: shard file}`);
  }
  const entries = Object.entries(map as Record<string, unknown>);
  if (!entries.length) throw new CheckpointError(`${indexPath}: weight_map is empty`);
  const shardNames: string[] = [];
  const count = new Map<string, number>();
  for (const [name, file] of entries) {
    if (typeof file !== "string" || !isPlainRelative(file)) {
      throw new CheckpointError(
        `${indexPath}: weight_map[${JSON.stringify(name)}] must be a file name in the directory, got ${
          JSON.stringify(file)
        }`,
      );
    }
    if (!count.has(file)) shardNames.push(file);
    count.set(file, (count.get(file) ?? 0) + 1);
  }
  shardNames.sort();
  for (const s of shardNames) {
    if (!(await statOrNull(join(dir, s)))?.isFile) {
      throw new CheckpointError(
        `${indexPath}: shard ${s} (holding ${count.get(s)} tensors per weight_map) is missing from ${dir}`,
      );
    }
  }
  const shards = await openAll(shardNames.map((s) => join(dir, s)));
  const byName = new Map(shardNames.map((s, i) => [s, shards[i]]));
  const where = new Map<string, SafetensorsFile>();
  for (const [name, file] of entries as [string, string][]) {
    const f = byName.get(file)!;
    if (!f.has(name)) {
      await Promise.all(shards.map((s) => s.close()));
      throw new CheckpointError(
        `${indexPath}: weight_map puts tensor ${JSON.stringify(name)} in ${file}, which does not contain it`,
      );
    }
    where.set(name, f);
  }
  return new Checkpoint(dir, shards, where);
}
