/**
 * The verdicts of a fault campaign, computed from what the clients saw and what the nodes
 * answered after healing. It owns the five questions of the campaign and answers each from
 * the record alone, never from a node's own opinion of itself:
 *
 * (a) linearizable: the whole history, per key, with the project's checker
 *     (src/sim/checkers/linearizability.ts), indeterminate operations completing at +inf;
 * (b) no lost write: the final state of every key accounts for its last acknowledged write;
 * (c) exactly once: no value (each written by one operation only) seen at two revisions;
 * (d) convergence: every node at the same applied index holds the same state digest;
 * (e) liveness: after healing, every node served a write again within the bound.
 * Plus one the issue implies: no node process exited unless the campaign killed it.
 */

import { checkLinearizable, type HistoryOp, type KvOp } from "../sim/checkers/linearizability.js";
import type { UnexpectedExit } from "./processes.js";
import type { OpRecord } from "./workload.js";

export interface Verdict {
  readonly ok: boolean;
  readonly detail: string;
  readonly problems?: readonly string[];
}

export interface Verdicts {
  readonly linearizable: Verdict;
  readonly noLostWrites: Verdict;
  readonly exactlyOnce: Verdict;
  readonly converged: Verdict;
  readonly live: Verdict;
  readonly noCrashes: Verdict;
  /** (f): a watch of every key saw each change once, in revision order (watch-check.ts). */
  readonly watched: Verdict;
  /** (g): transfers over several keys are atomic and range reads see one revision (bank.ts). */
  readonly atomic: Verdict;
  /** (h): no lease ends before its TTL, and every one ends (leases.ts). */
  readonly leases: Verdict;
  /** (i): every member replace finished and every replaced node was promoted (members.ts). */
  readonly membership: Verdict;
  /** (j): the faults asked for ran, or the report says why not (nemesis.ts). */
  readonly faults: Verdict;
  /** (k): no request was answered with an internal error or as wrong, and no node logged an error. */
  readonly noErrors: Verdict;
}

const PROBLEMS_SHOWN = 20;

/** The writes (puts, compare-and-sets, deletes) attempted, and those confirmed as applied. */
export function countWrites(history: readonly OpRecord[]): {
  attempted: number;
  confirmed: number;
} {
  let attempted = 0;
  let confirmed = 0;
  for (const op of history) {
    if (op.kind === "read") continue;
    attempted++;
    if (isConfirmed(op)) confirmed++;
  }
  return { attempted, confirmed };
}

/** A write answered as applied: not a compare-and-set refused, nor a delete of nothing. */
function isConfirmed(op: OpRecord): boolean {
  return op.kind !== "read" && op.outcome === "ok" && op.output !== false;
}

/**
 * Writes were attempted and none was confirmed: a history of reads of nothing, which every
 * check passes however wrong the cluster. Null when some write was confirmed, or none tried.
 */
export function noWriteConfirmed(history: readonly OpRecord[]): string | null {
  const { attempted, confirmed } = countWrites(history);
  if (attempted === 0 || confirmed > 0) return null;
  return `none of the ${attempted} writes attempted was confirmed`;
}

/** (a): converts the history and runs the checker, one register per key. */
export function checkHistory(history: readonly OpRecord[]): Verdict {
  const ops: HistoryOp[] = [];
  for (const op of history) {
    const entry = toHistoryOp(op);
    if (entry !== null) ops.push(entry);
  }
  const result = checkLinearizable(ops, { maxStatesPerKey: 2_000_000 });
  const bad = result.keys.filter((k) => !k.ok);
  const timedOut = result.keys.filter((k) => k.timedOut === true);
  const checked = result.keys.reduce((sum, k) => sum + k.opCount, 0);
  const { confirmed } = countWrites(history);
  const detail =
    `${result.keys.length} keys, ${checked} operations checked, ${confirmed} confirmed writes` +
    (timedOut.length > 0 ? `, ${timedOut.length} keys undecided (search bound)` : "");
  const nothing = noWriteConfirmed(history);
  const problems = [
    ...(nothing === null ? [] : [`${nothing}: nothing was checked`]),
    ...bad.map((k) => `${k.key}: ${k.explanation ?? "not linearizable"}`),
  ];
  if (problems.length === 0) return { ok: true, detail };
  const failures = [
    ...(nothing === null ? [] : [nothing]),
    ...(bad.length > 0 ? [`${bad.length} keys not linearizable`] : []),
  ];
  return {
    ok: false,
    detail: `${detail}; ${failures.join("; ")}`,
    problems: problems.slice(0, PROBLEMS_SHOWN),
  };
}

function toHistoryOp(op: OpRecord): HistoryOp | null {
  if (op.completedAt === null && op.outcome !== "indeterminate") return null;
  const outcome = op.outcome === "ok" ? "ok" : op.outcome === "failed" ? "fail" : "info";
  let kvOp: KvOp;
  switch (op.kind) {
    case "read":
      kvOp = { kind: "read" };
      break;
    case "write":
      kvOp = { kind: "write", value: op.value! };
      break;
    case "cas":
      kvOp = { kind: "cas", expected: op.expected ?? null, value: op.value! };
      break;
    case "delete":
      kvOp = { kind: "delete" };
      break;
  }
  const entry: HistoryOp = {
    id: op.id,
    client: op.client,
    key: op.key,
    op: kvOp,
    invokedAt: op.invokedAt,
    completedAt: op.completedAt,
    outcome,
  };
  if (outcome === "ok" && op.kind !== "write") entry.output = op.output ?? null;
  if (outcome === "ok" && op.kind === "delete" && op.output === undefined) delete entry.output;
  return entry;
}

/**
 * (b): for every key, the last acknowledged write (by revision) must be what the final
 * read shows, or be followed by a later one the final read shows (acknowledged or not, but
 * then one the clients really issued).
 */
export function checkNoLostWrites(history: readonly OpRecord[]): Verdict {
  const finals = new Map<string, OpRecord>();
  for (const op of history) if (op.final === true && op.outcome === "ok") finals.set(op.key, op);
  const issued = new Map<string, OpRecord>();
  const lastAck = new Map<string, OpRecord>();
  let acknowledged = 0;
  for (const op of history) {
    if (op.kind === "read") continue;
    if (op.value !== undefined) issued.set(op.value, op);
    if (!isConfirmed(op)) continue;
    acknowledged++;
    const last = lastAck.get(op.key);
    if (last === undefined || (op.revision ?? 0) > (last.revision ?? 0)) lastAck.set(op.key, op);
  }
  const problems: string[] = [];
  const nothing = noWriteConfirmed(history);
  if (nothing !== null) problems.push(`${nothing}: nothing was checked`);
  for (const [key, last] of lastAck) {
    const final = finals.get(key);
    if (final === undefined) {
      problems.push(`${key}: no final read succeeded`);
      continue;
    }
    const value = final.output as string | null;
    const lastValue = last.kind === "delete" ? null : last.value!;
    if (value === null) {
      if (lastValue === null) continue;
      // Only a delete that may have come after the acknowledged write excuses its absence:
      // one whose outcome is unknown (a forwarded request can still be applied long after
      // its client gave up), or one acknowledged as deleting at a later revision.
      const laterDelete = history.some(
        (op) =>
          op.key === key &&
          op.kind === "delete" &&
          (op.outcome === "indeterminate" ||
            (op.outcome === "ok" &&
              op.output === true &&
              (op.revision ?? 0) > (last.revision ?? 0))),
      );
      if (!laterDelete) problems.push(`${key}: absent, but ${describe(last)} was acknowledged`);
      continue;
    }
    const finalRevision = final.revision ?? 0;
    if (finalRevision < (last.revision ?? 0)) {
      problems.push(`${key}: final revision ${finalRevision} < acknowledged ${describe(last)}`);
    } else if (finalRevision === last.revision && value !== lastValue) {
      problems.push(
        `${key}: holds ${value} at revision ${finalRevision}, acknowledged ${describe(last)}`,
      );
    } else if (!issued.has(value)) {
      problems.push(`${key}: holds ${value}, which no client wrote`);
    }
  }
  const detail = `${acknowledged} acknowledged writes, ${lastAck.size} keys`;
  if (problems.length === 0) return { ok: true, detail };
  const lost = problems.length - (nothing === null ? 0 : 1);
  return {
    ok: false,
    detail: `${detail}; ${nothing === null ? `${lost} lost` : nothing}`,
    problems: problems.slice(0, PROBLEMS_SHOWN),
  };
}

/**
 * (c): every value is written by one operation, so it belongs to exactly one revision. A
 * value seen at two revisions (in write answers or reads) was applied twice. It sees only
 * the revisions that answers and reads name, so a value applied again where no read looked,
 * or a delete applied twice, goes unnoticed here: the watch verdict (watch-check.ts), which
 * sees every change, matches each one to a distinct operation.
 */
export function checkExactlyOnce(history: readonly OpRecord[]): Verdict {
  const revisions = new Map<string, Set<number>>();
  const see = (value: string, revision: number | undefined): void => {
    if (revision === undefined || revision === 0) return;
    const set = revisions.get(value) ?? new Set<number>();
    set.add(revision);
    revisions.set(value, set);
  };
  let retried = 0;
  for (const op of history) {
    if (op.outcome !== "ok") continue;
    if (op.kind === "read" && typeof op.output === "string") see(op.output, op.revision);
    if ((op.kind === "write" || op.kind === "cas") && op.output !== false)
      see(op.value!, op.revision);
    if (op.kind !== "read" && op.nodes.length > 1) retried++;
  }
  const problems: string[] = [];
  for (const [value, set] of revisions) {
    if (set.size > 1) problems.push(`value ${value} seen at revisions ${[...set].join(", ")}`);
  }
  const detail = `${revisions.size} values seen, ${retried} acknowledged writes needed a retry`;
  return problems.length === 0
    ? { ok: true, detail }
    : {
        ok: false,
        detail: `${detail}; ${problems.length} applied twice`,
        problems: problems.slice(0, PROBLEMS_SHOWN),
      };
}

/** No node exited unless killed, and every node stopped (SIGTERM) exited 0 in time. */
export function checkNoCrashes(exits: readonly UnexpectedExit[]): Verdict {
  if (exits.length === 0) {
    return { ok: true, detail: "no node exited unless killed, and every stop ended cleanly" };
  }
  return {
    ok: false,
    detail: `${exits.length} unexpected exits`,
    problems: exits.map(
      (e) =>
        `n${e.node} exited (${e.how})${e.stopping ? " when stopped" : ""} at ${(e.at / 1000).toFixed(1)} s; last lines:\n${e.tail.slice(-8).join("\n")}`,
    ),
  };
}

/**
 * Whether an HTTP answer says the node failed in a way no fault explains: 500 is a bug by
 * the API's contract, and the only other 5xx it answers are 503 (no master, busy, a
 * deadline, stopping) and 507 (the store's quota).
 */
export function isInternalError(status: number | null, code: unknown): boolean {
  if (code === "ERR_INTERNAL") return true;
  return status !== null && status >= 500 && status !== 503 && status !== 507;
}

/** A node's log line at pino's error (50) or fatal (60) level. */
export interface ErrorLine {
  readonly at: number;
  readonly node: number;
  readonly line: string;
}

/** Characters kept of an error line's message. */
const ERROR_LINE_CHARS_MAX = 300;

/**
 * The error a node's log line reports, or null for a line below pino's error level (or not
 * pino's JSON at all). `at` is campaign time: the line's own time less `wallOrigin`.
 */
export function parseErrorLine(line: string, node: number, wallOrigin: number): ErrorLine | null {
  let entry: { level?: unknown; time?: unknown; msg?: unknown };
  if (!/^\{"level":(?:50|60),/.test(line)) return null;
  try {
    entry = JSON.parse(line) as typeof entry;
  } catch {
    return null;
  }
  const at = typeof entry.time === "number" ? entry.time - wallOrigin : Number.NaN;
  const message = typeof entry.msg === "string" ? entry.msg : line;
  return { at, node, line: message.slice(0, ERROR_LINE_CHARS_MAX) };
}

/** Most examples of each kind a verdict lists. */
const EXAMPLES_SHOWN = 5;

/** What one node logged at error or fatal level: how many lines, and the first of them. */
export interface NodeErrors {
  readonly node: number;
  readonly count: number;
  readonly lines: readonly ErrorLine[];
}

/**
 * No request was answered with an internal error (`internal`: "n2 PUT k: 500 ERR_INTERNAL"
 * lines from every client of the campaign) and no node logged an error: both are bugs by
 * the API's and the node's own account, whatever else the history shows. Nor was any of
 * the workload's requests answered as wrong (`wrong`: ErrorTally.wrongProblems, one line
 * per code): a workload that sends what the API refuses checks nothing with those requests.
 */
export function checkNoErrors(
  internal: readonly string[],
  logged: readonly NodeErrors[],
  wrong: readonly string[] = [],
): Verdict {
  const noisy = logged.filter((n) => n.count > 0);
  const lines = noisy.reduce((sum, n) => sum + n.count, 0);
  if (internal.length === 0 && lines === 0 && wrong.length === 0) {
    return {
      ok: true,
      detail: "no internal error or wrong-request answer, no error logged by any node",
    };
  }
  const problems: string[] = [];
  if (internal.length > 0) {
    problems.push(
      `${internal.length} requests answered with an internal error (a bug, by the API's contract): ${internal.slice(0, EXAMPLES_SHOWN).join("; ")}`,
    );
  }
  problems.push(...wrong);
  for (const { node, count, lines: kept } of noisy) {
    const shown = kept
      .slice(0, EXAMPLES_SHOWN)
      .map((l) => `${(l.at / 1000).toFixed(1)} s ${l.line}`);
    problems.push(`n${node} logged ${count} errors, the first:\n${shown.join("\n")}`);
  }
  const kinds = wrong.length > 0 ? `, ${wrong.length} kinds of wrong-request answers` : "";
  return {
    ok: false,
    detail: `${internal.length} internal errors answered${kinds}, ${lines} error lines logged`,
    problems,
  };
}

/**
 * Codes that say the request itself is wrong (a 4xx: bad input, too large, not allowed, no
 * such route or method, an idempotency key reused for another request, a membership
 * conflict), where a fault only ever refuses (no master, a deadline, a node that does not
 * answer) or loses a comparison. A loop that gets these is broken, and checks nothing
 * however long it runs.
 */
const WRONG_REQUEST_CODES: ReadonlySet<string> = new Set([
  "ERR_INVALID_INPUT",
  "ERR_TOO_LARGE",
  "ERR_UNAUTHENTICATED",
  "ERR_FORBIDDEN",
  "ERR_CONFLICT",
  "ERR_NO_ROUTE",
  "ERR_METHOD_NOT_ALLOWED",
  "ERR_IDEMPOTENCY_KEY_REUSED",
]);

/** Kinds of error counted in a verdict's detail. */
const CODES_SHOWN = 6;

/**
 * The errors a campaign loop (the bank's, the leases', the operator's, the workload's)
 * caught and carried on after, by code: refusals the faults explain, which it counts for
 * the report, and answers that say its requests are wrong (see WRONG_REQUEST_CODES, and any
 * other 4xx without a code), which no fault explains and which fail its verdict.
 * `refusals` are codes of WRONG_REQUEST_CODES that this loop's requests meet as refusals
 * (the operator's ERR_CONFLICT: a learner not caught up yet, a switchover under way).
 */
export class ErrorTally {
  readonly refused = new Map<string, number>();
  readonly wrong = new Map<string, number>();
  /** Internal errors (isInternalError), which are bugs wherever they come from. */
  readonly internal = new Map<string, number>();
  /** The first message of each wrong code, for the report. */
  private readonly examples = new Map<string, string>();
  private readonly refusals: ReadonlySet<string>;

  constructor(options: { readonly refusals?: readonly string[] } = {}) {
    this.refusals = new Set(options.refusals ?? []);
  }

  /** An error the client library threw. */
  note(error: unknown): void {
    const e = error as { code?: unknown; status?: unknown; name?: unknown; message?: unknown };
    // An answer the client library could not place keeps its status: a 4xx is wrong too.
    const status = e.code === "ERR_UNEXPECTED_RESPONSE" ? Number(e.status) : null;
    const code =
      status !== null
        ? `HTTP_${status}`
        : typeof e.code === "string"
          ? e.code
          : String(e.name ?? "Error");
    this.count(code, status, isInternalError(status, e.code), String(e.message ?? ""));
  }

  /**
   * An answer a node gave that its loop did not take (one that reads it raw): `code` is
   * the body's, null when it has none, and then only the status places it.
   */
  noteAnswer(status: number, code: string | null, message: string): void {
    const internal = isInternalError(status, code);
    this.count(code ?? `HTTP_${status}`, code === null ? status : null, internal, message);
  }

  /** Counts `code`; `status` is given for an answer without a code, which it places. */
  private count(code: string, status: number | null, internal: boolean, message: string): void {
    const wrong =
      internal ||
      (WRONG_REQUEST_CODES.has(code) && !this.refusals.has(code)) ||
      (status !== null && status >= 400 && status < 500);
    const counts = internal ? this.internal : wrong ? this.wrong : this.refused;
    counts.set(code, (counts.get(code) ?? 0) + 1);
    if (wrong && !this.examples.has(code)) this.examples.set(code, message);
  }

  /** `refused: ERR_NO_MASTER 3, ERR_TIMEOUT 1`, or "" when nothing was refused. */
  detail(): string {
    const all = [...this.refused, ...this.wrong, ...this.internal].sort((a, b) => b[1] - a[1]);
    if (all.length === 0) return "";
    const shown = all.slice(0, CODES_SHOWN).map(([code, n]) => `${code} ${n}`);
    if (all.length > CODES_SHOWN) shown.push(`${all.length - CODES_SHOWN} more codes`);
    return `; errors: ${shown.join(", ")}`;
  }

  /** One problem for each code that says the requests are wrong, or the node broken. */
  problems(): string[] {
    return [...this.wrong, ...this.internal].map(
      ([code, n]) =>
        `${n} requests answered ${code}, which no fault explains: ${this.examples.get(code)}`,
    );
  }

  /** One problem for each code that says the requests are wrong (internal errors aside). */
  wrongProblems(): string[] {
    return [...this.wrong].map(
      ([code, n]) =>
        `${n} requests answered ${code}, which no fault explains: ${this.examples.get(code)}`,
    );
  }

  /** How many requests were answered as wrong, all codes together. */
  wrongCount(): number {
    return [...this.wrong.values()].reduce((sum, n) => sum + n, 0);
  }

  /** One problem for each internal-error code only (for callers that expect refusals). */
  internalProblems(): string[] {
    return [...this.internal].map(
      ([code, n]) =>
        `${n} requests answered ${code}, an internal error (a bug): ${this.examples.get(code)}`,
    );
  }
}

function describe(op: OpRecord): string {
  return `${op.kind} #${op.id}${op.value === undefined ? "" : ` of ${op.value}`} at revision ${op.revision}`;
}
