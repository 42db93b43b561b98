/**
 * `baton member list` and `baton switchover`: who the members are, and handing the master
 * role to another member on purpose (before maintenance on the master's machine), through
 * the client library. This file owns their arguments, output and exit codes; the node
 * does the work (any node takes the request and passes it to the master).
 */

import type { Command } from "commander";
import { type CliIo, processIo } from "./cli-io.js";
import {
  addClusterOptions,
  type ClusterOptions,
  integerArgument,
  withClient,
} from "./cluster-options.js";
import { ExitCode } from "./exit-code.js";

/** A switchover waits for the new master: allow it an election and retries. */
const SWITCHOVER_TIMEOUT_MS_DEFAULT = 10_000;
/** One attempt waits up to this long: a switchover that fails takes ~3 election timeouts. */
const SWITCHOVER_ATTEMPT_MS_MAX = 5000;
const MEMBERS_TIMEOUT_MS_DEFAULT = 5000;

interface JsonOption extends ClusterOptions {
  readonly json?: boolean;
}

interface SwitchoverOptions extends JsonOption {
  readonly to?: number;
}

/** Adds `member` (with `list`) and `switchover` to `program`; each sets `io.exitCode`. */
export function register(program: Command, io: CliIo = processIo()): void {
  registerMember(program, io);
  registerSwitchover(program, io);
}

function registerMember(program: Command, io: CliIo): void {
  const member = program.command("member").description("the cluster's members (baton member list)");
  const list = member
    .command("list")
    .description("list the members: id, voter, peer address and HTTP URL")
    .option("--json", 'print {"members":[…]} as GET /v1/members answers it');
  addClusterOptions(list, MEMBERS_TIMEOUT_MS_DEFAULT).addHelpText(
    "after",
    `
Exit codes: 0 listed, 2 bad usage, 3 no node reachable in time.

Examples:
  baton member list
  baton member list --json --endpoints 10.0.0.1:8101`,
  );
  list.action(async (options: JsonOption) => {
    io.exitCode = await withClient(io, options, MEMBERS_TIMEOUT_MS_DEFAULT, async (client) => {
      const members = await client.members();
      if (options.json === true) {
        io.stdout.write(`${JSON.stringify({ members })}\n`);
        return ExitCode.ok;
      }
      const rows = [["ID", "VOTER", "PEER ADDRESS", "HTTP URL"]];
      for (const m of members) {
        rows.push([String(m.id), m.voter ? "yes" : "no", m.peerAddress, m.httpUrl ?? "-"]);
      }
      const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
      for (const row of rows) {
        io.stdout.write(
          `${row
            .map((cell, c) => cell.padEnd(widths[c]!))
            .join("  ")
            .trimEnd()}\n`,
        );
      }
      return ExitCode.ok;
    });
  });
}

function registerSwitchover(program: Command, io: CliIo): void {
  const command = program
    .command("switchover")
    .description("hand the master role to another member on purpose (no fail-over)")
    .option(
      "--to <id>",
      "the member to hand over to (default: the best-placed backup)",
      integerArgument(1),
    )
    .option("--json", 'print {"master","term"} as JSON');
  addClusterOptions(command, SWITCHOVER_TIMEOUT_MS_DEFAULT).addHelpText(
    "after",
    `
The master stops taking new writes, brings the chosen backup up to its last entry and
tells it to take over at once; writes wait for the new master rather than fail.
Exit codes: 0 the new master serves, 1 refused (the target cannot take over; nothing
changed), 2 bad usage, 3 no master reachable or no new master in time.

Examples:
  baton switchover                  the backup that holds the most of the log
  baton switchover --to 2
  baton switchover --to 2 --json`,
  );
  command.action(async (options: SwitchoverOptions) => {
    io.exitCode = await withClient(
      io,
      options,
      SWITCHOVER_TIMEOUT_MS_DEFAULT,
      async (client) => {
        const outcome = await client.switchover(options.to);
        if (options.json === true) io.stdout.write(`${JSON.stringify(outcome)}\n`);
        else io.stdout.write(`node ${outcome.master} is the master of term ${outcome.term}\n`);
        return ExitCode.ok;
      },
      SWITCHOVER_ATTEMPT_MS_MAX,
    );
  });
}
