/**
 * Runs the commands that talk to a running cluster (`put`, `get`, `del`, `status`) from an
 * argument list, and returns their exit code. It builds one commander program, lets each
 * command module register its subcommands, and turns commander's own outcomes (help shown,
 * bad usage) into exit codes, so that `src/cli/main.ts` only routes.
 */

import { Command, CommanderError } from "commander";
import { type CliIo, processIo } from "./cli-io.js";
import { ExitCode } from "./exit-code.js";
import { register as registerKv } from "./kv.js";
import { register as registerStatus } from "./status.js";

/** The first arguments that `runClientCli` handles. */
export const CLIENT_COMMANDS: readonly string[] = ["put", "get", "del", "delete", "status"];

/** Whether `command` (the first argument) is one of the client commands. */
export function isClientCommand(command: string | undefined): boolean {
  return command !== undefined && CLIENT_COMMANDS.includes(command);
}

/**
 * Parses `argv` (without "node" and the script, e.g. ["get", "k"]) and runs the command.
 * Returns 0 ok, 1 failed, 2 usage, 3 unavailable. Help goes to `io.stdout` and exits 0.
 */
export async function runClientCli(
  argv: readonly string[],
  io: CliIo = processIo(),
): Promise<number> {
  const program = new Command("baton")
    .exitOverride()
    .configureOutput({
      writeOut: (text) => void io.stdout.write(text),
      writeErr: (text) => void io.stderr.write(text),
    })
    .showSuggestionAfterError()
    .showHelpAfterError("(run the command with --help for its options and examples)");
  // Registration after the settings above, so that every subcommand inherits them.
  registerKv(program, io);
  registerStatus(program, io);
  io.exitCode = ExitCode.ok;
  try {
    await program.parseAsync([...argv], { from: "user" });
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    const shownOnRequest =
      error.code === "commander.helpDisplayed" || error.code === "commander.version";
    return shownOnRequest ? ExitCode.ok : ExitCode.usage;
  }
  return io.exitCode;
}
