/**
 * Catches real time and real I/O started by code under simulation. A whole-node run is a
 * pure function of its seed only while every timer, file and socket operation goes through
 * the simulated clock, file system and network; one that reaches the real event loop is a
 * leak, and the run fails with it.
 *
 * Async hooks would see every such resource as it is created, but an `init` hook makes
 * Node track every promise (an id, a trigger id and a before/after callback per reaction):
 * a third of the run time of a sweep. So a sweep uses two cheaper nets, and a traced
 * replay (`precise`) adds the hook back to name the code that started an I/O operation:
 *
 * - While the simulation runs, the global timer functions are wrapped; a call with a frame
 *   of this code base on its stack is a leak, reported with those frames.
 * - The process's active requests and handles (`process.getActiveResourcesInfo()`) are
 *   counted when the runner starts, before each real macrotask turn it takes and when it
 *   stops, and again after each real turn. Between a count after a turn and the next count
 *   before one, only simulated code ran (promise reactions inside one macrotask), so
 *   anything new is its doing; and a real operation cannot finish without a real turn,
 *   so none starts and ends unseen.
 */

import { createHook } from "node:async_hooks";
import { fileURLToPath } from "node:url";

/** Async resource types that mean real time or real I/O (the precise hook's list). */
const LEAKS = new Set([
  "Timeout",
  "Immediate",
  "FSREQCALLBACK",
  "FSREQPROMISE",
  "FILEHANDLE",
  "TCPWRAP",
  "TCPCONNECTWRAP",
  "TCPSERVERWRAP",
  "GETADDRINFOREQWRAP",
  "PROCESSWRAP",
  "PIPEWRAP",
  "WRITEWRAP",
]);

/** The code base's root (the parent of `src/` or `dist/`), as stack frames spell it. */
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const THIS_FILE = fileURLToPath(import.meta.url);

/** Up to three frames of this code base (not its dependencies, not this file) on the stack. */
function ownFrames(): string | null {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 60;
  const stack = new Error().stack ?? "";
  Error.stackTraceLimit = limit;
  const frames = stack
    .split("\n")
    .filter((l) => l.includes(ROOT) && !l.includes("node_modules") && !l.includes(THIS_FILE));
  if (frames.length === 0) return null;
  return frames.slice(0, 3).join(" <- ").replace(/\s+/g, " ");
}

function countResources(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const type of process.getActiveResourcesInfo()) {
    counts.set(type, (counts.get(type) ?? 0) + 1);
  }
  return counts;
}

type TimerFunction = (...args: never[]) => unknown;
const TIMERS = ["setTimeout", "setInterval", "setImmediate"] as const;

export class LeakWatch {
  /** What leaked, in order; the first one is the run's verdict. */
  readonly leaks: string[] = [];
  private baseline = new Map<string, number>();
  private saved: Record<string, TimerFunction> | null = null;
  private readonly hook;

  /** `precise`: also an async hook, which names the code behind an I/O leak (slow). */
  constructor(precise: boolean) {
    this.hook = precise
      ? createHook({
          init: (_id, type) => {
            if (!LEAKS.has(type)) return;
            const frames = ownFrames();
            if (frames !== null) this.leaks.push(`${type} at ${frames}`);
          },
        })
      : null;
  }

  /** The simulation starts running: wraps the timer functions and takes the count. */
  start(): void {
    const global = globalThis as unknown as Record<string, TimerFunction>;
    const saved: Record<string, TimerFunction> = {};
    for (const name of TIMERS) {
      const real = global[name] as TimerFunction;
      saved[name] = real;
      global[name] = (...args: never[]) => {
        const frames = ownFrames();
        if (frames !== null) this.leaks.push(`${TIMER_TYPE[name]} at ${frames}`);
        return real(...args);
      };
    }
    this.saved = saved;
    this.hook?.enable();
    this.baseline = countResources();
  }

  /** The simulation stops (or the runner takes a real turn): compares the count. */
  stop(): void {
    this.compare();
    this.hook?.disable();
    if (this.saved === null) return;
    const global = globalThis as unknown as Record<string, TimerFunction>;
    for (const name of TIMERS) global[name] = this.saved[name] as TimerFunction;
    this.saved = null;
  }

  /** Before the runner's own real turn: anything new since the last count is a leak. */
  beforeTurn(): void {
    this.compare();
    this.hook?.disable();
  }

  /** After the runner's real turn: what the turn started (not simulated code) is counted in. */
  afterTurn(): void {
    this.baseline = countResources();
    this.hook?.enable();
  }

  private compare(): void {
    for (const [type, count] of countResources()) {
      const before = this.baseline.get(type) ?? 0;
      if (count > before) {
        this.leaks.push(
          `${count - before} more ${type} than before (replay the seed with --trace to see where it started)`,
        );
      }
    }
  }
}

const TIMER_TYPE: Record<(typeof TIMERS)[number], string> = {
  setTimeout: "Timeout",
  setInterval: "Timeout",
  setImmediate: "Immediate",
};
