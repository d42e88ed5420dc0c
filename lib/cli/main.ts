/**
 * keg's command line: `deno task <command> …` runs `lib/cli/main.ts <command> …`.
 * @module
 */
import { Gpu } from "../gpu/mod.ts";
import { UsageError } from "./args.ts";
import { GENERATE_USAGE, generateCommand } from "./generate.ts";
import { SELFCHECK_USAGE, selfcheckCommand } from "./selfcheck.ts";
import { EDIT_USAGE, editCommand } from "./edit.ts";
import { STATS_USAGE, statsCommand } from "./stats.ts";
import { EVAL_USAGE, evalCommand } from "./eval.ts";
import { PLAN_USAGE, planCommand } from "./plan.ts";
import { TRACE_USAGE, traceCommand } from "./trace.ts";

const COMMANDS: Record<string, { run: (args: string[]) => Promise<void>; usage: string }> = {
  generate: { run: generateCommand, usage: GENERATE_USAGE },
  selfcheck: { run: selfcheckCommand, usage: SELFCHECK_USAGE },
  edit: { run: editCommand, usage: EDIT_USAGE },
  stats: { run: statsCommand, usage: STATS_USAGE },
  eval: { run: evalCommand, usage: EVAL_USAGE },
  plan: { run: planCommand, usage: PLAN_USAGE },
  trace: { run: traceCommand, usage: TRACE_USAGE },
  merge: {
    run: (args) => evalCommand(["merge", ...args]),
    usage: "keg merge --out DIR SHARD_DIR…  (same as keg eval merge: combine eval shards into one run)",
  },
};

/** Entry point. */
export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "help" || cmd === "--help" || !(cmd in COMMANDS)) {
    const list = Object.values(COMMANDS).map((c) => c.usage).join("\n\n");
    if (cmd && cmd !== "help" && cmd !== "--help") {
      console.error(`keg: unknown command ${JSON.stringify(cmd)}\n\n${list}`);
      return 2;
    }
    console.log(list);
    return 0;
  }
  if (rest.includes("--help")) {
    console.log(COMMANDS[cmd].usage);
    return 0;
  }
  try {
    await COMMANDS[cmd].run(rest);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`${e.message}\n\n${COMMANDS[cmd].usage}`);
      return 2;
    }
    console.error(`keg ${cmd}: ${e instanceof Error ? e.message : String(e)}`);
    if (Deno.env.get("KEG_DEBUG")) console.error(e);
    return 1;
  }
}

if (import.meta.main) {
  const code = await main(Deno.args);
  // no work in flight and no driver device left when the process ends
  await Gpu.destroyOpen().catch(() => {});
  Deno.exit(code);
}
