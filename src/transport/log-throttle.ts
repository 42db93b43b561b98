/**
 * Keeps repeated warnings from flooding the log. A misconfigured node redials about once
 * a second and is refused each time; a port scanner may connect in bursts. The first
 * warning for a key (say, a remote host and a reason) is logged as a warning, repeats
 * within the interval are demoted to debug. It owns only that decision; the counters in
 * the transport's stats still count every event.
 */

import { realClock } from "../shared/clock.js";

/** Distinct keys remembered before the table is reset, so that it stays bounded. */
const THROTTLE_KEYS_MAX = 1024;

export class LogThrottle {
  private readonly lastWarnedMs = new Map<string, number>();

  /**
   * @param intervalMs How long after a warning its repeats are demoted, in milliseconds.
   * @param nowMs The clock, injectable for tests.
   */
  constructor(
    private readonly intervalMs: number,
    private readonly nowMs: () => number = realClock.wallMs,
  ) {}

  /** "warn" for the first occurrence of `key` in the interval, "debug" for repeats. */
  level(key: string): "warn" | "debug" {
    const now = this.nowMs();
    const last = this.lastWarnedMs.get(key);
    if (last !== undefined && now - last < this.intervalMs) return "debug";
    if (this.lastWarnedMs.size >= THROTTLE_KEYS_MAX) this.lastWarnedMs.clear();
    this.lastWarnedMs.set(key, now);
    return "warn";
  }
}
