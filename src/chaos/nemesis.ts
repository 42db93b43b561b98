/**
 * The faults of a fault campaign ("nemeses"): what each one does to the real processes
 * and links, for how long, and how it is undone. It owns the schedule, drawn from the
 * campaign's seed: a quiet gap, one fault, its repair, and again, until the fault phase
 * ends. Each fault is recorded as a window (start, end, kind, the nodes it hit) for the
 * report, and every one is undone before the next begins, so that at most one is active.
 *
 * A fault that cannot start (the cluster not healthy enough to wipe a node, no master known
 * for a fault on the master, a node to kill or pause that is not running) is skipped and
 * recorded as skipped, with why; one that started but did not finish what it set out to do
 * (a rolling restart stuck on a node, a switchover refused, a kill that found the process
 * gone) says so in its window, and is not counted as run. The faults verdict counts both,
 * and fails when a kind that was drawn again and again never once ran: a campaign must not
 * claim faults it never made.
 */

import type { Prng } from "../core/prng.js";
import type { Verdict } from "./checks.js";
import type { CampaignMembers } from "./members.js";
import type { Network } from "./network.js";
import type { ChaosNode } from "./processes.js";
import { sleep } from "./wait.js";

export const NEMESES = [
  "kill-master",
  "kill-any",
  "pause-master",
  "isolate-master",
  "split",
  "one-way",
  "flap",
  "wipe-restart",
  "replace",
  "switchover",
  "rolling-restart",
  "host-down",
] as const;

/** Faults that need each node on a host of its own (`--hosts netns`). */
export const HOST_NEMESES: readonly NemesisKind[] = ["host-down"];

export type NemesisKind = (typeof NEMESES)[number];

/**
 * Longest a replaced node may take to be promoted, in ms: starting a node from the
 * TypeScript sources takes seconds on a loaded machine, then a state transfer.
 */
const PROMOTE_MS_MAX = 60_000;
/** Longest a node restarted in a rolling restart may take to serve caught up, in ms. */
const ROLLING_CATCH_UP_MS_MAX = 60_000;
/** Longest wait for a healthy cluster before a fault that needs one, in ms. */
const HEALTHY_WAIT_MS_MAX = 10_000;
/**
 * Most draws of one kind that may all be skipped before the faults verdict fails. Kinds are
 * drawn at random, so a short campaign may draw a kind once or never (that is only
 * reported); a kind skipped every time it was drawn, three times or more, means the
 * campaign could not make it at all.
 */
const SKIPPED_DRAWS_MAX = 2;
/**
 * When a cut is proved, in ms after the rules are in: a write sent then to a node cut off
 * from every majority can never commit before the heal, so any acknowledgement means the
 * cut missed the nodes' traffic. The short wait covers rules a relay applies as it reads.
 */
const PROBE_AFTER_MS = 200;
/** Longest a probe write waits for its answer, in ms (less when the fault ends sooner). */
const PROBE_MS_MAX = 2000;
/** Shortest probe worth sending, in ms: any acknowledgement comes within this on loopback. */
const PROBE_MS_MIN = 200;

export const NEMESIS_HELP: Readonly<Record<NemesisKind, string>> = {
  "kill-master": "SIGKILL the master, restart it later with its data",
  "kill-any": "SIGKILL a random node, restart it later with its data",
  "pause-master": "SIGSTOP the master for longer than the election timeout, then SIGCONT",
  "isolate-master": "cut every link between the master and the other nodes",
  split: "split the nodes into a majority and a minority (either may hold the master)",
  "one-way": "drop the packets of one direction of one link (A to B only)",
  flap: "cut and heal a link (or the master's links) every few hundred milliseconds",
  "wipe-restart":
    "SIGKILL a node and delete its data directory; replace it (baton member replace through a live member), start it empty with --join <url>, promote it once caught up",
  replace:
    "SIGTERM a node (a master hands over first), delete its data directory and replace it as wipe-restart does: a machine swapped on purpose",
  switchover:
    "POST /v1/switchover to a random backup, or to the most up-to-date one ({}): a planned hand-over",
  "rolling-restart":
    "SIGTERM every node in turn (a master hands over first) and start it again with the same command line once the last one has caught up",
  "host-down":
    "the master's (or a random node's) whole host drops off the network, its process still running: no reset, no close (--hosts netns)",
};

/** One fault as it happened, in campaign milliseconds. */
export interface FaultWindow {
  readonly kind: NemesisKind;
  readonly start: number;
  end: number;
  readonly nodes: number[];
  /** What the fault did, extended with what came of it (a switchover's answer, a promote). */
  detail: string;
  /** What the fault set out to do and did not finish, if anything (also in `detail`). */
  unfinished?: string;
  /** Evidence that the fault did not take hold (a cut-off node acknowledged a write). */
  noEffect?: string;
}

/** What a write sent to one node came to: acknowledged (200), or the refusal or error. */
export interface ProbeOutcome {
  readonly acknowledged: boolean;
  /** "200", "503 ERR_NO_MASTER", "UND_ERR_CONNECT_TIMEOUT", "TimeoutError", ... */
  readonly answer: string;
}

/** A fault drawn and not made, in campaign milliseconds. */
export interface FaultSkip {
  readonly kind: NemesisKind;
  readonly at: number;
  readonly reason: string;
}

export interface NemesisContext {
  readonly prng: Prng;
  readonly nodes: readonly ChaosNode[];
  readonly network: Network;
  readonly now: () => number;
  /** The master as last seen by the status poller, or null. */
  currentMaster(): number | null;
  /**
   * Whether every node answers, agrees on one master and has applied nearly all it has
   * committed. A node is wiped only then: wiping one while another is still catching up
   * would leave fewer voters with the data than a majority, and nothing could restore it.
   */
  healthy(): boolean;
  /**
   * Starts node `id` again with its command line; after it was replaced (`wiped`), with
   * `--join <url of a running member>` as well.
   */
  restart(id: number, wiped: boolean): void;
  /** The operator: membership changes and switchovers through the client library. */
  readonly members: CampaignMembers;
  /** Candidacies no master asked for (elections after a timeout) since campaign ms `since`. */
  unaskedCandidacies(since: number): number;
  /**
   * Event-loop stalls past the election timeout that nodes logged since campaign ms
   * `since`: a machine too loaded to keep a master's heartbeats on time, which explains an
   * election by timeout without any protocol fault.
   */
  stallsPastElection(since: number): number;
  /**
   * Writes a fresh key (outside the workload's, the bank's and the leases') through node
   * `id` alone, waiting at most `timeoutMs` for the answer: how a fault proves that it cut
   * that node off.
   */
  probeWrite(id: number, timeoutMs: number): Promise<ProbeOutcome>;
  /** Problems an operator would have to act on (a replace or promote that never finished). */
  readonly operatorProblems: string[];
  /** Fault windows, appended to as faults begin. */
  readonly windows: FaultWindow[];
  /** Faults drawn but not made, appended to as they are skipped. */
  readonly skips: FaultSkip[];
  /** Milliseconds a fault lasts: [min, max]. */
  readonly faultMs: readonly [number, number];
  /** Milliseconds between faults: [min, max]. */
  readonly quietMs: readonly [number, number];
}

/** Runs faults until `until` (campaign ms); each is undone before this returns. */
export async function runNemeses(
  context: NemesisContext,
  kinds: readonly NemesisKind[],
  until: number,
): Promise<void> {
  const { prng, now } = context;
  for (;;) {
    await sleep(prng.int(context.quietMs[0], context.quietMs[1]));
    const duration = prng.int(context.faultMs[0], context.faultMs[1]);
    if (now() + duration > until) return;
    await runFault(context, prng.pick(kinds), duration);
  }
}

/** Faults made on the master itself: without a known master, there is nothing to hit. */
const MASTER_NEMESES: readonly NemesisKind[] = ["kill-master", "pause-master", "isolate-master"];

async function runFault(context: NemesisContext, kind: NemesisKind, durationMs: number) {
  const { prng, nodes, network } = context;
  const ids = nodes.map((n) => n.id);
  const known = context.currentMaster();
  if (known === null && MASTER_NEMESES.includes(kind)) {
    context.skips.push({ kind, at: context.now(), reason: "no master was known" });
    return;
  }
  // The others only prefer the master: a node drawn at random is hit when none is known.
  const master = known ?? prng.pick(ids);
  const open = (hit: number[], detail: string): FaultWindow => {
    const window: FaultWindow = { kind, start: context.now(), end: Number.NaN, nodes: hit, detail };
    context.windows.push(window);
    return window;
  };
  const close = (window: FaultWindow): void => {
    window.end = context.now();
  };
  const skip = (reason: string): void => {
    context.skips.push({ kind, at: context.now(), reason });
  };
  const unhealthy = `the cluster was not healthy within ${HEALTHY_WAIT_MS_MAX} ms`;
  switch (kind) {
    case "kill-master":
    case "kill-any": {
      const id = kind === "kill-master" ? master : prng.pick(ids);
      const node = nodes.find((n) => n.id === id)!;
      const who = kind === "kill-master" ? `n${id}, the master,` : `n${id}`;
      if (node.state !== "running") return skip(`${who} was ${node.state}`);
      const window = open([id], `SIGKILL n${id}`);
      if (!(await node.killIfRunning())) {
        // It exited on its own between the look and the signal: this fault killed nothing.
        window.unfinished = `n${id} was not running when SIGKILL was sent: nothing was killed`;
        window.detail += `; ${window.unfinished}`;
      }
      await sleep(durationMs);
      context.restart(id, false);
      close(window);
      return;
    }
    case "wipe-restart":
    case "replace": {
      // A graceful replacement hits the master half the time: its SIGTERM hands over first.
      const id = kind === "replace" && prng.chance(0.5) ? master : prng.pick(ids);
      // Only from a healthy cluster: replacing a node while another is still catching up
      // would leave fewer voters with the data than a majority.
      if (!(await waitHealthy(context, HEALTHY_WAIT_MS_MAX))) return skip(unhealthy);
      const how = kind === "wipe-restart" ? "SIGKILL" : "SIGTERM";
      const window = open([id], `${how} + wipe n${id}, member replace`);
      await replaceNode(context, id, how, window);
      close(window);
      return;
    }
    case "switchover": {
      const backups = ids.filter((id) => id !== master);
      const to = prng.chance(0.5) ? prng.pick(backups) : null;
      const window = open(
        to === null ? [master] : [master, to],
        `switchover n${master} -> ${to === null ? "most up-to-date backup" : `n${to}`}`,
      );
      const outcome = await context.members.switchover(to);
      if (outcome.ok) {
        window.detail += `: n${outcome.master} master of term ${outcome.term}`;
      } else {
        window.unfinished = `not done (${outcome.error})`;
        window.detail += `: ${window.unfinished}`;
      }
      close(window);
      await sleep(Math.min(durationMs, 1000));
      return;
    }
    case "rolling-restart": {
      if (!(await waitHealthy(context, HEALTHY_WAIT_MS_MAX))) return skip(unhealthy);
      const order = shuffle(prng, ids);
      const window = open(order, `SIGTERM and restart ${names(order)} in turn`);
      for (const id of order) {
        await nodes.find((n) => n.id === id)!.stop();
        await sleep(200);
        context.restart(id, false);
        if (!(await waitHealthy(context, ROLLING_CATCH_UP_MS_MAX))) {
          window.unfinished = `n${id} not caught up within ${ROLLING_CATCH_UP_MS_MAX} ms`;
          window.detail += `; ${window.unfinished}`;
          break;
        }
      }
      const unasked = context.unaskedCandidacies(window.start);
      const stalls = context.stallsPastElection(window.start);
      window.detail += `; unasked candidacies: ${unasked}`;
      if (stalls > 0) window.detail += `; event-loop stalls past the election timeout: ${stalls}`;
      // Every master stopped here hands over first, and every other node is only away for a
      // restart: an election by timeout means a hand-over that did not happen, unless a node
      // logged a stall long enough to miss heartbeats (a machine overloaded, not the protocol).
      if (unasked > 0 && stalls === 0 && window.unfinished === undefined) {
        window.noEffect = `${unasked} candidacies no master asked for: a stopped master did not hand over`;
      }
      close(window);
      return;
    }
    case "pause-master": {
      const node = nodes.find((n) => n.id === master)!;
      if (node.state !== "running") return skip(`n${master}, the master, was ${node.state}`);
      const window = open([master], `SIGSTOP n${master} for ${durationMs} ms`);
      node.signal("SIGSTOP");
      await sleep(durationMs);
      node.signal("SIGCONT");
      close(window);
      return;
    }
    case "isolate-master": {
      const others = ids.filter((id) => id !== master);
      const window = open([master], `n${master} | ${others.map((id) => `n${id}`).join(",")}`);
      for (const other of others) {
        await network.cut(master, other);
        await network.cut(other, master);
      }
      await holdProvingCut(context, window, master, durationMs);
      await network.healAll();
      close(window);
      return;
    }
    case "split": {
      const shuffled = shuffle(prng, ids);
      const minority = shuffled.slice(0, prng.int(1, Math.floor((ids.length - 1) / 2)));
      const majority = ids.filter((id) => !minority.includes(id));
      const window = open(minority, `${names(minority)} | ${names(majority)}`);
      for (const a of minority) {
        for (const b of majority) {
          await network.cut(a, b);
          await network.cut(b, a);
        }
      }
      await holdProvingCut(context, window, prng.pick(minority), durationMs);
      await network.healAll();
      close(window);
      return;
    }
    case "one-way": {
      const from = prng.chance(0.5) ? master : prng.pick(ids);
      const to = prng.pick(ids.filter((id) => id !== from));
      const window = open([from, to], `n${from} -/-> n${to}`);
      await network.cut(from, to);
      await sleep(durationMs);
      await network.healAll();
      close(window);
      return;
    }
    case "host-down": {
      const { hostDown, hostUp } = network;
      if (hostDown === undefined || hostUp === undefined) {
        throw new Error("the host-down fault needs each node on a host of its own (--hosts netns)");
      }
      const id = prng.chance(0.7) ? master : prng.pick(ids);
      const window = open([id], `host of n${id} off the network`);
      await hostDown(id);
      try {
        await holdProvingCut(context, window, id, durationMs);
      } finally {
        await hostUp(id);
      }
      close(window);
      return;
    }
    case "flap": {
      const isolate = prng.chance(0.5);
      const peer = prng.pick(ids.filter((id) => id !== master));
      const links = isolate
        ? ids
            .filter((id) => id !== master)
            .flatMap((id) => [[master, id] as const, [id, master] as const])
        : [[master, peer] as const, [peer, master] as const];
      const window = open(
        isolate ? [master] : [master, peer],
        isolate ? `n${master} flapping against all` : `n${master} <-> n${peer} flapping`,
      );
      const endAt = context.now() + durationMs;
      let down = false;
      while (context.now() < endAt) {
        down = !down;
        for (const [a, b] of links) {
          if (down) await network.cut(a, b);
          else await network.heal(a, b);
        }
        await sleep(prng.int(100, 500));
      }
      await network.healAll();
      close(window);
      return;
    }
  }
}

/**
 * Keeps a cut in place for `durationMs` (from the call), proving on the way that it took
 * hold: node `cut` is then off every majority, so a write sent through it alone cannot
 * commit before the heal. An acknowledged one means the cut missed the nodes' own traffic
 * (rules on the wrong addresses, a relay the nodes bypass), and every verdict of the run
 * would be about a fault that never happened: it fails the faults verdict.
 */
async function holdProvingCut(
  context: NemesisContext,
  window: FaultWindow,
  cut: number,
  durationMs: number,
): Promise<void> {
  const endAt = context.now() + durationMs;
  await sleep(Math.min(PROBE_AFTER_MS, durationMs));
  const probeMs = Math.min(PROBE_MS_MAX, endAt - context.now() - 100);
  if (probeMs >= PROBE_MS_MIN) {
    const sentAt = context.now();
    const outcome = await context.probeWrite(cut, probeMs);
    const at = Math.round(sentAt - window.start);
    if (outcome.acknowledged) {
      window.noEffect = `n${cut} acknowledged a write sent through it alone ${at} ms into the cut: its links were not cut`;
      window.detail += `; ${window.noEffect}`;
    } else {
      window.detail += `; a write through n${cut} at ${at} ms: ${outcome.answer}, as a cut-off node must`;
    }
  }
  await sleep(Math.max(0, endAt - context.now()));
}

/**
 * Wipes node `id` after stopping it (`how`), and replaces it as an operator would: `member
 * replace` through the live members, a start with an empty directory and `--join <url>`,
 * and `member promote` repeated until the master finds it caught up. What came of it goes
 * into the window's detail; a step that never finished into the operator's problems.
 */
async function replaceNode(
  context: NemesisContext,
  id: number,
  how: "SIGKILL" | "SIGTERM",
  window: FaultWindow,
): Promise<void> {
  const node = context.nodes.find((n) => n.id === id)!;
  if (how === "SIGKILL") await node.kill();
  else await node.stop();
  node.wipe();
  try {
    await context.members.replace(id, node.url);
  } catch (error) {
    const problem = `n${id} at ${Math.round(window.start)} ms: ${(error as Error).message}`;
    context.operatorProblems.push(problem);
    window.unfinished = "replace failed";
    window.detail += "; replace failed";
  }
  context.restart(id, true);
  const promoted = await context.members.promoteWhenCaughtUp(id, PROMOTE_MS_MAX);
  if (promoted.ok) {
    window.detail += `; promoted after ${promoted.ms} ms (${promoted.attempts} promote requests)`;
  } else {
    window.unfinished = "not promoted";
    window.detail += "; not promoted";
    context.operatorProblems.push(
      `n${id} at ${Math.round(window.start)} ms: not promoted within ${PROMOTE_MS_MAX} ms (${promoted.attempts} requests; last: ${promoted.error})`,
    );
  }
}

/**
 * The verdict on the faults themselves: which kinds of `asked` ran, were skipped (and why)
 * or did not finish, and which were never drawn; a window that did not finish is not
 * counted as run. It fails when no fault ran, and for a kind drawn more than
 * SKIPPED_DRAWS_MAX times that never ran (skipped, or not finished, every time).
 */
export function checkFaults(
  asked: readonly NemesisKind[],
  windows: readonly FaultWindow[],
  skips: readonly FaultSkip[],
): Verdict {
  const finished = windows.filter((w) => w.unfinished === undefined);
  const ran = tally(finished.map((w) => w.kind));
  const skipped = tally(skips.map((s) => s.kind));
  const unfinished = tally(windows.filter((w) => w.unfinished !== undefined).map((w) => w.kind));
  const problems: string[] = [];
  if (asked.length > 0 && finished.length === 0) {
    problems.push(
      "no fault ran: every verdict is about a cluster left alone (a longer --duration makes room for faults)",
    );
  }
  for (const w of windows) {
    if (w.noEffect !== undefined) {
      problems.push(`${w.kind} at ${(w.start / 1000).toFixed(1)} s: ${w.noEffect}`);
    }
  }
  for (const kind of new Set(asked)) {
    const skippedTimes = skipped.get(kind) ?? 0;
    const notDone = unfinished.get(kind) ?? 0;
    const times = skippedTimes + notDone;
    if ((ran.get(kind) ?? 0) > 0 || times <= SKIPPED_DRAWS_MAX) continue;
    if (notDone === 0) {
      problems.push(
        `${kind} was drawn ${times} times and skipped every time: ${reasonsFor(kind, skips)}`,
      );
      continue;
    }
    const why = [
      ...(skippedTimes > 0 ? [`skipped ${skippedTimes} (${reasonsFor(kind, skips)})`] : []),
      `not finished ${notDone} (${unfinishedFor(kind, windows)})`,
    ];
    problems.push(`${kind} was drawn ${times} times and never ran: ${why.join(", ")}`);
  }
  const parts = [`ran: ${listCounts(ran) || "none"}`];
  if (skipped.size > 0) {
    const each = [...skipped].map(([k, n]) => `${k} ${n} (${reasonsFor(k, skips)})`);
    parts.push(`skipped: ${each.join(", ")}`);
  }
  if (unfinished.size > 0) parts.push(`not finished: ${listCounts(unfinished)}`);
  const drawn = (k: NemesisKind): boolean => ran.has(k) || skipped.has(k) || unfinished.has(k);
  const never = [...new Set(asked)].filter((k) => !drawn(k));
  if (never.length > 0) parts.push(`never drawn: ${never.join(", ")}`);
  const detail = parts.join("; ");
  return problems.length === 0 ? { ok: true, detail } : { ok: false, detail, problems };
}

function tally(kinds: readonly NemesisKind[]): Map<NemesisKind, number> {
  const counts = new Map<NemesisKind, number>();
  for (const kind of kinds) counts.set(kind, (counts.get(kind) ?? 0) + 1);
  return counts;
}

function listCounts(counts: ReadonlyMap<NemesisKind, number>): string {
  return [...counts].map(([kind, n]) => `${kind} ${n}`).join(", ");
}

/** The distinct ways the windows of `kind` did not finish. */
function unfinishedFor(kind: NemesisKind, windows: readonly FaultWindow[]): string {
  const ways = windows.filter((w) => w.kind === kind).map((w) => w.unfinished);
  return [...new Set(ways.filter((way) => way !== undefined))].join("; ");
}

/** The distinct reasons `kind` was skipped. */
function reasonsFor(kind: NemesisKind, skips: readonly FaultSkip[]): string {
  return [...new Set(skips.filter((s) => s.kind === kind).map((s) => s.reason))].join("; ");
}

async function waitHealthy(context: NemesisContext, timeoutMs: number): Promise<boolean> {
  const deadline = context.now() + timeoutMs;
  while (!context.healthy()) {
    if (context.now() > deadline) return false;
    await sleep(100);
  }
  return true;
}

function names(ids: readonly number[]): string {
  return ids.map((id) => `n${id}`).join(",");
}

function shuffle<T>(prng: Prng, items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = prng.int(0, i);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
