/**
 * The delay before reconnecting to a peer. It owns the arithmetic only (no timers): the
 * delay doubles with each consecutive failure from a small minimum up to a maximum, with
 * jitter so that nodes that lost a peer at the same moment do not redial in lock step.
 *
 * The first retry must come quickly: a connection that drops is often a peer restarting
 * or a master failing, and the cluster wants to know about either at once.
 */

import { assert } from "../shared/assert.js";

export interface BackoffLimits {
  /**
   * Delay before the first reconnect attempt after a failure, in milliseconds.
   * @default 10
   */
  readonly reconnectDelayMsMin: number;
  /**
   * Longest delay between reconnect attempts, in milliseconds.
   * @default 1000
   */
  readonly reconnectDelayMsMax: number;
}

/**
 * The delay before reconnect attempt `failures` (0 for the first retry after a failure):
 * `min(max, min * 2^failures)`, then "equal jitter" draws it uniformly from its upper half,
 * so it never falls below half the nominal delay. `random` returns a number in [0, 1).
 */
export function reconnectDelayMs(
  failures: number,
  limits: BackoffLimits,
  random: () => number,
): number {
  assert(Number.isSafeInteger(failures) && failures >= 0);
  assert(
    limits.reconnectDelayMsMin > 0 && limits.reconnectDelayMsMin <= limits.reconnectDelayMsMax,
  );
  // The exponent is capped so that 2^failures stays finite however long a peer stays away.
  const nominal = Math.min(
    limits.reconnectDelayMsMax,
    limits.reconnectDelayMsMin * 2 ** Math.min(failures, 30),
  );
  const draw = random();
  assert(draw >= 0 && draw < 1, "random() must return a number in [0, 1)");
  return nominal / 2 + (nominal / 2) * draw;
}
