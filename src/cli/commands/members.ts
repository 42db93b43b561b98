/**
 * `baton member list|add|promote|remove|replace|wait` and `baton switchover`: who the members
 * are, changing them one at a time, and handing the master role to another member on
 * purpose (before maintenance on the master's machine), through the client library. This
 * file owns their arguments, output and exit codes; the nodes do the work (a switchover
 * is passed to the master by any node; a membership change is made by the master, which
 * the client library finds).
 */

import type { Command } from "commander";
import type { BatonClient, Member } from "../../client/client.js";
import type { NodeStatus } from "../../client/index.js";
import { ForbiddenError, UnauthenticatedError } from "../../shared/errors.js";
import { parseAddress } from "../../transport/address.js";
import { type CliIo, processIo } from "./cli-io.js";
import {
  addClusterOptions,
  type ClusterOptions,
  integerArgument,
  withClient,
} from "./cluster-options.js";
import {
  connectionHint,
  ExitCode,
  type GivenField,
  inCommandTerms,
  START_HINT,
} from "./exit-code.js";
import { collectStatuses } from "./status.js";

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

/** How long `member wait` waits by default: a state transfer of a large store takes minutes. */
const WAIT_TIMEOUT_MS_DEFAULT = 600_000;
/**
 * How far behind `member wait` still calls caught up, by default: what the master allows
 * a learner it promotes (the core's promoteLagEntriesMax). Under load a member is always a
 * few entries behind, so 0 could wait for ever.
 */
const WAIT_LAG_DEFAULT = 64;
/** How often `member wait` asks the master. */
const WAIT_POLL_MS = 500;

interface WaitOptions extends ClusterOptions {
  readonly lag: number;
  readonly quiet?: boolean;
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
Exit codes: 0 listed, 2 bad usage, 3 no node reachable in time, 4 token refused.

Examples:
  baton member list
  baton member list --json --endpoints 10.0.0.1:8101`,
  );
  registerChanges(member, io);
  registerWait(member, io);
  list.action(async (options: JsonOption) => {
    io.exitCode = await withClient(io, options, MEMBERS_TIMEOUT_MS_DEFAULT, async (client) => {
      const members = await client.members();
      printMembers(io, members, options.json);
      return ExitCode.ok;
    });
  });
}

interface AddOptions extends JsonOption {
  readonly peerAddress: string;
  readonly httpUrl: string;
}

/** A change waits until it is committed: allow it a fail-over and retries. */
const CHANGE_TIMEOUT_MS_DEFAULT = 10_000;

function printMembers(io: CliIo, members: readonly Member[], json: boolean | undefined): void {
  if (json === true) {
    io.stdout.write(`${JSON.stringify({ members })}\n`);
    return;
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
}

function registerChanges(member: Command, io: CliIo): void {
  const add = member
    .command("add <id>")
    .description("add a member as a learner (it receives the log, does not vote yet)")
    .requiredOption("--peer-address <host:port>", "the new node's --listen address")
    .requiredOption("--http-url <url>", "the new node's HTTP API, e.g. http://10.0.0.4:8101")
    .option("--json", 'print {"members":[…]} as GET /v1/members answers it');
  addClusterOptions(add, CHANGE_TIMEOUT_MS_DEFAULT).addHelpText(
    "after",
    `
Then start the new node with an empty data directory and --join <url of any member>,
and promote it once it has caught up (baton member promote <id>).
Exit codes: 0 added, 1 refused (nothing changed), 2 bad usage, 3 no master reachable,
4 token refused.

Example:
  baton member add 4 --peer-address 10.0.0.4:7101 --http-url http://10.0.0.4:8101`,
  );
  add.action(async (idText: string, options: AddOptions) => {
    const id = memberIdOf(idText);
    if (id === null) {
      io.exitCode = notAnId(io, "add", idText);
      return;
    }
    io.exitCode = await withClient(io, options, CHANGE_TIMEOUT_MS_DEFAULT, async (client) => {
      const members = await asGiven(
        client.addMember({ id, peerAddress: options.peerAddress, httpUrl: options.httpUrl }),
        addFields(idText, options.peerAddress, options.httpUrl),
      );
      if (options.json !== true) {
        io.stdout.write(
          `node ${id} added as a learner; start it with: ${startCommand(id, options.peerAddress, options.httpUrl)}\n`,
        );
      }
      printMembers(io, members, options.json);
      return ExitCode.ok;
    });
  });

  const simple = (
    name: string,
    description: string,
    after: string,
    run: (client: BatonClient, id: number) => Promise<Member[]>,
    done: (id: number) => string,
  ): void => {
    const command = member
      .command(`${name} <id>`)
      .description(description)
      .option("--json", 'print {"members":[…]} as GET /v1/members answers it');
    addClusterOptions(command, CHANGE_TIMEOUT_MS_DEFAULT).addHelpText("after", after);
    command.action(async (idText: string, options: JsonOption) => {
      const id = memberIdOf(idText);
      if (id === null) {
        io.exitCode = notAnId(io, name, idText);
        return;
      }
      io.exitCode = await withClient(io, options, CHANGE_TIMEOUT_MS_DEFAULT, async (client) => {
        const members = await asGiven(run(client, id), ID_FIELDS);
        if (options.json !== true) io.stdout.write(`${done(id)}\n`);
        printMembers(io, members, options.json);
        return ExitCode.ok;
      });
    });
  };
  simple(
    "promote",
    "make a learner that has caught up a voter",
    `
Exit codes: 0 promoted, 1 refused (not caught up, or not a learner; nothing changed),
2 bad usage, 3 no master reachable, 4 token refused.`,
    (client, id) => client.promoteMember(id),
    (id) => `node ${id} is a voter`,
  );
  simple(
    "remove",
    "remove a member (the removed node stops by itself once it learns of it)",
    `
The master cannot remove itself (baton switchover first), nor a member whose removal
leaves fewer live voters than a majority.
Exit codes: 0 removed, 1 refused (nothing changed), 2 bad usage, 3 no master reachable,
4 token refused.`,
    (client, id) => client.removeMember(id),
    (id) => `node ${id} removed`,
  );

  const replace = member
    .command("replace <id>")
    .description(
      "bring back a member whose data directory was lost: remove it, add it back as a learner",
    )
    .option("--peer-address <host:port>", "its --listen address (default: as now)")
    .option("--http-url <url>", "its HTTP API (default: as now)")
    .option("--json", 'print {"members":[…]} as GET /v1/members answers it');
  addClusterOptions(replace, CHANGE_TIMEOUT_MS_DEFAULT).addHelpText(
    "after",
    `
Then start the node with an empty data directory and --join <url of a member>, and
promote it once it has caught up (baton member promote <id>). Its new data directory
has a new incarnation: nothing its old one sent is counted for it.
Exit codes: 0 done, 1 refused (nothing changed by the refused step), 2 bad usage,
3 no master reachable, 4 token refused.`,
  );
  replace.action(async (idText: string, options: Partial<AddOptions> & JsonOption) => {
    const usage = (message: string): void => {
      io.stderr.write(`baton member replace: ${message}\n`);
      io.exitCode = ExitCode.usage;
    };
    if (memberIdOf(idText) === null) {
      io.exitCode = notAnId(io, "replace", idText);
      return;
    }
    // Checked here, before the removal: a refused add after it would leave the node out.
    if (options.peerAddress !== undefined) {
      const parsed = parseAddress(options.peerAddress);
      if (!parsed.ok) {
        return usage(
          `--peer-address ${options.peerAddress}: give host:port, as its --listen (${parsed.reason})`,
        );
      }
    }
    if (options.httpUrl !== undefined && !/^https?:\/\/[\x21-\x7e]{1,240}$/.test(options.httpUrl)) {
      return usage(`--http-url ${options.httpUrl}: give http://host:port or https://host:port`);
    }
    io.exitCode = await withClient(io, options, CHANGE_TIMEOUT_MS_DEFAULT, async (client) => {
      const id = Number(idText);
      const before = (await client.members()).find((m) => m.id === id);
      const peerAddress = options.peerAddress ?? before?.peerAddress;
      const httpUrl = options.httpUrl ?? before?.httpUrl ?? undefined;
      if (peerAddress === undefined || httpUrl === undefined) {
        io.stderr.write(
          before === undefined
            ? `baton member replace: node ${id} is not a member; give --peer-address and --http-url to add it\n`
            : `baton member replace: node ${id}'s ${peerAddress === undefined ? "peer address" : "HTTP URL"} is not known (nothing has heard from it since the master started); give --${peerAddress === undefined ? "peer-address" : "http-url"}\n`,
        );
        return ExitCode.usage;
      }
      if (before !== undefined) await asGiven(client.removeMember(id), ID_FIELDS);
      let members: Awaited<ReturnType<typeof client.addMember>>;
      try {
        members = await asGiven(
          client.addMember({ id, peerAddress, httpUrl }),
          addFields(idText, options.peerAddress, options.httpUrl),
        );
      } catch (error) {
        if (before === undefined) throw error;
        io.stderr.write(
          `baton member replace: node ${id} was removed but not added back (${(error as Error).message}); add it with: baton member add ${id} --peer-address ${peerAddress} --http-url ${httpUrl}\n`,
        );
        return ExitCode.failed;
      }
      if (options.json !== true) {
        const done =
          before === undefined
            ? "was not a member, so nothing was removed; added it as a learner"
            : "removed and added back as a learner";
        io.stdout.write(
          `node ${id} ${done}; start it with an empty data directory: ${startCommand(id, peerAddress, httpUrl)}; then: baton member promote ${id}\n`,
        );
      }
      printMembers(io, members, options.json);
      return ExitCode.ok;
    });
  });
}

/**
 * `baton member wait <id>`: until the master sees the member connected and at most `--lag`
 * entries behind its log, judged by the master (the member need not be reachable from
 * here). For a rolling restart (the next node only once the last one has caught up) and
 * before `member promote`.
 */
function registerWait(member: Command, io: CliIo): void {
  const command = member
    .command("wait <id>")
    .description("wait until a member is connected to the master and has caught up")
    .option(
      "--lag <n>",
      "caught up: at most n entries behind the master's log (64, as promote asks)",
      integerArgument(0),
      WAIT_LAG_DEFAULT,
    )
    .option("--quiet", "print nothing while waiting");
  addClusterOptions(command, WAIT_TIMEOUT_MS_DEFAULT).addHelpText(
    "after",
    `
The master judges: the member must be connected to it, and hold its log up to at most
--lag entries from the end. The master itself has caught up by definition. While it
waits, a line on stderr says how far behind the member is, when that changes.
Exit codes: 0 caught up, 1 not a member of the cluster, 2 bad usage, 3 not caught up
within --timeout (or no master), or at once when no node's certificate is trusted,
4 token refused.

Examples:
  systemctl restart baton && baton member wait 2     rolling restart: one node at a time
  baton member wait 4 && baton member promote 4
  baton member wait 3 --lag 0 --timeout 60000      everything, on an idle cluster`,
  );
  command.action(async (idText: string, options: WaitOptions) => {
    const id = memberIdOf(idText);
    if (id === null) {
      io.exitCode = notAnId(io, "wait", idText);
      return;
    }
    const timeoutMs = options.timeout ?? WAIT_TIMEOUT_MS_DEFAULT;
    io.exitCode = await withClient(io, options, WAIT_TIMEOUT_MS_DEFAULT, async (client) => {
      const deadline = Date.now() + timeoutMs;
      let said = "";
      const say = (line: string): void => {
        if (options.quiet === true || line === said) return;
        said = line;
        io.stderr.write(`${line}\n`);
      };
      // Whether the last poll also met a failure that waiting cannot fix (see below).
      let refusedBefore = false;
      for (;;) {
        const seen = await masterView(client, id);
        if (seen.kind === "no-answer" && seen.hint !== null) {
          // An untrusted certificate, or HTTPS met with http://, stays so however long this
          // waits: say so at once rather than "no master" after --timeout. Twice in a row,
          // because a node killed while it answers closes the connection once too.
          if (refusedBefore) {
            io.stderr.write(
              `baton member wait: no node answered at ${seen.endpoints.join(", ")}: ${seen.hint}\n`,
            );
            return ExitCode.unavailable;
          }
          refusedBefore = true;
          await new Promise((resolve) => setTimeout(resolve, WAIT_POLL_MS));
          continue;
        }
        refusedBefore = false;
        if (seen.kind === "caught-up" || (seen.kind === "behind" && seen.lag <= options.lag)) {
          const how = seen.kind === "caught-up" ? "it is the master" : `${seen.lag} behind`;
          io.stdout.write(
            `node ${id} has caught up (${how}, master node ${seen.master}, term ${seen.term})\n`,
          );
          return ExitCode.ok;
        }
        if (seen.kind === "not-member") {
          io.stderr.write(
            `baton member wait: node ${id} is not a member of the cluster (master node ${seen.master} lists ${seen.members.join(", ")}): baton member add ${id} first\n`,
          );
          return ExitCode.failed;
        }
        // Nothing listening may be a node still starting: wait, but say why.
        const state =
          seen.kind === "no-answer"
            ? `no node answered at ${seen.endpoints.join(", ")}: ${START_HINT}`
            : seen.kind === "no-master"
              ? "no master reachable yet"
              : seen.kind === "disconnected"
                ? `not connected to the master (node ${seen.master})`
                : `${seen.lag} entries behind the master (node ${seen.master})`;
        if (Date.now() + WAIT_POLL_MS > deadline) {
          io.stderr.write(
            `baton member wait: node ${id} has not caught up within ${timeoutMs} ms: ${state}\n`,
          );
          return ExitCode.unavailable;
        }
        say(`node ${id}: ${state}`);
        await new Promise((resolve) => setTimeout(resolve, WAIT_POLL_MS));
      }
    });
  });
}

type MasterView =
  | {
      readonly kind: "no-answer";
      readonly endpoints: readonly string[];
      /** What to do when no node answered for a reason waiting cannot fix, else null. */
      readonly hint: string | null;
    }
  | { readonly kind: "no-master" }
  | { readonly kind: "not-member"; readonly master: number; readonly members: number[] }
  | { readonly kind: "caught-up"; readonly master: number; readonly term: number }
  | { readonly kind: "disconnected"; readonly master: number; readonly term: number }
  | {
      readonly kind: "behind";
      readonly master: number;
      readonly term: number;
      readonly lag: number;
    };

/** What the master (of the highest term among the nodes reached) says of member `id`. */
async function masterView(client: BatonClient, id: number): Promise<MasterView> {
  const answers = await collectStatuses(client);
  let master: NodeStatus | null = null;
  for (const { status } of answers) {
    if (status?.role === "master" && (master === null || status.term > master.term)) {
      master = status;
    }
  }
  if (master === null) {
    // A token no node accepts is not a cluster without a master: say so at once (exit 4)
    // rather than wait out --timeout for a master that is there.
    const refused = answers.find(
      (a) => a.code === "ERR_UNAUTHENTICATED" || a.code === "ERR_FORBIDDEN",
    );
    if (refused !== undefined && answers.every((a) => a.status === undefined)) {
      const message = refused.error ?? "the token was refused";
      throw refused.code === "ERR_FORBIDDEN"
        ? new ForbiddenError(message)
        : new UnauthenticatedError(message);
    }
    if (answers.every((a) => a.status === undefined)) {
      const hints = answers.map((a) => connectionHint(a.error, [a.endpoint]));
      return {
        kind: "no-answer",
        endpoints: answers.map((a) => a.endpoint),
        hint: hints.find((hint) => hint !== null) ?? null,
      };
    }
    return { kind: "no-master" };
  }
  const where = { master: master.id, term: master.term };
  if (master.id === id) return { kind: "caught-up", ...where };
  const listed = master.members.find((m) => m.id === id);
  if (listed === undefined) {
    return { kind: "not-member", master: master.id, members: master.members.map((m) => m.id) };
  }
  if (!listed.connected || listed.lag === null) return { kind: "disconnected", ...where };
  return { kind: "behind", ...where, lag: listed.lag };
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
changed), 2 bad usage, 3 no master reachable or no new master in time, 4 token refused.

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
        const outcome = await asGiven(client.switchover(options.to), SWITCHOVER_FIELDS);
        if (options.json === true) io.stdout.write(`${JSON.stringify(outcome)}\n`);
        else io.stdout.write(`node ${outcome.master} is the master of term ${outcome.term}\n`);
        return ExitCode.ok;
      },
      SWITCHOVER_ATTEMPT_MS_MAX,
    );
  });
}

/** Where `baton member list` shows the ids a refused change or switchover may use. */
const LISTED = "(`baton member list` shows them)";

/**
 * The fields of `POST /v1/members` as `member add` (and `member replace`) takes them. The
 * CLI sends well-formed JSON with a checked id, so a fault the node finds with the body as
 * a whole is a refusal of the member it names: one already there, or one too many.
 */
function addFields(
  id: string,
  peerAddress: string | undefined,
  httpUrl: string | undefined,
): Record<string, GivenField> {
  return {
    id: { given: "the ID argument", value: id },
    peerAddress: {
      given: "--peer-address",
      ...(peerAddress === undefined ? {} : { value: peerAddress }),
    },
    httpUrl: { given: "--http-url", ...(httpUrl === undefined ? {} : { value: httpUrl }) },
    body: { given: "the member", refused: "`baton member list` shows the members" },
  };
}

/** A promote or a removal names its member in the path: the id checked here, so well formed. */
const ID_FIELDS: Record<string, GivenField> = {
  id: { given: "the ID argument", refused: `give a member's id as the ID argument ${LISTED}` },
};

/** `--to` is checked by commander as an id: the node can only find it names no member. */
const SWITCHOVER_FIELDS: Record<string, GivenField> = {
  to: { given: "--to", refused: `give --to a member's id ${LISTED}` },
};

/** `call`'s outcome, with a refusal of a field said in the terms of the command line. */
async function asGiven<T>(call: Promise<T>, fields: Record<string, GivenField>): Promise<T> {
  try {
    return await call;
  } catch (error) {
    throw inCommandTerms(error, fields);
  }
}

/**
 * A member id as written on the command line: digits only, 1 to 4294967295. `Number` alone
 * took `0x2` for node 2 and `1e0` for node 1.
 */
function memberIdOf(text: string): number | null {
  if (!/^[1-9][0-9]{0,9}$/.test(text)) return null;
  const id = Number(text);
  return id <= 0xffff_ffff ? id : null;
}

function notAnId(io: CliIo, command: string, text: string): number {
  io.stderr.write(
    `baton member ${command}: ${JSON.stringify(text)} is not a member id (a whole number from 1 to 4294967295)\n`,
  );
  return ExitCode.usage;
}

/**
 * The `baton start` of a member just added: on a secure cluster (an https:// URL) with the
 * certificate and token settings every member needs, which the join itself uses too.
 */
function startCommand(id: number, peerAddress: string, httpUrl: string): string {
  const command = `baton start --id ${id} --listen ${peerAddress} --http ${httpUrl.replace(/^https?:\/\//, "")} --data <empty dir>`;
  if (!httpUrl.startsWith("https://")) return `${command} --join <url of a member>`;
  return `${command} --tls-ca <ca.crt> --tls-cert <node.crt> --tls-key <node.key> --http-tls-cert <node.crt> --http-tls-key <node.key> --tokens <tokens.json> --join <https url of a member> --token-file <admin token>`;
}
