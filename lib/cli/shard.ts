/**
 * `--shard` for `keg eval` and `keg stats`: `i/n` explicitly, or `auto` from the scheduler's environment —
 * SLURM job arrays (`SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_COUNT`, `SLURM_ARRAY_TASK_MIN`,
 * `SLURM_ARRAY_TASK_MAX`; `sbatch --array=0-3` or `1-4` runs shards 0..3) and Kubernetes Indexed Jobs
 * (`JOB_COMPLETION_INDEX`, with the count given as `auto/N` because Kubernetes does not export it).
 * An explicit `i/n` inside a SLURM array task must agree with the task's variables.
 * @module
 */
import { UsageError } from "./args.ts";

/** A shard: index i of n. */
export interface Shard {
  /** 0-based index. */
  index: number;
  /** Number of shards. */
  count: number;
}

/** The environment variables {@link parseShardFlag} reads. */
export type ShardEnv = (name: string) => string | undefined;

const denoEnv: ShardEnv = (name) => Deno.env.get(name);

function whole(command: string, name: string, v: string): number {
  if (!/^\d+$/.test(v.trim())) {
    throw new UsageError(`${command}: ${name}=${JSON.stringify(v)} is not a whole number`);
  }
  return Number(v);
}

/** The shard a SLURM array task is, or null outside a SLURM array. */
export function slurmShard(command: string, env: ShardEnv = denoEnv): Shard | null {
  const id = env("SLURM_ARRAY_TASK_ID");
  if (id === undefined) return null;
  const count = env("SLURM_ARRAY_TASK_COUNT");
  if (count === undefined) {
    throw new UsageError(`${command}: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not`);
  }
  const i = whole(command, "SLURM_ARRAY_TASK_ID", id), n = whole(command, "SLURM_ARRAY_TASK_COUNT", count);
  const minV = env("SLURM_ARRAY_TASK_MIN"), maxV = env("SLURM_ARRAY_TASK_MAX");
  const min = minV === undefined ? 0 : whole(command, "SLURM_ARRAY_TASK_MIN", minV);
  if (maxV !== undefined) {
    const max = whole(command, "SLURM_ARRAY_TASK_MAX", maxV);
    if (max - min + 1 !== n) {
      throw new UsageError(
        `${command}: --shard auto needs a contiguous SLURM array (e.g. --array=0-${n - 1}); this one has ` +
          `${n} tasks between ${min} and ${max} (SLURM_ARRAY_TASK_MIN/MAX/COUNT)`,
      );
    }
  }
  const index = i - min;
  if (n < 1 || index < 0 || index >= n) {
    throw new UsageError(
      `${command}: SLURM_ARRAY_TASK_ID=${i} is outside the array ${min}..${
        min + n - 1
      } (SLURM_ARRAY_TASK_COUNT=${n})`,
    );
  }
  return { index, count: n };
}

/**
 * Parses `--shard`: `i/n`, `auto` (SLURM array, or Kubernetes with `KEG_SHARD_COUNT`) or `auto/N`
 * (Kubernetes `JOB_COMPLETION_INDEX` of N completions, or a SLURM array of N tasks). Every error is a
 * UsageError naming the flag or variable.
 */
export function parseShardFlag(command: string, s: string, env: ShardEnv = denoEnv): Shard {
  const text = s.trim();
  const auto = /^auto(?:\/(\d+))?$/.exec(text);
  if (auto) {
    const given = auto[1] === undefined ? null : Number(auto[1]);
    if (given !== null && given < 1) throw new UsageError(`${command}: --shard ${s}: need at least 1 shard`);
    const slurm = slurmShard(command, env);
    if (slurm) {
      if (given !== null && given !== slurm.count) {
        throw new UsageError(
          `${command}: --shard ${s} disagrees with the SLURM array, which has ${slurm.count} tasks ` +
            `(SLURM_ARRAY_TASK_COUNT)`,
        );
      }
      return slurm;
    }
    const k8s = env("JOB_COMPLETION_INDEX");
    if (k8s !== undefined) {
      const countText = given !== null ? String(given) : env("KEG_SHARD_COUNT");
      if (countText === undefined) {
        throw new UsageError(
          `${command}: --shard auto in a Kubernetes Indexed Job needs the number of completions: ` +
            `--shard auto/N or KEG_SHARD_COUNT=N`,
        );
      }
      const index = whole(command, "JOB_COMPLETION_INDEX", k8s);
      const count = whole(command, "KEG_SHARD_COUNT", countText);
      if (count < 1 || index >= count) {
        throw new UsageError(
          `${command}: JOB_COMPLETION_INDEX=${index} is out of range for ${count} shards (need 0 ≤ i < ${count})`,
        );
      }
      return { index, count };
    }
    throw new UsageError(
      `${command}: --shard ${s}: not inside a SLURM array task (SLURM_ARRAY_TASK_ID) or a Kubernetes ` +
        `Indexed Job (JOB_COMPLETION_INDEX); give --shard i/n`,
    );
  }
  const m = /^(\d+)\/(\d+)$/.exec(text);
  if (!m) {
    throw new UsageError(`${command}: --shard expects i/n (e.g. 0/4) or auto, got ${JSON.stringify(s)}`);
  }
  const index = Number(m[1]), count = Number(m[2]);
  if (count < 1 || index >= count) {
    throw new UsageError(`${command}: --shard ${s}: shard index ${index} is out of range (need 0 ≤ i < n)`);
  }
  const slurm = slurmShard(command, env);
  if (slurm && (slurm.index !== index || slurm.count !== count)) {
    throw new UsageError(
      `${command}: --shard ${s} disagrees with this SLURM array task, which is shard ${slurm.index}/${slurm.count} ` +
        `(SLURM_ARRAY_TASK_ID/COUNT); use --shard auto or matching values`,
    );
  }
  return { index, count };
}
