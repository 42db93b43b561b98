/**
 * The deadline every request to the node runs under, so that an answer always comes:
 * when no master is reachable the node may wait for an election that does not end, and the
 * client must get `503` with `Retry-After` instead of a hang.
 *
 * The work itself is not cancelled when the deadline passes (a proposed write cannot be
 * taken back); only the answer stops waiting for it, which is why the answer says that a
 * write may or may not have taken effect.
 */

import { TimeoutError } from "../shared/errors.js";

/**
 * Resolves or rejects as `work` does, or rejects with `TimeoutError` (ERR_TIMEOUT) after
 * `timeoutMs` milliseconds, whichever comes first. A late outcome of `work` is ignored.
 */
export function withDeadline<T>(work: Promise<T>, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    // All requests share one timeout, so Node keeps these timers in one list and arming or
    // clearing one costs a constant; that is cheaper than any sweep of our own.
    const timer = setTimeout(() => {
      reject(new TimeoutError(`the request did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
