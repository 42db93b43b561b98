/**
 * Faults a node inflicts on itself when asked over HTTP (`/v1/faults/*`), so that a demo
 * can show a fail-over without a terminal: a crash, a hang and a network partition. It is
 * created only for a node started with `--allow-fault-injection`; without it the HTTP
 * layer refuses every fault.
 *
 * Each fault is the real thing, not a simulation of it:
 *
 * - kill: the process sends itself SIGKILL; nothing is flushed or closed, as in a crash.
 * - pause: the main thread blocks in `Atomics.wait` for the whole time, so timers, peer
 *   traffic and HTTP all stop at once, like SIGSTOP. Peers see silence, not closed
 *   connections; a paused master is replaced by election timeout and steps down when it
 *   wakes up into a higher term.
 * - partition: the transport drops every message to and from peers until heal; HTTP keeps
 *   serving, so the dashboard can watch the cut-off node.
 */

import type { Logger } from "pino";
import type { EventFeed } from "../http/event-feed.js";
import type { FaultInjector } from "../http/routes/fault-routes.js";
import type { BatonNode } from "../server/node.js";

/** Delay between reporting a fault and inflicting it, so the report reaches the stream. */
const REPORT_DELAY_MS = 50;

export function createFaultInjector(
  node: BatonNode,
  feed: EventFeed,
  logger: Logger,
): FaultInjector {
  let partitioned = false;
  return {
    kill() {
      feed.publish({ type: "fault", fault: "kill", durationMs: null });
      logger.warn({ event: "fault", fault: "kill" }, "killed by request (SIGKILL)");
      setTimeout(() => process.kill(process.pid, "SIGKILL"), REPORT_DELAY_MS);
    },
    pause(ms) {
      feed.publish({ type: "fault", fault: "pause", durationMs: ms });
      logger.warn({ event: "fault", fault: "pause", ms }, `pausing for ${ms} ms by request`);
      setTimeout(() => freeze(ms), REPORT_DELAY_MS);
    },
    partition() {
      // Asked twice (two dashboards), it is one partition: one event, one heal.
      if (partitioned || !node.setPartitioned(true)) return;
      partitioned = true;
      feed.publish({ type: "fault", fault: "partition", durationMs: null });
    },
    heal() {
      if (!partitioned) return;
      node.setPartitioned(false);
      partitioned = false;
      feed.publish({ type: "fault", fault: "heal", durationMs: null });
    },
    partitioned: () => partitioned,
  };
}

/** Blocks the whole event loop for `ms` milliseconds. */
function freeze(ms: number): void {
  const cell = new Int32Array(new SharedArrayBuffer(4));
  const until = Date.now() + ms;
  for (let left = ms; left > 0; left = until - Date.now()) Atomics.wait(cell, 0, 0, left);
}
