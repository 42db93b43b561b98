#!/usr/bin/env node
/**
 * The `baton` command: one commander program to which every subcommand adds itself with
 * the `register(program, io)` of its own module. This file owns only what the commands
 * share: the name, the version, the generated help, and turning commander's outcomes
 * (help shown, bad usage) into exit codes. It never defines a command's flags or output.
 *
 * Exit codes (commands/exit-code.ts): 0 success, 1 a failed check or operation, 2 bad
 * usage, 3 unavailable (no master, nothing reachable, timeout).
 */

import { readFileSync, realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Command, CommanderError, type Option } from "commander";
import { register as registerChaos } from "../chaos/main.js";
import { register as registerCerts } from "./commands/certs.js";
import { type CliIo, processIo } from "./commands/cli-io.js";
import { register as registerConfig } from "./commands/config.js";
import { register as registerDemo } from "./commands/demo.js";
import { ExitCode } from "./commands/exit-code.js";
import { register as registerKv } from "./commands/kv.js";
import { register as registerMembers } from "./commands/members.js";
import { register as registerRecover } from "./commands/recover.js";
import { register as registerSnapshot } from "./commands/snapshot.js";
import { register as registerStart } from "./commands/start.js";
import { register as registerStatus } from "./commands/status.js";
import { register as registerStore } from "./commands/store.js";

/**
 * Adds one or more subcommands to `program`. A command reports its exit code in
 * `io.exitCode`; one that sets `process.exitCode` instead is right only with `processIo()`.
 */
export type Register = (program: Command, io: CliIo) => void;

/**
 * The simulator checks Baton's own code and stays out of the published package (from a
 * clone, `npm run sim` runs it). Where it is missing, `baton sim` says so and exits 2; any
 * other failure to load it is a bug and is thrown.
 */
const registerSim: Register = await import("../sim/main.js").then(
  (module) => module.register,
  (error: NodeJS.ErrnoException) => {
    if (error.code !== "ERR_MODULE_NOT_FOUND" || !String(error.message).includes("/sim/main.js"))
      throw error;
    return (program: Command, io: CliIo) => {
      program
        .command("sim")
        .description("the deterministic simulator (not in the installed package)")
        .allowUnknownOption()
        .allowExcessArguments()
        .action(() => {
          io.stderr.write(
            "baton sim: the simulator is not part of the installed package; run it from a clone of the repository: npm ci && npm run sim -- --seed 1\n",
          );
          io.exitCode = ExitCode.usage;
        });
    };
  },
);

/**
 * Every subcommand, in the order `baton --help` lists them. A new command is one import
 * and one entry here.
 */
const COMMANDS: readonly Register[] = [
  registerStart,
  registerConfig,
  registerDemo,
  registerKv,
  registerStore,
  registerStatus,
  registerMembers,
  registerSnapshot,
  registerRecover,
  registerCerts,
  registerSim,
  registerChaos,
];

const EXAMPLES = `
Exit codes: 0 success, 1 a failed check or operation, 2 bad usage, 3 unavailable,
4 refused by the cluster (no token, an unknown one, or one without the role).

Examples:
  baton demo                    a three-node cluster on this machine; Ctrl-C stops it
  baton put greeting hello      store a value (put, get, del, status talk to a cluster)
  baton status                  every node's role, term, indexes and lag
  baton sim --demo              a simulated run with faults, explained (a clone of the repository)
  baton help start              the options of one command`;

/** The version in package.json, which is two directories above this file in src/ and dist/. */
export function packageVersion(): string {
  const path = fileURLToPath(new URL("../../package.json", import.meta.url));
  const { version } = JSON.parse(readFileSync(path, "utf8")) as { version?: unknown };
  if (typeof version !== "string") throw new Error(`${path} has no "version"`);
  return version;
}

/** The `baton` program with every subcommand; help and errors go to `io`'s streams. */
export function createProgram(io: CliIo): Command {
  const program = new Command("baton")
    .description(
      "Baton: high availability for Node.js state machines (master/backup replication with automatic fail-over).",
    )
    .usage("<command> [options]")
    .version(packageVersion(), "-V, --version", "print Baton's version")
    .exitOverride()
    .configureOutput({
      writeOut: (text) => void io.stdout.write(text),
      writeErr: (text) => void io.stderr.write(text),
    })
    .showSuggestionAfterError()
    .addHelpText("after", EXAMPLES);
  // Registration after the settings above, so that every subcommand inherits them.
  for (const register of COMMANDS) register(program, io);
  // After a usage error, one line that says where the help is.
  program.showHelpAfterError('(run "baton --help" for the list of commands)');
  pointAtHelp(program.commands, "baton");
  return program;
}

/** After a usage error of any subcommand, nested ones too, one line naming its help. */
function pointAtHelp(commands: readonly Command[], parent: string): void {
  for (const command of commands) {
    const path = `${parent} ${command.name()}`;
    command.showHelpAfterError(`(run "${path} --help" for its options and examples)`);
    pointAtHelp(command.commands, path);
  }
}

/**
 * Mistakes commander lets through, in the words of the command line `argv`:
 * - `baton get k --token --json`: commander takes the word after an option that needs a
 *   value, whatever it is, so "--json" became the token and the output was not JSON. A
 *   value that is exactly one of the command's own options is refused; `--token=--json`
 *   says it is meant.
 * - `--peers a --peers b`: the second replaced the first without a word. An option that
 *   takes a value is refused when given twice, unless it collects its values (`--host`).
 * Words after "--" are operands and are not looked at.
 */
export function optionMisuse(command: Command, argv: readonly string[]): string | null {
  const options = new Map<string, Option>();
  for (const option of command.options) {
    if (option.long !== undefined) options.set(option.long, option);
    if (option.short !== undefined) options.set(option.short, option);
  }
  const isFlag = (word: string) => options.has(word) || word === "--help" || word === "-h";
  const given = new Map<Option, string>();
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (word === "--") break;
    const equals = word.startsWith("--") ? word.indexOf("=") : -1;
    const name = equals > 0 ? word.slice(0, equals) : word;
    const option = options.get(name);
    if (option === undefined || (!option.required && !option.optional)) continue;
    // A parser of (value, previous) collects; any other keeps the last value alone.
    const collects = option.variadic || (option.parseArg?.length ?? 0) >= 2;
    const first = given.get(option);
    if (first !== undefined && !collects) {
      return `option ${option.long ?? name} is given twice (${first}, then ${word}): the second would replace the first; give it once${option.long === "--peers" || option.long === "--endpoints" ? ", with every item in one comma-separated list" : ""}`;
    }
    given.set(option, word);
    if (equals > 0 || !option.required || i + 1 >= argv.length) continue;
    const value = argv[i + 1]!;
    if (isFlag(value)) {
      return `option ${word} needs a value, but the word after it is the option ${value}: give the value (or write ${word}=${value} if that is the value meant)`;
    }
    i++;
  }
  return null;
}

/**
 * Runs `baton` with `argv` (without "node" and the script, e.g. ["get", "k"]) and returns
 * the exit code: 0 ok, 1 failed, 2 usage, 3 unavailable. Help and the version exit 0.
 */
export async function main(argv: readonly string[], io: CliIo = processIo()): Promise<number> {
  const program = createProgram(io);
  program.hook("preAction", (_program, command) => {
    const problem = optionMisuse(command, argv);
    if (problem !== null) command.error(`error: ${problem}`, { exitCode: ExitCode.usage });
  });
  io.exitCode = ExitCode.ok;
  // `baton lease keep-alive --help` (a typo): commander prints the group's help and exits
  // 0 before it looks at the subcommand, so a script learns nothing. Without the help
  // flag, commander refuses the unknown subcommand and suggests the nearest (exit 2).
  const args = unknownSubcommandOf(program, argv) === null ? argv : withoutHelpFlags(argv);
  try {
    await program.parseAsync([...args], { from: "user" });
  } catch (error) {
    if (!(error instanceof CommanderError)) throw error;
    if (error.code === "commander.unknownOption" && /'-[^-]/.test(error.message)) {
      // `baton put k -x`: a value that starts with "-" reads as an option.
      io.stderr.write(
        `(a key or value that starts with "-" goes after "--", every option before it: baton put [options] -- <key> <value>)\n`,
      );
    }
    return exitCodeOf(error);
  }
  return io.exitCode;
}

/**
 * The first word of `argv` that names no subcommand of the command group it follows
 * (`keep-alive` in `baton lease keep-alive`), or null when every group word is known.
 * Only group commands (those with subcommands) are looked into: a leaf's words are its
 * operands.
 */
export function unknownSubcommandOf(program: Command, argv: readonly string[]): string | null {
  let group = program;
  for (const word of argv) {
    if (word === "--") return null;
    if (word.startsWith("-")) continue; // groups take no option with a value
    if (group.commands.length === 0) return null;
    const next = group.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (next === undefined) return word === "help" ? null : word;
    group = next;
  }
  return null;
}

/** `argv` without the help flags before any "--". */
function withoutHelpFlags(argv: readonly string[]): string[] {
  const end = argv.indexOf("--");
  const head = end === -1 ? argv : argv.slice(0, end);
  const tail = end === -1 ? [] : argv.slice(end);
  return [...head.filter((word) => word !== "--help" && word !== "-h"), ...tail];
}

function exitCodeOf(error: CommanderError): number {
  switch (error.code) {
    case "commander.helpDisplayed":
    case "commander.version":
      return ExitCode.ok;
    case "commander.help":
      // `baton help` asked for it (0); a bare `baton` or `baton help <unknown>` is shown
      // help instead of running anything (commander's 1), which is bad usage.
      return error.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    default:
      return ExitCode.usage;
  }
}

/**
 * Whether node was asked to run this file (not a test importing it). Paths are compared
 * after resolving links, since an installed `baton` is a link to dist/cli/main.js.
 */
function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

/**
 * A reader that stops early (`baton --help | head`) closes the pipe: that is not an error
 * of ours, so stop quietly instead of crashing with EPIPE.
 */
function exitQuietlyOnClosedPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "EPIPE") process.exit(process.exitCode ?? 0);
      throw error;
    });
  }
}

/**
 * Once a command is done, this process has nothing left to do: a handle still open (a
 * kept-alive socket's idle timer, a reconnect timer of a stopped transport) must not keep
 * it alive. A stopped `baton start` lingered up to 8 s this way, which a rolling restart
 * waits for. The timer is unref'd, so a process that ends by itself ends at once.
 */
const LINGER_MS = 500;

if (isEntryPoint()) {
  exitQuietlyOnClosedPipe();
  process.exitCode = await main(process.argv.slice(2));
  setTimeout(() => process.exit(), LINGER_MS).unref();
}
