/**
 * A throwaway single-node SLURM cluster for integration tests: munged, slurmctld and slurmd started from
 * Debian's packages with every file (munge key, slurm.conf, state, logs, sockets) under a temp dir, on
 * random ports, and stopped by pid. Needs root (slurmd launches jobs as their user).
 * @module
 */

/** Commands the cluster needs. */
export const SLURM_TOOLS = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel"] as const;

/** The first missing tool (or "root" when not running as root), or null when a cluster can start. */
export function slurmMissing(): string | null {
  for (const t of SLURM_TOOLS) {
    const dirs = (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/sbin", "/sbin"]);
    if (!dirs.some((d) => isFile(`${d}/${t}`))) return t;
  }
  if (Deno.uid() !== 0) return "root";
  return null;
}

function isFile(p: string): boolean {
  try {
    return Deno.statSync(p).isFile;
  } catch {
    return false;
  }
}

/** A running cluster. */
export interface Cluster {
  /** Its temp dir. */
  dir: string;
  /** Environment for client commands (SLURM_CONF). */
  env: Record<string, string>;
  /** Runs a client command, returning stdout; throws with stderr on failure. */
  run(cmd: string, args: string[], env?: Record<string, string>): Promise<string>;
  /** Waits until none of the jobs is queued or running; throws when one can never run or on timeout. */
  wait(jobs: string[], timeoutSeconds: number): Promise<void>;
  /** Cancels what is left, stops the daemons by pid, removes the temp dir. */
  stop(): Promise<void>;
}

function sbin(name: string): string {
  for (const d of ["/usr/sbin", "/sbin", ...(Deno.env.get("PATH") ?? "").split(":")]) {
    if (isFile(`${d}/${name}`)) return `${d}/${name}`;
  }
  return name;
}

/** Starts munged, slurmctld and slurmd; resolves once the node is idle. */
export async function startCluster(cpus = 2): Promise<Cluster> {
  const dir = await Deno.makeTempDir({ prefix: "keg-slurm-" });
  await Deno.chmod(dir, 0o755); // munged wants its socket's directory reachable
  await Deno.mkdir(`${dir}/state`);
  await Deno.mkdir(`${dir}/spool`);
  const key = crypto.getRandomValues(new Uint8Array(1024));
  await Deno.writeFile(`${dir}/munge.key`, key, { mode: 0o400 });
  await Deno.chmod(`${dir}/munge.key`, 0o400);
  const port = 20000 + Math.floor(Math.random() * 20000);
  const conf = `${dir}/slurm.conf`;
  await Deno.writeTextFile(
    conf,
    [
      "ClusterName=kegtest",
      "SlurmctldHost=localhost(127.0.0.1)",
      "SlurmUser=root",
      "SlurmdUser=root",
      `SlurmctldPort=${port}`,
      `SlurmdPort=${port + 1}`,
      "AuthType=auth/munge",
      `AuthInfo=socket=${dir}/munge.sock`,
      "CredType=cred/munge",
      `StateSaveLocation=${dir}/state`,
      `SlurmdSpoolDir=${dir}/spool`,
      `SlurmctldPidFile=${dir}/slurmctld.pid`,
      `SlurmdPidFile=${dir}/slurmd.pid`,
      `SlurmctldLogFile=${dir}/slurmctld.log`,
      `SlurmdLogFile=${dir}/slurmd.log`,
      "ProctrackType=proctrack/linuxproc",
      "TaskPlugin=task/none",
      "JobAcctGatherType=jobacct_gather/none",
      "AccountingStorageType=accounting_storage/none",
      "JobCompType=jobcomp/none",
      "SchedulerType=sched/builtin",
      "SelectType=select/cons_tres",
      "SelectTypeParameters=CR_Core",
      "SlurmdParameters=config_overrides",
      "MpiDefault=none",
      "ReturnToService=2",
      `NodeName=kegnode NodeHostname=localhost NodeAddr=127.0.0.1 CPUs=${cpus} State=UNKNOWN`,
      "PartitionName=debug Nodes=kegnode Default=YES MaxTime=INFINITE State=UP",
      "",
    ].join("\n"),
  );
  const env = { SLURM_CONF: conf };
  const daemons: Deno.ChildProcess[] = [];
  const spawn = (cmd: string, args: string[]) => {
    // the daemons log to the files slurm.conf and munged's flags name
    const p = new Deno.Command(sbin(cmd), { args, env, stdin: "null", stdout: "null", stderr: "null" })
      .spawn();
    daemons.push(p);
    return p;
  };
  const run = async (cmd: string, args: string[], extra: Record<string, string> = {}) => {
    const o = await new Deno.Command(cmd, { args, env: { ...env, ...extra }, stdin: "null" }).output();
    const td = new TextDecoder();
    if (!o.success) throw new Error(`${cmd} ${args.join(" ")}: exit ${o.code}\n${td.decode(o.stderr)}`);
    return td.decode(o.stdout);
  };
  const stop = async () => {
    try {
      await run("scancel", ["--user=root"]).catch(() => "");
    } finally {
      for (const p of daemons.reverse()) {
        try {
          p.kill("SIGTERM");
        } catch { /* already gone */ }
        await Promise.race([p.status, new Promise((r) => setTimeout(r, 10_000))]);
        try {
          p.kill("SIGKILL");
        } catch { /* exited */ }
      }
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  };
  try {
    spawn("munged", [
      "-F",
      "-f",
      `--socket=${dir}/munge.sock`,
      `--key-file=${dir}/munge.key`,
      `--log-file=${dir}/munged.log`,
      `--pid-file=${dir}/munged.pid`,
      `--seed-file=${dir}/munged.seed`,
    ]);
    await until(() => isSocket(`${dir}/munge.sock`), 20, "munged did not create its socket", dir);
    spawn("slurmctld", ["-D", "-f", conf]);
    spawn("slurmd", ["-D", "-N", "kegnode", "-f", conf]);
    await until(
      async () => /idle/.test(await run("sinfo", ["-h", "-o", "%T"]).catch(() => "")),
      60,
      "the node did not become idle",
      dir,
    );
  } catch (e) {
    await stop();
    throw e;
  }
  const wait = async (jobs: string[], timeoutSeconds: number) => {
    const t0 = Date.now();
    while (true) {
      const q = await run("squeue", ["-h", "-o", "%i %T %r", "-j", jobs.join(",")]).catch(() => "");
      if (q.trim() === "") return;
      if (/DependencyNeverSatisfied/.test(q)) {
        throw new Error(`a job failed, its dependants can never run:\n${q}`);
      }
      if (Date.now() - t0 > timeoutSeconds * 1000) {
        throw new Error(`jobs still queued after ${timeoutSeconds} s:\n${q}`);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  };
  return { dir, env, run, wait, stop };
}

function isSocket(p: string): boolean {
  try {
    return Deno.statSync(p).isSocket === true;
  } catch {
    return false;
  }
}

async function until(
  ok: () => boolean | Promise<boolean>,
  seconds: number,
  what: string,
  dir: string,
): Promise<void> {
  const t0 = Date.now();
  while (!(await ok())) {
    if (Date.now() - t0 > seconds * 1000) {
      const logs: string[] = [];
      for (const f of ["munged.log", "slurmctld.log", "slurmd.log"]) {
        logs.push(`--- ${f}\n${await Deno.readTextFile(`${dir}/${f}`).catch(() => "")}`);
      }
      throw new Error(`${what} within ${seconds} s\n${logs.join("\n")}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
