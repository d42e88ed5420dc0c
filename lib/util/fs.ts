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

/** Whether a process with this id runs on this machine (Linux /proc; elsewhere assumed alive). */
export function pidAlive(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    try {
      Deno.statSync("/proc/self");
      return false;
    } catch {
      return true;
    }
  }
}

function splitPath(path: string): [string, string] {
  const p = path.replace(/\/+$/, "");
  const i = p.lastIndexOf("/");
  return i < 0 ? [".", p] : [p.slice(0, i) || "/", p.slice(i + 1)];
}

async function isEmptyDir(path: string): Promise<boolean | null> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  if (!st.isDirectory) throw new Error(`${path}: exists and is not a directory`);
  for await (const _ of Deno.readDir(path)) return false;
  return true;
}

/**
 * Checks up front, without creating anything, that output can be written at `path` (a directory for
 * `kind: "dir"`, a file for `"file"`): what exists there has the right kind, and the nearest existing
 * ancestor directory accepts a new file (probed with a file that is removed at once). `what` names the
 * option in errors (e.g. "--save"), so that a long computation never ends in "cannot write".
 */
export async function checkWritable(
  path: string,
  what: string,
  kind: "dir" | "file" | "new-dir",
): Promise<void> {
  const fail = (msg: string): never => {
    throw new Error(`${what} ${path}: ${msg}`);
  };
  let st: Deno.FileInfo | null = null;
  try {
    st = await Deno.stat(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound) && !(e instanceof Deno.errors.NotADirectory)) {
      fail(`${(e as Error).message}`);
    }
  }
  if (st) {
    if (kind === "file" && st.isDirectory) fail("is a directory");
    if (kind !== "file" && !st.isDirectory) fail("exists and is not a directory");
    if (kind === "new-dir" && (await isEmptyDir(path)) === false) fail("needs an empty or new directory");
  }
  let probeDir = kind === "file" || !st ? splitPath(path)[0] : path;
  for (;;) {
    try {
      const s = await Deno.stat(probeDir);
      if (!s.isDirectory) fail(`${probeDir} is not a directory`);
      break;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound) && !(e instanceof Deno.errors.NotADirectory)) throw e;
      const up = splitPath(probeDir)[0];
      if (up === probeDir) break;
      probeDir = up;
    }
  }
  const probe = `${probeDir}/.keg-probe-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.writeFile(probe, new Uint8Array(0), { createNew: true });
  } catch (e) {
    fail(`cannot write in ${probeDir} (${(e as Error).message})`);
  }
  await Deno.remove(probe).catch(() => {});
}

/**
 * Fills a new directory atomically: `fill` writes into a temporary sibling `<dir>.keg-tmp-<pid>-<random>`,
 * which is renamed to `dir` when it returns. On failure the temporary directory is removed; a killed run's
 * leftovers (whose process is gone) are removed by the next call. `dir` must be absent or empty.
 */
export async function writeDirAtomic(dir: string, fill: (tmp: string) => Promise<void>): Promise<void> {
  const [parent, base] = splitPath(dir);
  await Deno.mkdir(parent, { recursive: true });
  for await (const e of Deno.readDir(parent)) {
    const m = e.name.startsWith(`${base}.keg-tmp-`) ? /^(\d+)-/.exec(e.name.slice(base.length + 9)) : null;
    if (m && e.isDirectory && !pidAlive(Number(m[1]))) {
      await Deno.remove(`${parent}/${e.name}`, { recursive: true }).catch(() => {});
    }
  }
  const empty = await isEmptyDir(dir);
  if (empty === false) throw new Error(`${dir}: needs an empty or new directory`);
  const tmp = `${parent}/${base}.keg-tmp-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`;
  await Deno.mkdir(tmp);
  try {
    await fill(tmp);
    if (empty) await Deno.remove(dir);
    await Deno.rename(tmp, dir);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}

/** An exclusive lock held on a directory (see {@link lockDir}). */
export interface DirLock {
  /** The lock file. */
  path: string;
  /** Releases the lock (the file stays, naming the last holder). */
  release(): void;
}

/**
 * Takes an exclusive lock on `dir` (created when missing) through `dir/.keg-lock`: an OS file lock (flock)
 * on a file that records the holder's pid, command and start time. The OS drops the lock when its process
 * dies, so a lock left by a killed run is stale and simply taken over; a live holder makes this throw an
 * error naming its pid and start time.
 */
export async function lockDir(dir: string, command: string): Promise<DirLock> {
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/.keg-lock`;
  const f = await Deno.open(path, { read: true, write: true, create: true });
  let ok = false;
  try {
    if (!(await f.tryLock(true))) {
      let holder = "another process";
      try {
        const h = JSON.parse(await Deno.readTextFile(path)) as {
          pid?: number;
          started?: string;
          command?: string;
        };
        holder = `${h.command ?? "keg"} (pid ${h.pid}, started ${h.started})`;
      } catch { /* being written */ }
      throw new Error(
        `${dir} is in use by ${holder}: two runs cannot write one directory; wait for it, stop it, or use another directory`,
      );
    }
    await f.truncate(0);
    const body = JSON.stringify({ pid: Deno.pid, command, started: new Date().toISOString() }) + "\n";
    await f.write(new TextEncoder().encode(body));
    ok = true;
  } finally {
    if (!ok) f.close();
  }
  return {
    path,
    release() {
      try {
        f.unlockSync();
      } finally {
        f.close();
      }
    },
  };
}
