/**
 * The faults of a fault campaign ("nemeses"): what each one does to the real processes
 * and links, for how long, and how it is undone. It owns the schedule, drawn from the
 * campaign's seed: a quiet gap, one fault, its repair, and again, until the fault phase
 * ends. Each fault is recorded as a window (start, end, kind, the nodes it hit) for the
 * report, and every one is undone before the next begins, so that at most one is active.
 */

import type { Prng } from "../core/prng.js";
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
  "host-down",
] as const;

/** Faults that need each node on a host of its own (`--hosts netns`). */
export const HOST_NEMESES: readonly NemesisKind[] = ["host-down"];

export type NemesisKind = (typeof NEMESES)[number];

export const NEMESIS_HELP: Readonly<Record<NemesisKind, string>> = {
  "kill-master": "SIGKILL the master, restart it later with its data",
  "kill-any": "SIGKILL a random node, restart it later with its data",
  "pause-master": "SIGSTOP the master for longer than the election timeout, then SIGCONT",
  "isolate-master": "cut every link between the master and the other nodes",
  split: "split the nodes into a majority and a minority (either may hold the master)",
  "one-way": "drop the packets of one direction of one link (A to B only)",
  flap: "cut and heal a link (or the master's links) every few hundred milliseconds",
  "wipe-restart": "SIGKILL a node, delete its data directory, restart it empty (state transfer)",
  "host-down":
    "the master's (or a random node's) whole host drops off the network, its process still running: no reset, no close (--hosts netns)",
};

/** One fault as it happened, in campaign milliseconds. */
export interface FaultWindow {
  readonly kind: NemesisKind;
  readonly start: number;
  end: number;
  readonly nodes: number[];
  readonly detail: string;
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
  /** Starts node `id` again (with `--join` after a wipe when the node supports it). */
  restart(id: number, wiped: boolean): void;
  /** Fault windows, appended to as faults begin. */
  readonly windows: FaultWindow[];
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

async function runFault(context: NemesisContext, kind: NemesisKind, durationMs: number) {
  const { prng, nodes, network } = context;
  const ids = nodes.map((n) => n.id);
  const master = context.currentMaster() ?? prng.pick(ids);
  const open = (hit: number[], detail: string): FaultWindow => {
    const window: FaultWindow = { kind, start: context.now(), end: Number.NaN, nodes: hit, detail };
    context.windows.push(window);
    return window;
  };
  const close = (window: FaultWindow): void => {
    window.end = context.now();
  };
  switch (kind) {
    case "kill-master":
    case "kill-any":
    case "wipe-restart": {
      const id = kind === "kill-master" ? master : prng.pick(ids);
      const node = nodes.find((n) => n.id === id)!;
      const wiped = kind === "wipe-restart";
      if (wiped && !(await waitHealthy(context, 10_000))) return;
      const window = open([id], `${wiped ? "SIGKILL + wipe" : "SIGKILL"} n${id}`);
      await node.kill();
      if (wiped) {
        node.wipe();
        // An empty node comes back at once: the point is the state transfer it needs.
        context.restart(id, true);
        await sleep(durationMs);
      } else {
        await sleep(durationMs);
        context.restart(id, false);
      }
      close(window);
      return;
    }
    case "pause-master": {
      const node = nodes.find((n) => n.id === master)!;
      if (node.state !== "running") return;
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
      await sleep(durationMs);
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
      await sleep(durationMs);
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
        await sleep(durationMs);
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
