/**
 * `baton status`: asks every node for its status and shows the cluster at a glance (one row
 * per node: id, endpoint, role, term, the master it follows, commit and applied indexes,
 * and how far it lags the master), a one-line verdict, and an exit code a script can test.
 * It owns judging health from what the nodes say; it never changes the cluster.
 *
 * Nodes the user did not list but that a node names among its members are asked too, so
 * one endpoint is enough to see the whole cluster.
 */

import type { Command } from "commander";
import { endpointError } from "../../client/client.js";
import {
  type BatonClient,
  type EndpointStatus,
  type NodeStatus,
  normalizeEndpoint,
} from "../../client/index.js";
import { type CliIo, colourEnabled, processIo } from "./cli-io.js";
import {
  addClusterOptions,
  type ClusterOptions,
  clientFrom,
  integerArgument,
  TIMER_MS_MAX,
} from "./cluster-options.js";
import { connectionHint, ExitCode, reportError } from "./exit-code.js";

/** How long to wait for each node's status unless --timeout says. */
const STATUS_TIMEOUT_MS_DEFAULT = 2000;
/** The refresh interval of --watch without a value. */
const WATCH_INTERVAL_MS_DEFAULT = 1000;

interface StatusOptions extends ClusterOptions {
  readonly json?: boolean;
  readonly watch?: number | true;
  readonly count?: number;
}

export type Verdict = "healthy" | "degraded" | "no-master" | "unreachable" | "denied";

export interface NodeRow {
  readonly endpoint: string;
  /** The node's id: from its status, else from a member list that names its URL. */
  readonly id: number | null;
  readonly status: NodeStatus | null;
  readonly error: string | null;
  /** Entries the master has committed that this node has not applied yet, else null. */
  readonly lag: number | null;
  /** Something the reader should know about this node, else null. */
  readonly note: string | null;
}

export interface ClusterSummary {
  readonly verdict: Verdict;
  /** One line that says what the verdict means and, when unhealthy, what to do. */
  readonly headline: string;
  readonly master: { readonly id: number; readonly endpoint: string; readonly term: number } | null;
  readonly nodes: readonly NodeRow[];
}

/** Adds `status` to `program`; it sets `io.exitCode`. */
export function register(program: Command, io: CliIo = processIo()): void {
  const command = program
    .command("status")
    .description(
      "show every node's role, term, indexes and lag, and whether the cluster is healthy",
    )
    .option("--json", "print the status as JSON (one object per refresh with --watch)")
    .option(
      "--watch [ms]",
      `refresh every ms milliseconds (default: ${WATCH_INTERVAL_MS_DEFAULT})`,
      integerArgument(50, TIMER_MS_MAX),
    )
    .option("--count <n>", "with --watch: stop after n refreshes", integerArgument(1));
  addClusterOptions(command, STATUS_TIMEOUT_MS_DEFAULT).addHelpText(
    "after",
    `
LAG is how many entries the master has committed that the node has not applied yet.
Exit codes: 0 healthy (a master, every node reachable), 1 degraded or no master,
2 bad usage, 3 no node reachable, 4 token refused.

Examples:
  baton status
  baton status --endpoints 127.0.0.1:8101        # the other members are found from it
  baton status --json | jq '.master'
  baton status --watch 500                        # refresh twice a second; Ctrl-C stops`,
  );
  command.action(async (options: StatusOptions) => {
    if (options.count !== undefined && options.watch === undefined) {
      io.stderr.write("baton status: --count counts the refreshes of --watch: give --watch too\n");
      io.exitCode = ExitCode.usage;
      return;
    }
    let client: BatonClient;
    try {
      // Each node is asked once, so the whole --timeout is each node's to answer in.
      const timeoutMs = options.timeout ?? STATUS_TIMEOUT_MS_DEFAULT;
      client = clientFrom(options, io, timeoutMs, timeoutMs);
    } catch (error) {
      io.exitCode = reportError(io, error);
      return;
    }
    try {
      io.exitCode = await showStatus(client, options, io);
    } finally {
      await client.close();
    }
  });
}

/** Shows the status once, or every interval with --watch; returns the last exit code. */
async function showStatus(client: BatonClient, options: StatusOptions, io: CliIo): Promise<number> {
  const watching = options.watch !== undefined;
  const intervalMs =
    options.watch === true || options.watch === undefined
      ? WATCH_INTERVAL_MS_DEFAULT
      : options.watch;
  // Without --count a watch runs until interrupted: it is a display, not a retry loop.
  const refreshes = watching ? (options.count ?? Number.POSITIVE_INFINITY) : 1;
  const colour = colourEnabled(io);
  let code: number = ExitCode.ok;
  for (let i = 0; i < refreshes; i++) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, intervalMs));
    const summary = summarizeCluster(await collectStatuses(client));
    code = exitCodeOf(summary.verdict);
    if (options.json === true) {
      io.stdout.write(`${JSON.stringify(statusJson(summary))}\n`);
      continue;
    }
    // On a terminal a watch redraws in place; into a file or pipe it appends.
    if (watching && io.stdout.isTTY === true) io.stdout.write("\x1b[H\x1b[2J");
    io.stdout.write(renderStatusTable(summary, colour));
    if (watching) io.stdout.write(`\n${new Date().toISOString()}, every ${intervalMs} ms\n`);
  }
  return code;
}

/**
 * Every configured node's status, then those of members named by a node but not listed
 * (one extra round, so a cluster cannot make this loop).
 */
export async function collectStatuses(client: BatonClient): Promise<EndpointStatus[]> {
  const listed = await client.clusterStatus();
  const seen = new Set(listed.map((row) => row.endpoint));
  // A member that answered under the name it was given is not asked again under the URL
  // it advertises (`localhost` for `127.0.0.1`, a DNS name for an IP): it showed twice,
  // and as down when that URL cannot be reached from here (a tunnel, NAT).
  const answered = new Set(listed.flatMap((row) => (row.status ? [row.status.id] : [])));
  const named = new Set<string>();
  for (const row of listed) {
    for (const member of row.status?.members ?? []) {
      if (answered.has(member.id)) continue;
      const url = member.httpUrl === null ? null : tryNormalize(member.httpUrl);
      if (url !== null && !seen.has(url)) named.add(url);
    }
  }
  const extra = await Promise.all(
    [...named].map(async (endpoint): Promise<EndpointStatus> => {
      try {
        return { endpoint, status: await client.status(endpoint) };
      } catch (error) {
        return endpointError(endpoint, error);
      }
    }),
  );
  return [...listed, ...extra];
}

function tryNormalize(url: string): string | null {
  try {
    return normalizeEndpoint(url);
  } catch {
    return null;
  }
}

/**
 * Judges the cluster from its nodes' answers. The master is the node that says it is
 * master in the highest term; a node that still says so in a lower term is a stale master
 * (cut off, about to step down) and is flagged, not believed.
 */
export function summarizeCluster(answers: readonly EndpointStatus[]): ClusterSummary {
  const reachable = answers.filter((a) => a.status !== undefined);
  let master: EndpointStatus | null = null;
  for (const a of reachable) {
    if (
      a.status?.role === "master" &&
      (master === null || a.status.term > (master.status?.term ?? -1))
    ) {
      master = a;
    }
  }
  const masterStatus = master?.status ?? null;
  const idByUrl = new Map<string, number>();
  for (const a of reachable) {
    for (const m of a.status?.members ?? []) {
      const url = m.httpUrl === null ? null : tryNormalize(m.httpUrl);
      if (url !== null) idByUrl.set(url, m.id);
    }
  }
  const nodes = answers.map((a): NodeRow => nodeRow(a, masterStatus, idByUrl));
  const unheard = nodes.filter(
    (n) => n.status !== null && masterStatus !== null && unheardBy(masterStatus, n.status) !== null,
  );
  const masterSummary =
    master === null || masterStatus === null
      ? null
      : { id: masterStatus.id, endpoint: master.endpoint, term: masterStatus.term };
  const refused = answers.filter(
    (a) => a.code === "ERR_UNAUTHENTICATED" || a.code === "ERR_FORBIDDEN",
  );
  const verdict: Verdict =
    reachable.length === 0
      ? refused.length > 0
        ? "denied"
        : "unreachable"
      : masterSummary === null
        ? "no-master"
        : reachable.length === answers.length && unheard.length === 0
          ? "healthy"
          : "degraded";
  return {
    verdict,
    headline: headline(verdict, masterSummary, answers, unheard),
    master: masterSummary,
    nodes,
  };
}

function nodeRow(
  answer: EndpointStatus,
  master: NodeStatus | null,
  idByUrl: Map<string, number>,
): NodeRow {
  const status = answer.status ?? null;
  if (status === null) {
    return {
      endpoint: answer.endpoint,
      id: idByUrl.get(answer.endpoint) ?? null,
      status: null,
      error: answer.error ?? "no answer",
      lag: null,
      note: answer.error ?? "no answer",
    };
  }
  let note: string | null = null;
  const unheard = master === null ? null : unheardBy(master, status);
  if (unheard !== null) note = unheard;
  else if (master !== null && status.role === "master" && status.id !== master.id) {
    note = `stale master (term ${status.term} < ${master.term})`;
  } else if (status.role === "candidate") note = "election under way";
  else if (status.master === null) note = "knows no master";
  const lag = master === null ? null : Math.max(0, master.commitIndex - status.appliedIndex);
  return { endpoint: answer.endpoint, id: status.id, status, error: null, lag, note };
}

/**
 * Why `master` does not count `node`'s votes and acknowledgements, or null when it does: a
 * master listing another incarnation of the node (its data directory was wiped or replaced
 * and it came back under the same id), or not listing it at all (removed, or never added).
 * Such a node can look like a healthy backup from its own side while the master drops
 * everything it says.
 */
function unheardBy(master: NodeStatus, node: NodeStatus): string | null {
  if (node.id === master.id || master.members.length === 0) return null;
  const listed = master.members.find((m) => m.id === node.id);
  if (listed === undefined) {
    return `not a member in master ${master.id}'s configuration: stop it, or add it (baton member add ${node.id})`;
  }
  const own = node.incarnation;
  const named = listed.incarnation ?? 0;
  if (named !== 0 && own !== undefined && own !== named) {
    return `master ${master.id} lists incarnation ${named}, this node is ${own}: its votes and acknowledgements are dropped; bring it back with baton member replace ${node.id}, then --join`;
  }
  return null;
}

function headline(
  verdict: Verdict,
  master: ClusterSummary["master"],
  answers: readonly EndpointStatus[],
  unheard: readonly NodeRow[],
): string {
  const reachable = answers.filter((a) => a.status !== undefined).length;
  const of = `${reachable} of ${answers.length} nodes reachable`;
  switch (verdict) {
    case "healthy":
      return `healthy: node ${master?.id} is master in term ${master?.term}; ${of}`;
    case "degraded": {
      const down = answers.filter((a) => a.status === undefined).map((a) => a.endpoint);
      let text = `degraded: node ${master?.id} is master in term ${master?.term}; ${of}`;
      if (down.length > 0) text += ` (down: ${down.join(", ")}); restart the missing nodes`;
      if (unheard.length > 0) {
        const ids = unheard.map((n) => n.id).join(", ");
        text += `; the master does not count node${unheard.length > 1 ? "s" : ""} ${ids} (see NOTE)`;
      }
      return text;
    }
    case "no-master":
      return `no master: ${of}, none is master; an election may be under way, or too few nodes are up to elect one`;
    case "unreachable": {
      // A certificate not trusted (no --ca) is not a cluster that is down: say what to give.
      const hint =
        answers.map((a) => connectionHint(a.error, [a.endpoint])).find((h) => h !== null) ??
        "is the cluster running? start one with `baton demo`";
      return `unreachable: no node answered at ${answers.map((a) => a.endpoint).join(", ")}; ${hint}`;
    }
    case "denied": {
      // The node's own words say which token and role (as for any other refused command).
      const refusal =
        answers.find((a) => a.code === "ERR_UNAUTHENTICATED" || a.code === "ERR_FORBIDDEN")
          ?.error ?? "the token was refused";
      return `denied: ${refusal}`;
    }
  }
}

function exitCodeOf(verdict: Verdict): number {
  if (verdict === "healthy") return ExitCode.ok;
  if (verdict === "denied") return ExitCode.denied;
  return verdict === "unreachable" ? ExitCode.unavailable : ExitCode.failed;
}

/** The machine-readable form: the verdict, the master, and each node's full status. */
export function statusJson(summary: ClusterSummary): unknown {
  return {
    verdict: summary.verdict,
    healthy: summary.verdict === "healthy",
    headline: summary.headline,
    master: summary.master,
    nodes: summary.nodes.map((n) => ({
      endpoint: n.endpoint,
      id: n.id,
      reachable: n.status !== null,
      lag: n.lag,
      note: n.note,
      ...(n.status === null ? { error: n.error } : { status: n.status }),
    })),
  };
}

const COLUMNS = ["ID", "ENDPOINT", "ROLE", "TERM", "MASTER", "COMMIT", "APPLIED", "LAG", "NOTE"];
/** Columns whose numbers align right. */
const NUMERIC = new Set(["ID", "TERM", "MASTER", "COMMIT", "APPLIED", "LAG"]);

const ANSI = { bold: "1", dim: "2", red: "31", green: "32", yellow: "33", cyan: "36" } as const;

function paint(text: string, colour: boolean, ...styles: (keyof typeof ANSI)[]): string {
  if (!colour || styles.length === 0) return text;
  return `\x1b[${styles.map((s) => ANSI[s]).join(";")}m${text}\x1b[0m`;
}

/** The table and the verdict line, coloured only when `colour` (a terminal, no NO_COLOR). */
export function renderStatusTable(summary: ClusterSummary, colour: boolean): string {
  const rows = summary.nodes.map(rowCells);
  const widths = COLUMNS.map((name, i) =>
    Math.max(name.length, ...rows.map((r) => r[i]?.text.length ?? 0)),
  );
  const line = (cells: readonly Cell[]): string =>
    cells
      .map((cell, i) => {
        const width = widths[i] ?? 0;
        const padded = NUMERIC.has(COLUMNS[i] ?? "")
          ? cell.text.padStart(width)
          : cell.text.padEnd(width);
        return paint(padded, colour, ...cell.styles);
      })
      .join("  ")
      .trimEnd();
  const header = line(COLUMNS.map((text) => ({ text, styles: ["bold"] })));
  const verdictStyles: (keyof typeof ANSI)[] =
    summary.verdict === "healthy"
      ? ["green"]
      : summary.verdict === "degraded"
        ? ["yellow"]
        : ["red", "bold"];
  return `${[header, ...rows.map(line)].join("\n")}\n\n${paint(summary.headline, colour, ...verdictStyles)}\n`;
}

interface Cell {
  readonly text: string;
  readonly styles: (keyof typeof ANSI)[];
}

function rowCells(row: NodeRow): Cell[] {
  const plain = (text: string | number | null): Cell => ({
    text: text === null ? "-" : String(text),
    styles: [],
  });
  const s = row.status;
  if (s === null) {
    return [
      plain(row.id),
      plain(row.endpoint),
      { text: "unreachable", styles: ["red", "bold"] },
      ...["-", "-", "-", "-", "-"].map(plain),
      { text: row.note ?? "", styles: ["red"] },
    ];
  }
  const roleStyles: (keyof typeof ANSI)[] =
    row.note?.startsWith("stale") === true
      ? ["red"]
      : s.role === "master"
        ? ["green", "bold"]
        : s.role === "candidate"
          ? ["yellow"]
          : ["cyan"];
  const lagStyles: (keyof typeof ANSI)[] =
    row.lag === null || row.lag === 0 ? [] : row.lag > 100 ? ["red"] : ["yellow"];
  return [
    plain(s.id),
    plain(row.endpoint),
    { text: s.role, styles: roleStyles },
    plain(s.term),
    plain(s.master),
    plain(s.commitIndex),
    plain(s.appliedIndex),
    { text: row.lag === null ? "-" : String(row.lag), styles: lagStyles },
    { text: row.note ?? "", styles: row.note === null ? [] : ["dim"] },
  ];
}
