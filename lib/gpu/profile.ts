/**
 * GPU time per op from timestamp queries: while profiling, every dispatch runs in its own compute pass
 * whose beginning and end write timestamps; each submitted batch resolves its queries and the totals are
 * summed per op name.
 * @module
 */

/** GPU time of one op name within one stage. */
export interface OpProfile {
  /** The stage it ran in (see {@link profileStage}). */
  stage: string;
  op: string;
  /** Dispatches timed. */
  count: number;
  /** Summed GPU seconds. */
  seconds: number;
}

/** Totals of one stage. */
export interface StageProfile {
  stage: string;
  /** Wall-clock seconds spent in the stage while profiling (host and GPU). */
  wallSeconds: number;
  /**
   * Serial timing only: seconds the host spent waiting on the queue (kernels and the waits' fixed cost);
   * `wallSeconds − waitSeconds` is then the host's own time in the stage.
   */
  waitSeconds?: number;
  /** GPU seconds of its dispatches. */
  gpuSeconds: number;
  dispatches: number;
  readbacks: number;
}

/** What {@link Gpu.stopProfile} returns. */
export interface ProfileReport {
  /** Per (stage, op), largest total first. */
  ops: OpProfile[];
  /** Per stage, in the order first entered. */
  stages: StageProfile[];
  /** Summed GPU seconds of all timed dispatches. */
  gpuSeconds: number;
  /** Timed serially (a CPU adapter: each op submitted alone and waited for), not by timestamps. */
  serial?: boolean;
}

let stageName = "other";
const stageWall = new Map<string, number>();
let stageSince = performance.now();

/**
 * Names the stage that work from now on belongs to (e.g. `v*`, `solve`), for profiles: GPU time, wall
 * time, dispatches and readbacks are summed per stage. Cheap when no profile runs.
 */
export function profileStage(name: string): void {
  const t = performance.now();
  stageWall.set(stageName, (stageWall.get(stageName) ?? 0) + (t - stageSince) / 1000);
  stageName = name;
  stageSince = t;
}

/** @internal Wall seconds per stage since the process started (the current stage included). */
function stageWalls(): Map<string, number> {
  profileStage(stageName);
  return new Map(stageWall);
}

/** Counters of the dispatch engine (see {@link Gpu.counters}). */
export interface GpuCounters {
  /** Dispatches recorded through `dispatch`. */
  dispatches: number;
  /** Dispatches re-recorded by capture replays. */
  replayed: number;
  /** Queue submits. */
  submits: number;
  /** Readbacks to the host. */
  readbacks: number;
  /** Host writes. */
  writes: number;
  /** Bind-group cache hits and misses. */
  groupHits: number;
  groupMisses: number;
}

/** All counters at zero. */
export function emptyCounters(): GpuCounters {
  return { dispatches: 0, replayed: 0, submits: 0, readbacks: 0, writes: 0, groupHits: 0, groupMisses: 0 };
}

const QUERIES = 4096;

/** @internal Timestamp bookkeeping of one device. */
export class GpuProfiler {
  #device: GPUDevice;
  #set: GPUQuerySet;
  #ops: string[] = [];
  #totals = new Map<string, OpProfile>();
  #pending: Promise<void>[] = [];
  #readbacks = new Map<string, number>();
  #waited = new Map<string, number>();
  #wallAtStart: Map<string, number>;

  /** Serial timing (CPU adapters): no timestamps; {@link addSerial} books waited submits. */
  readonly serial: boolean;
  /** Serial timing: seconds an empty wait for the queue takes (measured once, subtracted from each). */
  waitFloor: number | null = null;

  constructor(device: GPUDevice, serial = false) {
    this.#device = device;
    this.serial = serial;
    this.#set = device.createQuerySet({ type: "timestamp", count: serial ? 2 : QUERIES });
    this.#wallAtStart = stageWalls();
  }

  /** Serial timing: books seconds the host waited on the queue in the current stage. */
  addWait(seconds: number): void {
    this.#waited.set(stageName, (this.#waited.get(stageName) ?? 0) + seconds);
  }

  /**
   * Books `seconds` of one waited submit to its ops (serial timing): one op name gets it all; several
   * distinct names (an op that records two kernels) are booked together under their joined names.
   */
  addSerial(ops: string[], seconds: number, waited: number): void {
    this.addWait(waited);
    const names = [...new Set(ops)];
    const key = `${stageName}\u0000${names.join(" + ")}`;
    const e = this.#totals.get(key) ?? { stage: stageName, op: names.join(" + "), count: 0, seconds: 0 };
    e.count += ops.length;
    e.seconds += seconds;
    this.#totals.set(key, e);
  }

  /** Counts one readback in the current stage. */
  readback(): void {
    this.#readbacks.set(stageName, (this.#readbacks.get(stageName) ?? 0) + 1);
  }

  /** Timestamp writes for the next dispatch's pass (resolves the batch first when the set is full). */
  next(op: string, enc: GPUCommandEncoder): GPUComputePassTimestampWrites {
    if (this.#ops.length * 2 >= QUERIES) this.#resolveInto(enc);
    const i = this.#ops.length;
    this.#ops.push(`${stageName}\u0000${op}`);
    return { querySet: this.#set, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Records the resolve of this batch's queries; the returned callback (run after submit) maps them. */
  resolve(enc: GPUCommandEncoder): (() => void) | undefined {
    if (this.#ops.length) this.#resolveInto(enc);
    if (!this.#afterSubmit.length) return undefined;
    return () => this.#afterSubmit.splice(0).forEach((f) => f());
  }

  #afterSubmit: (() => void)[] = [];

  #resolveInto(enc: GPUCommandEncoder): void {
    const ops = this.#ops;
    this.#ops = [];
    const bytes = ops.length * 16;
    const resolved = this.#device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const read = this.#device.createBuffer({
      size: bytes,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    enc.resolveQuerySet(this.#set, 0, ops.length * 2, resolved, 0);
    enc.copyBufferToBuffer(resolved, 0, read, 0, bytes);
    let started = false;
    const start = () => {
      if (started) return;
      started = true;
      this.#pending.push(
        read.mapAsync(GPUMapMode.READ).then(() => {
          const t = new BigUint64Array(read.getMappedRange());
          ops.forEach((key, i) => {
            const ns = Number(t[2 * i + 1] - t[2 * i]);
            const [stage, op] = key.split("\u0000");
            const e = this.#totals.get(key) ?? { stage, op, count: 0, seconds: 0 };
            e.count++;
            e.seconds += Math.max(0, ns) / 1e9;
            this.#totals.set(key, e);
          });
          read.unmap();
          read.destroy();
          resolved.destroy();
        }),
      );
    };
    // a mid-batch resolve (set full) maps after the batch's submit, like the final one
    this.#afterSubmit.push(start);
  }

  /** Totals so far, after every pending timing has been read. */
  async report(): Promise<ProfileReport> {
    await Promise.all(this.#pending.splice(0));
    const ops = [...this.#totals.values()].sort((a, b) => b.seconds - a.seconds);
    this.#set.destroy();
    const walls = stageWalls();
    const stages = new Map<string, StageProfile>();
    const stage = (name: string) => {
      let e = stages.get(name);
      if (!e) {
        const wallSeconds = (walls.get(name) ?? 0) - (this.#wallAtStart.get(name) ?? 0);
        stages.set(name, e = { stage: name, wallSeconds, gpuSeconds: 0, dispatches: 0, readbacks: 0 });
      }
      return e;
    };
    for (const [name] of walls) if ((walls.get(name) ?? 0) > (this.#wallAtStart.get(name) ?? 0)) stage(name);
    for (const o of ops) {
      const e = stage(o.stage);
      e.gpuSeconds += o.seconds;
      e.dispatches += o.count;
    }
    for (const [name, n] of this.#readbacks) stage(name).readbacks += n;
    for (const [name, w] of this.#waited) stage(name).waitSeconds = w;
    const gpuSeconds = ops.reduce((s, o) => s + o.seconds, 0);
    return { ops, stages: [...stages.values()], gpuSeconds, ...(this.serial ? { serial: true } : {}) };
  }
}
