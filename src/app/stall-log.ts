/**
 * A warning in the node's log for every event-loop stall long enough to matter to the
 * protocol: half the shortest election timeout or more. A master that stalls that long
 * may leave its backups without a heartbeat until one calls an election, so an operator
 * (or a fault campaign) reading why a fail-over happened with no fault finds the stall
 * beside the candidacy. The metrics (`baton_event_loop_delay_seconds`) count every tick;
 * this names the few that count.
 */

import type { EventEmitter } from "node:events";
import type { Logger } from "pino";
import type { NodeEvents } from "../server/node.js";

/** The line's fields, for readers of the log (src/chaos, the tests). */
export interface StallLine {
  readonly event: "stall";
  /** How late the node's tick fired, in ms: the time the event loop did not run it. */
  readonly ms: number;
  /** The node's shortest election timeout, in ms. */
  readonly electionMsMin: number;
}

/** Logs each tick delay of at least `electionMsMin / 2` ms at warn level. */
export function logStalls(
  node: EventEmitter<NodeEvents>,
  electionMs: { readonly min: number; readonly max: number },
  log: Pick<Logger, "warn">,
): void {
  const threshold = electionMs.min / 2;
  node.on("tickDelay", (ms) => {
    if (ms < threshold) return;
    const line: StallLine = { event: "stall", ms: Math.round(ms), electionMsMin: electionMs.min };
    log.warn(
      line,
      `the event loop stalled ${line.ms} ms (backups call an election after ${electionMs.min}-${electionMs.max} ms without a heartbeat)`,
    );
  });
}
