/**
 * `baton list`, `baton delete-prefix`, `baton txn`, `baton lease …` and `baton watch`: the
 * store beyond single keys from the shell, through the client library (so they find the
 * master and survive a fail-over). This file owns reading their input, printing results for
 * people or scripts (--json), and their exit codes; it never retries by itself.
 */

import { readFile } from "node:fs/promises";
import type { Command } from "commander";
import type { TxnRequest } from "../../client/index.js";
import { type CliIo, processIo, readStandardInput } from "./cli-io.js";
import {
  addClusterOptions,
  type ClusterOptions,
  integerArgument,
  withClient,
} from "./cluster-options.js";
import { ExitCode, shellWord } from "./exit-code.js";

/** How long one operation may take, retries included, unless --timeout says. */
const TIMEOUT_MS_DEFAULT = 10_000;

interface JsonOption extends ClusterOptions {
  readonly json?: boolean;
}

interface ListOptions extends JsonOption {
  readonly limit?: number;
  readonly keysOnly?: boolean;
  readonly stale?: boolean;
}

interface WatchOptions extends JsonOption {
  readonly fromRevision?: number;
  readonly count?: number;
}

/** Adds the store commands to `program`; each sets `io.exitCode`. */
export function register(program: Command, io: CliIo = processIo()): void {
  registerList(program, io);
  registerDeletePrefix(program, io);
  registerTxn(program, io);
  registerLease(program, io);
  registerWatch(program, io);
}

function registerList(program: Command, io: CliIo): void {
  const command = program
    .command("list")
    .description("list the keys under a prefix, in order, with their values")
    .argument("[prefix]", "list only keys that start with this", "")
    .option(
      "--limit <n>",
      "list at most n keys (one page of up to 10000)",
      integerArgument(1, 10_000),
    )
    .option("--keys-only", "list keys without values (with --json: keys and revisions)")
    .option("--stale", "read the answering node's local copy")
    .option("--json", 'print [{"key","value","revision"}…] as JSON');
  addClusterOptions(command, TIMEOUT_MS_DEFAULT).addHelpText(
    "after",
    `
Without --limit every key under the prefix is listed, page after page. Prints one
"key<TAB>value" line per key (values as UTF-8 text; a key or value holding a newline, a
tab or another control character ANSI-C quoted, $'a\\nb', so that a key is one line).
Exit codes: 0 listed (even none), 2 bad usage, 3 no master reachable in time, 4 token
refused.

Examples:
  baton list sessions/
  baton list --keys-only --json
  baton list config/ --limit 10`,
  );
  command.action(async (prefix: string, options: ListOptions) => {
    io.exitCode = await withClient(io, options, TIMEOUT_MS_DEFAULT, async (client) => {
      const read = { keysOnly: options.keysOnly === true, stale: options.stale === true };
      const items =
        options.limit === undefined
          ? await collect(client.rangeAll(prefix, read))
          : (await client.range(prefix, { ...read, limit: options.limit })).items;
      if (options.json === true) {
        io.stdout.write(`${JSON.stringify(items.map((i) => withoutNullValue(i)))}\n`);
      } else {
        for (const item of items) {
          const key = oneLine(item.key);
          io.stdout.write(item.value === null ? `${key}\n` : `${key}\t${oneLine(item.value)}\n`);
        }
      }
      return ExitCode.ok;
    });
  });
}

function registerDeletePrefix(program: Command, io: CliIo): void {
  const command = program
    .command("delete-prefix")
    .description("delete every key under a prefix, at one revision")
    .argument("<prefix>", "the keys to delete start with this (not empty)")
    .option("--json", 'print {"prefix","revision","deleted"} as JSON');
  addClusterOptions(command, TIMEOUT_MS_DEFAULT).addHelpText(
    "after",
    `
Exit codes: 0 done (even when nothing matched), 2 bad usage, 3 no master reachable in time,
4 token refused.

Example:
  baton delete-prefix sessions/`,
  );
  command.action(async (prefix: string, options: JsonOption) => {
    io.exitCode = await withClient(io, options, TIMEOUT_MS_DEFAULT, async (client) => {
      const result = await client.deleteRange(prefix);
      if (options.json === true) io.stdout.write(`${JSON.stringify({ prefix, ...result })}\n`);
      else {
        io.stdout.write(
          `deleted ${result.deleted} keys under ${JSON.stringify(prefix)} at revision ${result.revision}\n`,
        );
      }
      return ExitCode.ok;
    });
  });
}

function registerTxn(program: Command, io: CliIo): void {
  const command = program
    .command("txn")
    .description("compare keys, then change several atomically (a JSON transaction)")
    .argument("[file]", 'the transaction as JSON; "-" or nothing reads standard input')
    .option("--json", 'print {"succeeded","revision"} as JSON');
  addClusterOptions(command, TIMEOUT_MS_DEFAULT).addHelpText(
    "after",
    `
The transaction is the body of POST /v1/txn (docs/api.md):
  {"compare":[{"key","revision"|"value"|"exists"}…],
   "success":[{"put":{"key","value"}}|{"delete":{"key"}}…], "failure":[…]}
Exit codes: 0 the comparisons held (success applied), 1 they did not (failure applied),
2 bad usage or a malformed transaction, 3 no master reachable in time, 4 token refused.

Example:
  echo '{"compare":[{"key":"cfg","revision":7}],"success":[{"put":{"key":"cfg","value":"v2"}}]}' | baton txn`,
  );
  command.action(async (file: string | undefined, options: JsonOption) => {
    io.exitCode = await withClient(io, options, TIMEOUT_MS_DEFAULT, async (client) => {
      const request = await readTxn(io, file);
      if (typeof request === "number") return request;
      const result = await client.txn(request);
      if (options.json === true) io.stdout.write(`${JSON.stringify(result)}\n`);
      else {
        const branch = result.succeeded ? "succeeded" : "failed (failure branch applied)";
        io.stdout.write(`${branch} at revision ${result.revision}\n`);
      }
      return result.succeeded ? ExitCode.ok : ExitCode.failed;
    });
  });
}

function registerLease(program: Command, io: CliIo): void {
  const lease = program.command("lease").description("grant, keep alive or revoke a lease");
  const grant = lease
    .command("grant")
    .description("grant a lease; attach keys with `baton put KEY VALUE --lease ID`")
    .argument("<ttlSeconds>", "seconds the lease lives without a keep-alive", integerArgument(1))
    .option("--json", 'print {"id","ttlSeconds"} as JSON');
  addClusterOptions(grant, TIMEOUT_MS_DEFAULT);
  grant.action(async (ttlSeconds: number, options: JsonOption) => {
    io.exitCode = await withClient(io, options, TIMEOUT_MS_DEFAULT, async (client) => {
      const granted = await client.grantLease(ttlSeconds);
      if (options.json === true) io.stdout.write(`${JSON.stringify(granted)}\n`);
      else io.stdout.write(`lease ${granted.id} granted for ${granted.ttlSeconds} s\n`);
      return ExitCode.ok;
    });
  });
  const keepAlive = lease
    .command("keepalive")
    .description("give a lease its full time to live again")
    .argument("<id>", "the lease id", integerArgument(1))
    .option("--json", 'print {"id","ttlSeconds"} as JSON');
  addClusterOptions(keepAlive, TIMEOUT_MS_DEFAULT);
  keepAlive.action(async (id: number, options: JsonOption) => {
    io.exitCode = await withClient(io, options, TIMEOUT_MS_DEFAULT, async (client) => {
      const kept = await client.keepAliveLease(id);
      if (options.json === true) io.stdout.write(`${JSON.stringify(kept)}\n`);
      else io.stdout.write(`lease ${kept.id} kept alive for ${kept.ttlSeconds} s\n`);
      return ExitCode.ok;
    });
  });
  const revoke = lease
    .command("revoke")
    .description("end a lease now, deleting its keys")
    .argument("<id>", "the lease id", integerArgument(1))
    .option("--json", 'print {"id","revision"} as JSON');
  addClusterOptions(revoke, TIMEOUT_MS_DEFAULT);
  revoke.action(async (id: number, options: JsonOption) => {
    io.exitCode = await withClient(io, options, TIMEOUT_MS_DEFAULT, async (client) => {
      const result = await client.revokeLease(id);
      if (result === null) {
        io.stderr.write(`baton: lease ${id} is not held (never granted, revoked or expired)\n`);
        return ExitCode.failed;
      }
      if (options.json === true) io.stdout.write(`${JSON.stringify({ id, ...result })}\n`);
      else io.stdout.write(`lease ${id} revoked at revision ${result.revision}\n`);
      return ExitCode.ok;
    });
  });
}

function registerWatch(program: Command, io: CliIo): void {
  const command = program
    .command("watch")
    .description("print every change under a prefix as it happens, across fail-overs")
    .argument("[prefix]", "watch only keys that start with this", "")
    .option("--from-revision <r>", "start with the changes of revision r", integerArgument(1))
    .option("--count <n>", "stop after n changes", integerArgument(1))
    .option("--json", 'print one {"type","key","value","revision"} per line');
  addClusterOptions(command, TIMEOUT_MS_DEFAULT).addHelpText(
    "after",
    `
Runs until Ctrl-C (or --count changes), across fail-overs. Prints "<revision> put <key>
<value>" or "<revision> delete <key>" per change, the key and value quoted as a shell
word when they hold spaces, quotes or control characters (one change per line). Exit
codes: 0 stopped, 1 the revision to resume from is compacted (ERR_COMPACTED: list the
keys again and watch from that revision + 1), 2 bad usage, 3 no node opened the watch
within --timeout (at the start, or after its node went), 4 token refused.

Examples:
  baton watch config/
  baton watch sessions/ --from-revision 120 --json`,
  );
  command.action(async (prefix: string, options: WatchOptions) => {
    io.exitCode = await withClient(io, options, TIMEOUT_MS_DEFAULT, async (client) => {
      const controller = new AbortController();
      const stop = (): void => controller.abort();
      process.once("SIGINT", stop);
      let seen = 0;
      try {
        const watchOptions = {
          signal: controller.signal,
          // No stream open for this long (the cluster down, the endpoints wrong): exit 3.
          openTimeoutMs: options.timeout ?? TIMEOUT_MS_DEFAULT,
          ...(options.fromRevision === undefined ? {} : { fromRevision: options.fromRevision }),
        };
        for await (const change of client.watch(prefix, watchOptions)) {
          if (options.json === true) io.stdout.write(`${JSON.stringify(change)}\n`);
          else if (change.type === "put") {
            const value = lineWord(change.value ?? "");
            io.stdout.write(`${change.revision} put ${lineWord(change.key)} ${value}\n`);
          } else io.stdout.write(`${change.revision} delete ${lineWord(change.key)}\n`);
          seen++;
          if (options.count !== undefined && seen >= options.count) break;
        }
      } finally {
        process.removeListener("SIGINT", stop);
      }
      return ExitCode.ok;
    });
  });
}

/**
 * `text` as one shell word on one line: as is when it is plain, in single quotes when it
 * holds spaces or quotes, and ANSI-C quoted (`$'a\nb'`, as bash and zsh read it) when it
 * holds a control character, so that a change is always one line.
 */
function lineWord(text: string): string {
  return CONTROL.test(text) ? ansiC(text) : shellWord(text);
}

/** `text` as is, or ANSI-C quoted when it holds a control character (a newline, a tab). */
function oneLine(text: string): string {
  return CONTROL.test(text) ? ansiC(text) : text;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it looks for
const CONTROL = /[\u0000-\u001f\u007f]/;

function ansiC(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: as above
  const escaped = text.replace(/[\u0000-\u001f\u007f'\\]/g, (c) => {
    if (c === "\n") return "\\n";
    if (c === "\t") return "\\t";
    if (c === "\r") return "\\r";
    if (c === "'" || c === "\\") return `\\${c}`;
    return `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;
  });
  return `$'${escaped}'`;
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

function withoutNullValue<T extends { value: string | null }>(item: T) {
  if (item.value !== null) return item;
  const { value: _, ...rest } = item;
  return rest;
}

/** The transaction from a file or standard input, or an exit code when it is not JSON. */
async function readTxn(io: CliIo, file: string | undefined): Promise<TxnRequest | number> {
  let text: string;
  try {
    if (file === undefined || file === "-") {
      // Joined before decoding: a character split between two reads stays one character.
      text = new TextDecoder().decode(await readStandardInput(io, "the transaction (JSON)"));
    } else text = await readFile(file, "utf8");
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    io.stderr.write(`baton: cannot read ${shellWord(file ?? "-")} (${reason}) (see --help)\n`);
    return ExitCode.usage;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    io.stderr.write("baton: the transaction is not JSON (see --help)\n");
    return ExitCode.usage;
  }
  // A bare number would otherwise pass for the exit code this returns on a refusal.
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    io.stderr.write(
      'baton: the transaction must be a JSON object, {"compare":[…],"success":[…],"failure":[…]} (see --help)\n',
    );
    return ExitCode.usage;
  }
  return parsed as TxnRequest;
}
