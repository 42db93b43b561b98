/**
 * `baton put`, `baton get` and `baton del`: the key-value operations from the shell, through
 * the client library (so they find the master and survive a fail-over like any program).
 * This file owns reading the value (argument, file or standard input), printing results for
 * people or scripts (--json, --raw), and the exit codes; it never retries by itself.
 */

import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import { type CliIo, processIo, readStandardInput } from "./cli-io.js";
import {
  addClusterOptions,
  type ClusterOptions,
  integerArgument,
  withClient,
} from "./cluster-options.js";
import { ExitCode, shellWord } from "./exit-code.js";

/** How long a key-value command may take, retries included, unless --timeout says. */
const KV_TIMEOUT_MS_DEFAULT = 10_000;

interface PutOptions extends ClusterOptions {
  readonly file?: string;
  readonly ifRevision?: number;
  readonly lease?: number;
  readonly json?: boolean;
}

interface GetOptions extends ClusterOptions {
  readonly stale?: boolean;
  readonly raw?: boolean;
  readonly json?: boolean;
}

interface DelOptions extends ClusterOptions {
  readonly ifRevision?: number;
  readonly json?: boolean;
}

/** Adds `put`, `get` and `del` to `program`; each sets `io.exitCode`. */
export function register(program: Command, io: CliIo = processIo()): void {
  registerPut(program, io);
  registerGet(program, io);
  registerDel(program, io);
}

function registerPut(program: Command, io: CliIo): void {
  const command = program
    .command("put")
    .description("store a value under a key (on the master, applied once even if retried)")
    .argument("<key>", "the key")
    .argument("[value]", 'the value; "-" reads standard input')
    .option("--file <path>", 'read the value from a file ("-": standard input)')
    .option(
      "--if-revision <n>",
      "store only if the key is at revision n (0: absent)",
      integerArgument(0),
    )
    .option("--lease <id>", "attach the key to a lease (`baton lease grant`)", integerArgument(1))
    .option("--json", 'print {"key","revision"} as JSON');
  addClusterOptions(command, KV_TIMEOUT_MS_DEFAULT).addHelpText(
    "after",
    `
Prints the key's new revision. Exit codes: 0 stored, 1 revision mismatch (--if-revision),
2 bad usage or input, 3 no master reachable in time, 4 token refused.

Examples:
  baton put greeting hello
  baton put config --file ./config.json
  echo -n hello | baton put greeting -
  baton put lock me --if-revision 0      # only if "lock" does not exist yet
  BATON_ENDPOINTS=10.0.0.1:8101,10.0.0.2:8101 baton put k v`,
  );
  command.action(async (key: string, value: string | undefined, options: PutOptions) => {
    io.exitCode = await withClient(io, options, KV_TIMEOUT_MS_DEFAULT, async (client) => {
      const bytes = await readValue(io, value, options.file);
      if (typeof bytes === "number") return bytes;
      const writeOptions = {
        ...(options.ifRevision === undefined ? {} : { ifRevision: options.ifRevision }),
        ...(options.lease === undefined ? {} : { lease: options.lease }),
      };
      const { revision } = await client.put(key, bytes, writeOptions);
      if (options.json === true) io.stdout.write(`${JSON.stringify({ key, revision })}\n`);
      else io.stdout.write(`stored ${JSON.stringify(key)} at revision ${revision}\n`);
      return ExitCode.ok;
    });
  });
}

function registerGet(program: Command, io: CliIo): void {
  const command = program
    .command("get")
    .description("print the value stored under a key")
    .argument("<key>", "the key")
    .option("--stale", "read the answering node's local copy (faster; works without a master)")
    .option("--raw", "print the stored bytes exactly, without a newline (for binary values)")
    .option("--json", 'print {"key","value","revision"} as JSON (value as UTF-8 text)');
  addClusterOptions(command, KV_TIMEOUT_MS_DEFAULT).addHelpText(
    "after",
    `
Reads are linearizable unless --stale. Exit codes: 0 found, 1 not found, 2 bad usage,
3 no master reachable in time, 4 token refused.

Examples:
  baton get greeting
  baton get greeting --json
  baton get image --raw > image.png
  baton get greeting --stale --endpoints 127.0.0.1:8102`,
  );
  command.action(async (key: string, options: GetOptions) => {
    if (options.raw === true && options.json === true) {
      io.exitCode = usage(io, "choose one of --raw and --json");
      return;
    }
    io.exitCode = await withClient(io, options, KV_TIMEOUT_MS_DEFAULT, async (client) => {
      const entry = await client.get(key, { stale: options.stale === true });
      if (entry === null) return notFound(io, key);
      if (options.raw === true) io.stdout.write(entry.value);
      else if (options.json === true) {
        const json = { key: entry.key, value: entry.text(), revision: entry.revision };
        io.stdout.write(`${JSON.stringify(json)}\n`);
      } else io.stdout.write(`${entry.text()}\n`);
      return ExitCode.ok;
    });
  });
}

function registerDel(program: Command, io: CliIo): void {
  const command = program
    .command("del")
    .alias("delete")
    .description("delete a key")
    .argument("<key>", "the key")
    .option("--if-revision <n>", "delete only if the key is at revision n", integerArgument(0))
    .option("--json", 'print {"key","revision"} as JSON');
  addClusterOptions(command, KV_TIMEOUT_MS_DEFAULT).addHelpText(
    "after",
    `
Exit codes: 0 deleted, 1 not found or revision mismatch, 2 bad usage, 3 no master
reachable in time, 4 token refused.

Examples:
  baton del greeting
  baton del lock --if-revision 7       # only if nobody changed it since revision 7`,
  );
  command.action(async (key: string, options: DelOptions) => {
    io.exitCode = await withClient(io, options, KV_TIMEOUT_MS_DEFAULT, async (client) => {
      const writeOptions =
        options.ifRevision === undefined ? {} : { ifRevision: options.ifRevision };
      const result = await client.delete(key, writeOptions);
      if (result === null) return notFound(io, key);
      if (options.json === true) io.stdout.write(`${JSON.stringify({ key, ...result })}\n`);
      else io.stdout.write(`deleted ${JSON.stringify(key)} at revision ${result.revision}\n`);
      return ExitCode.ok;
    });
  });
}

/**
 * The value to store: the argument, or the contents of --file, or standard input for "-".
 * Returns an exit code instead when the sources conflict or the file cannot be read.
 */
async function readValue(
  io: CliIo,
  value: string | undefined,
  file: string | undefined,
): Promise<Uint8Array | number> {
  if (value !== undefined && file !== undefined) {
    return usage(io, "give the value as an argument or with --file, not both");
  }
  if (value === undefined && file === undefined) {
    return usage(io, 'give a value, --file <path>, or "-" to read standard input');
  }
  if (value === "-" || file === "-") return readStandardInput(io, "the value");
  if (file === undefined) return new TextEncoder().encode(value);
  try {
    return new Uint8Array(await readFile(file));
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return usage(io, `cannot read --file ${shellWord(file)} (${reason})`);
  }
}

function usage(io: CliIo, message: string): number {
  io.stderr.write(`baton: ${message} (see --help)\n`);
  return ExitCode.usage;
}

function notFound(io: CliIo, key: string): number {
  io.stderr.write(`baton: key ${JSON.stringify(key)} not found\n`);
  return ExitCode.failed;
}
