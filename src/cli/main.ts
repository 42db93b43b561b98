#!/usr/bin/env node
/**
 * The `baton` command. Each subcommand lives in its own module and returns an exit code;
 * this file only routes. Exit codes: 0 success, 1 a failed check or operation, 2 bad
 * usage, 3 unavailable (no master, nothing reachable, timeout).
 */

import { Command } from "commander";
import { simCommand } from "../sim/main.js";
import { register as registerCerts } from "./commands/certs.js";
import { register as registerDemo } from "./commands/demo.js";
import { isClientCommand, runClientCli } from "./commands/run-client-cli.js";
import { register as registerStart } from "./commands/start.js";

const program = new Command("baton")
  .description(
    "Baton: high availability for Node.js state machines (master/backup replication with automatic fail-over).",
  )
  .usage("<command> [options]")
  .addHelpText(
    "after",
    `
Commands:
  start               run one node of a cluster (baton start --help)
  demo                start a three-node cluster on this machine (baton demo --help)
  put <key> [value]   store a value (baton put --help)
  get <key>           print a value (baton get --help)
  del <key>           delete a key (baton del --help)
  status              show every node's role, term, indexes and lag (baton status --help)
  certs               make the CA, node certificates and API tokens of a secure cluster
  sim [options]       run the deterministic cluster simulator (baton sim --help)

Examples:
  baton sim --demo              a short simulated run with faults, explained
  baton sim --seeds 10000       sweep ten thousand seeds and report any violation
  baton sim --seed 42 --trace   replay one seed, step by step`,
  );

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "sim") return simCommand(rest, ["sim"]);
  if (isClientCommand(command)) return runClientCli([...argv]);
  if (command === "start" || command === "demo" || command === "certs") {
    const sub = new Command("baton").exitOverride();
    registerStart(sub);
    registerDemo(sub);
    registerCerts(sub);
    try {
      await sub.parseAsync([...argv], { from: "user" });
    } catch (error) {
      const code = (error as { exitCode?: number }).exitCode;
      return code === 0 ? 0 : 2;
    }
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  }
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    program.outputHelp();
    return command === undefined ? 2 : 0;
  }
  if (command === "--version" || command === "-V") {
    console.log("0.1.0");
    return 0;
  }
  console.error(
    `baton: unknown command "${command}". Run "baton --help" for the list of commands.`,
  );
  return 2;
}

process.exitCode = await main(process.argv.slice(2));
