/**
 * `baton chaos` (`npm run chaos` from a checkout): a fault campaign against real
 * `baton start` processes, with a verdict. This file owns the command line only: it
 * registers the subcommand and its flags, runs one campaign (campaign.ts), prints progress
 * and the summary, and ends with exit status 1 on any violation, with the seed and the
 * command that replays the fault schedule.
 */

import { type Command, InvalidArgumentError } from "commander";
import { makeDirectory } from "../shared/make-directory.js";
import { runCampaign } from "./campaign.js";
import { netnsUnsupported } from "./hosts.js";
import { HOST_NEMESES, NEMESES, NEMESIS_HELP, type NemesisKind } from "./nemesis.js";

/**
 * The shortest campaign, in seconds, that always has room for a fault: a quiet gap of up
 * to 6 s and a fault of up to 5 s (campaign.ts). A shorter one could run none, and its
 * verdicts would be about a cluster left alone.
 */
const DURATION_S_MIN = 12;

function integer(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected an integer from ${min} to ${max}`);
    }
    return n;
  };
}

function nemesisList(value: string): NemesisKind[] {
  if (value === "all") return [...NEMESES];
  const kinds = value.split(",").map((s) => s.trim());
  for (const kind of kinds) {
    if (!(NEMESES as readonly string[]).includes(kind)) {
      throw new InvalidArgumentError(
        `unknown nemesis ${JSON.stringify(kind)}; one of: all, ${NEMESES.join(", ")}`,
      );
    }
  }
  return kinds as NemesisKind[];
}

/** The width of the fault names' column in --help. */
const NEMESIS_WIDTH = Math.max(...NEMESES.map((k) => k.length)) + 1;

function stamp(): string {
  return new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
}

interface ChaosFlags {
  seed?: number;
  duration: number;
  nodes: number;
  clients: number;
  keys: number;
  nemesis: NemesisKind[];
  method: string;
  hosts: string;
  staleReads: boolean;
  out?: string;
}

/** Adds `chaos` to `program`: the action sets process.exitCode (0, 1 on a violation, 2). */
export function register(program: Command): void {
  program
    .command("chaos")
    .description(
      "fault campaign against real processes: kills, pauses, network partitions, member " +
        "replacements, switchovers and rolling restarts under load, with a linearizability " +
        "verdict and a timeline report",
    )
    .option(
      "--seed <n>",
      "seed of the fault schedule and the clients (default: random)",
      integer(0, 2 ** 31),
    )
    .option(
      "--duration <s>",
      "seconds of faults under load (at least 12: room for a quiet gap and one fault)",
      integer(DURATION_S_MIN, 86_400),
      120,
    )
    .option("--nodes <n>", "cluster size, 3 or 5", integer(3, 5), 3)
    .option("--clients <n>", "concurrent clients", integer(1, 64), 5)
    .option("--keys <n>", "keys in use at a time", integer(1, 100), 4)
    .option("--nemesis <list>", "comma-separated faults, or all", nemesisList, [...NEMESES])
    .option("--method <m>", "how to partition: iptables, relay or auto", "auto")
    .option(
      "--hosts <mode>",
      "loopback (every node on this machine's loopback) or netns (each node on a host of its own: a network namespace on a bridge; root)",
      "loopback",
    )
    .option(
      "--stale-reads",
      "read backups' local copies (?stale=true): the checker must object",
      false,
    )
    .option("--out <dir>", "report folder (default results/chaos/<time>-<seed>)")
    .addHelpText(
      "after",
      `
Faults (--nemesis):
${NEMESES.map((k) => `  ${k.padEnd(NEMESIS_WIDTH)} ${NEMESIS_HELP[k]}`).join("\n")}

Examples:
  baton chaos                                   two minutes, 3 nodes, every fault
  baton chaos --duration 360 --nodes 5          six minutes, 5 nodes
  baton chaos --nemesis split,one-way,flap      partitions only
  baton chaos --nodes 5 --nemesis wipe-restart,replace,switchover,rolling-restart
                                                the operator's work on 5 nodes
  baton chaos --seed 1234 --duration 60         replay the fault schedule of seed 1234
  baton chaos --stale-reads --nemesis split     show that the checker catches stale reads
  baton chaos --hosts netns --duration 60       nodes on hosts of their own, host failures too

From a checkout, \`npm run chaos -- <flags>\` runs the same from the sources.
Partitions use iptables rules on per-node loopback addresses (127.x.y.11, ...) when run
as root, else a fault-injecting TCP relay between the nodes. With --hosts netns (root)
each node runs on a host of its own, a network namespace with its own address on a
bridge: partitions cut links between hosts, and host-down takes a whole host off the
network. The report folder holds
history.jsonl, verdict.json and timeline.html. Exit status 1 means a violation.`,
    )
    .action(async (flags: ChaosFlags) => {
      try {
        process.exitCode = await chaos(flags);
      } catch (error) {
        console.error(error);
        process.exitCode = 2;
      }
    });
}

async function chaos(o: ChaosFlags): Promise<number> {
  if (o.nodes !== 3 && o.nodes !== 5) {
    console.error("--nodes must be 3 or 5");
    return 2;
  }
  if (!["iptables", "relay", "auto"].includes(o.method)) {
    console.error("--method must be iptables, relay or auto");
    return 2;
  }
  if (o.hosts !== "loopback" && o.hosts !== "netns") {
    console.error("--hosts must be loopback or netns");
    return 2;
  }
  if (o.hosts === "netns") {
    const why = netnsUnsupported();
    if (why !== null) {
      console.error(`--hosts netns: ${why}`);
      return 2;
    }
  }
  const hostFaults = o.nemesis.filter((k) => HOST_NEMESES.includes(k));
  if (o.hosts !== "netns" && hostFaults.length > 0) {
    if (o.nemesis.length < NEMESES.length) {
      console.error(`--nemesis ${hostFaults.join(",")} needs --hosts netns`);
      return 2;
    }
    // Every fault (the default, or "all") means every fault these hosts can have.
    o.nemesis = o.nemesis.filter((k) => !HOST_NEMESES.includes(k));
  }
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 31);
  const out = o.out ?? `results/chaos/${stamp()}-${seed}`;
  try {
    makeDirectory(out);
  } catch (error) {
    console.error(`--out: ${(error as Error).message}; give a folder that can be created`);
    return 2;
  }
  console.log(
    `fault campaign: seed ${seed}, ${o.duration} s, ${o.nodes} nodes, faults ${o.nemesis.join(",")}`,
  );
  const result = await runCampaign({
    seed,
    durationMs: o.duration * 1000,
    nodes: o.nodes,
    clients: o.clients,
    keys: o.keys,
    nemeses: o.nemesis,
    method: o.method as "iptables" | "relay" | "auto",
    hosts: o.hosts,
    staleReads: o.staleReads,
    out,
    progress: (line) => console.log(line),
  });
  console.log(result.summary);
  if (!result.ok) {
    console.error(
      `\nVIOLATION with seed ${seed}. Replay the fault schedule with:\n  ${result.reproduce}`,
    );
    return 1;
  }
  return 0;
}
