/**
 * The clock seam: wall time, monotonic time and timers, handed to the runtime and storage
 * at construction so that the simulator can run them under virtual time. `realClock` is
 * the process's own (Date, performance, the global timers) and is every default.
 *
 * Code outside `src/core` and `src/kv` that reads the time or sets a timer does it through
 * a `Clock`; a direct `Date.now()` or `setTimeout` in the runtime or storage is time the
 * simulator cannot see, and a leak that makes a run depend on the machine.
 */

/** A pending timer: what the runtime needs of Node's `Timeout`. */
export interface Timer {
  /** Restarts the timer's delay from now, keeping its callback. */
  refresh(): Timer;
  /** The timer no longer keeps the process alive (real clock only; virtual time ignores it). */
  unref(): Timer;
}

export interface Clock {
  /** Milliseconds since the Unix epoch, as `Date.now()`: it may jump, forward or back. */
  wallMs(): number;
  /** Milliseconds from an arbitrary origin that never goes back, as `performance.now()`. */
  monotonicMs(): number;
  /** Calls `callback` once, `ms` milliseconds from now. */
  setTimeout(callback: () => void, ms: number): Timer;
  clearTimeout(timer: Timer | null | undefined): void;
  /** Calls `callback` every `ms` milliseconds until cleared. */
  setInterval(callback: () => void, ms: number): Timer;
  clearInterval(timer: Timer | null | undefined): void;
  /** Calls `callback` after the current turn: after pending I/O callbacks and promises. */
  setImmediate(callback: () => void): void;
}

/** The process's clock and timers. */
export const realClock: Clock = {
  wallMs: () => Date.now(),
  monotonicMs: () => performance.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (timer) => clearTimeout(timer as NodeJS.Timeout | undefined),
  setInterval: (callback, ms) => setInterval(callback, ms),
  clearInterval: (timer) => clearInterval(timer as NodeJS.Timeout | undefined),
  setImmediate: (callback) => {
    setImmediate(callback);
  },
};
