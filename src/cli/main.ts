#!/usr/bin/env node
/**
 * The `baton` command. Each subcommand lives in its own module and returns an exit code;
 * this file only routes. Exit codes: 0 success, 1 a failed check or operation, 2 bad
 * usage.
 */

import { Command } from "commander";
import { simCommand } from "../sim/main.js";

const program = new Command("baton")
  .description(
    "Baton: high availability for Node.js state machines (master/backup replication with automatic fail-over).",
  )
  .usage("<command> [options]")
  .addHelpText(
    "after",
    `
Commands:
  sim [options]   run the deterministic cluster simulator (baton sim --help)

Examples:
  baton sim --demo              a short simulated run with faults, explained
  baton sim --seeds 10000       sweep ten thousand seeds and report any violation
  baton sim --seed 42 --trace   replay one seed, step by step`,
  );

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === "sim") return simCommand(rest, ["sim"]);
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
