/**
 * `baton recover --id N --data DIR [--force-new-cluster]`: bringing a cluster that lost a
 * majority of its voters back from one survivor's stopped data directory. Without
 * `--force-new-cluster` it only reads: it prints what the survivor holds, what the
 * recovery would write and discard, and the risk. With it, it makes the survivor the only
 * voter of a new configuration (src/server/force-new-cluster.ts) and says what to do next.
 *
 * It never talks to a cluster and never runs on a running node's directory: the data
 * directory's lock is taken for the whole command.
 */

import type { Command } from "commander";
import type { Member } from "../../protocol/messages.js";
import { forceNewCluster, type RecoveryPlan } from "../../server/force-new-cluster.js";
import type { CliIo } from "./cli-io.js";
import { ExitCode } from "./exit-code.js";

interface RecoverFlags {
  readonly id: string;
  readonly data: string;
  readonly forceNewCluster?: boolean;
}

/** Adds `recover` to `program`; it sets `io.exitCode`. */
export function register(program: Command, io: CliIo): void {
  program
    .command("recover")
    .description(
      "after the loss of a majority: make one stopped survivor the only voter of a new configuration",
    )
    .requiredOption("--id <id>", "the survivor's node id")
    .requiredOption("--data <dir>", "the survivor's data directory (its node must be stopped)")
    .option(
      "--force-new-cluster",
      "write the new configuration; without it, only print what would be done (a dry run)",
    )
    .addHelpText(
      "after",
      `
Use it only when a majority of the voters is lost for good (their machines or disks are
gone) and the cluster cannot elect a master. Stop every surviving node first, run the
dry run on each and pick the one whose log is the most up to date (the highest last
term, then the highest last index), then:

  baton recover --id 1 --data /var/lib/baton                      # dry run: prints the plan
  baton recover --id 1 --data /var/lib/baton --force-new-cluster  # does it

The survivor keeps its data and the cluster id; at its next start (its usual baton start
command) it is a cluster of one. Grow it again with "baton member add" and
"baton start --join <url>" on empty data directories, one member at a time.

The risk: writes the lost members committed that never reached this survivor are lost,
and writes this survivor holds that were never committed become committed. The lost
members must never start again with their old data directories: wipe them first.
Exit codes: 0 done (or dry run printed), 1 the directory could not be read, 2 refused.
The procedure: docs/operations.md, "Recovering from the loss of a majority".`,
    )
    .action(async (flags: RecoverFlags) => {
      io.exitCode = await recover(flags, io);
    });
}

async function recover(flags: RecoverFlags, io: CliIo): Promise<number> {
  const id = Number(flags.id);
  if (!Number.isInteger(id) || id < 1) {
    io.stderr.write(`baton recover: --id ${flags.id} is not a positive integer\n`);
    return ExitCode.usage;
  }
  const write = flags.forceNewCluster === true;
  let plan: RecoveryPlan;
  try {
    plan = await forceNewCluster(flags.data, id, { write });
  } catch (error) {
    const err = error as Error & { code?: string };
    io.stderr.write(`baton recover: ${err.message}\n`);
    return err.code === "ERR_RECOVERY_REFUSED" ? ExitCode.usage : ExitCode.failed;
  }
  io.stdout.write(describePlan(plan, write));
  return ExitCode.ok;
}

/** The plan as the operator reads it: what the survivor holds, what changes, the risk. */
export function describePlan(plan: RecoveryPlan, written: boolean): string {
  const s = plan.survivor;
  const lines = [
    `data directory ${s.dir}: node ${s.id}, member incarnation ${s.incarnation}, cluster ${s.clusterId ?? "(no cluster id yet)"}`,
    `  log: last index ${s.lastIndex} (term ${s.lastTerm}), snapshot at index ${s.snapshotIndex}, current term ${s.term}`,
    `  commit index on disk: ${s.commitIndex} (a hint, written now and then: more may have been committed)`,
    `  configuration (${s.configIndex === 0 ? "from the identity file" : `entry ${s.configIndex}`}): ${members(s.configuration)}`,
  ];
  // Opening the directory runs the start-up recovery of its storage, dry run or not.
  for (const warning of plan.warnings) lines.push(`  storage recovery on opening it: ${warning}`);
  if (plan.alreadyAlone) {
    lines.push(
      `node ${s.id} is already the only voter: nothing to recover; start it with its usual baton start command`,
    );
    return `${lines.join("\n")}\n`;
  }
  const { entry, uncommitted } = plan;
  lines.push(
    `${written ? "wrote" : "would write"}: config entry ${entry.index} in term ${entry.term}, committed: ${members(plan.configuration)}`,
    `  removed from the configuration: ${plan.removed.map((m) => `node ${m.id} (incarnation ${m.incarnation})`).join(", ")}`,
    `  the store will hold every write this node holds: revisions up to ${s.lastIndex} (revisions are log indexes)`,
    uncommitted === null
      ? "  every entry this node holds is below the commit index on disk"
      : `  entries ${uncommitted.from}..${uncommitted.to} are past the commit index on disk: any of them never committed becomes committed`,
    "risk:",
    "  - writes the lost members committed after this node's last index are lost for good, even if they were acknowledged",
    "  - entries this node holds that were never committed become committed (a client that saw an error or a timeout may find its write applied)",
    "  - the removed members must never start with their old data directories: wipe them and add them back (baton member add, then baton start --join <url>); two of them together could still elect a master of the old configuration",
  );
  if (written) {
    const self = plan.configuration[0]!;
    const url = self.httpUrl === "" ? `<node ${s.id}'s url>` : self.httpUrl;
    lines.push(
      `done. Start node ${s.id} with its usual baton start command: it becomes master alone.`,
      "Then bring each lost member back on a wiped (empty) data directory, one at a time:",
    );
    for (const m of plan.removed) {
      const peer = m.peerAddress === "" ? "<host:port>" : m.peerAddress;
      const http = m.httpUrl === "" ? "<url>" : m.httpUrl;
      lines.push(
        `  baton member add ${m.id} --peer-address ${peer} --http-url ${http} --endpoints ${url}`,
        `  baton start --id ${m.id} ... --data <empty dir> --join ${url}`,
        `  baton member promote ${m.id} --endpoints ${url}   (once it has caught up)`,
      );
    }
  } else {
    lines.push(
      `dry run: the configuration was not changed${plan.warnings.length > 0 ? " (opening the directory repaired its storage, as listed above)" : ""}. To do it: baton recover --id ${s.id} --data ${s.dir} --force-new-cluster`,
    );
  }
  return `${lines.join("\n")}\n`;
}

function members(config: readonly Member[]): string {
  return config
    .map(
      (m) =>
        `${m.id} ${m.voter ? "voter" : "learner"}${m.peerAddress === "" ? "" : ` ${m.peerAddress}`}`,
    )
    .join(", ");
}
