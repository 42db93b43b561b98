/**
 * Virtual time for code that runs on promises: the scheduler keeps one agenda of callbacks
 * in time order (ties in the order they were set), and `SimClock` is one simulated
 * process's view of it, a `Clock` the runtime and storage take in place of the real one.
 *
 * The runner takes one callback at a time and, after each, lets every promise reaction it
 * caused run to completion before it takes the next: the async code of the runtime then
 * interleaves exactly as the agenda says, and a run is a pure function of its seed. It
 * never reads the real clock, and nothing it schedules reaches a real timer.
 *
 * Draining takes no real macrotask turn when only promise reactions ran (see
 * `ReactionWatch`): what is left at the end of a turn, the process's next ticks and its
 * report of unhandled rejections, is then run as the end of a turn runs it. A step that
 * created anything else (a next tick, a queued microtask, a real timer or file operation)
 * still takes a real turn. Either way the same reactions run in the same order.
 */

import { promiseHooks } from "node:v8";
import { assert } from "../shared/assert.js";
import type { Clock, Timer } from "../shared/clock.js";
import { EventQueue } from "./event-queue.js";

/** Most callbacks one run may take: a run that never ends is a bug, not a long run. */
const STEPS_MAX = 50_000_000;

interface Entry {
  readonly timer: SimTimer;
  /** The timer's generation when this entry was pushed; stale entries are skipped. */
  readonly generation: number;
}

/** Lets every queued promise reaction run: resolves after a real macrotask turn. */
const realSetImmediate = globalThis.setImmediate;
export function drainMicrotasks(): Promise<void> {
  return new Promise((resolve) => realSetImmediate(resolve));
}

/**
 * Node's own end of a macrotask (undocumented, present since Node 0.x): it runs queued
 * next ticks and reports unhandled rejections, as the event loop does after a callback.
 */
const endOfTurn = (process as unknown as { _tickCallback?: () => void })._tickCallback;

const RESOLVED = Promise.resolve();

/**
 * Tells, without a real macrotask turn, when the microtask queue is empty. A marker
 * reaction is queued at the end of the queue; when it runs, every job that was queued
 * before it has run, so if no other promise reaction ran in between (a V8 promise hook
 * counts them), the queue held nothing but the marker. Jobs no promise hook sees (a
 * `queueMicrotask` callback, a next tick) are noticed by wrapping the two functions
 * that queue them while the runner runs; after those the runner takes a real turn
 * instead. (An async hook would see them too, but any `init` hook makes Node track every
 * promise, which costs a third of a whole-node run.)
 */
class ReactionWatch {
  private reactions = 0;
  private marker: Promise<boolean> | null = null;
  /** A next tick or a queued microtask was created since the last real turn. */
  foreign = false;
  private stopBefore: (() => void) | null = null;
  private saved: {
    nextTick: typeof process.nextTick;
    queueMicrotask: typeof queueMicrotask;
  } | null = null;

  start(): void {
    this.foreign = false;
    this.stopBefore = promiseHooks.onBefore((promise) => {
      if (promise !== this.marker) this.reactions++;
    }) as () => void;
    const saved = { nextTick: process.nextTick, queueMicrotask: globalThis.queueMicrotask };
    this.saved = saved;
    process.nextTick = ((...args: Parameters<typeof process.nextTick>) => {
      this.foreign = true;
      saved.nextTick(...args);
    }) as typeof process.nextTick;
    globalThis.queueMicrotask = (callback: () => void) => {
      this.foreign = true;
      saved.queueMicrotask(callback);
    };
  }

  stop(): void {
    if (this.saved !== null) {
      process.nextTick = this.saved.nextTick;
      globalThis.queueMicrotask = this.saved.queueMicrotask;
      this.saved = null;
    }
    this.stopBefore?.();
    this.stopBefore = null;
    this.marker = null;
  }

  /** Resolves true when the queue was empty but for the marker (nothing ran before it). */
  empty(): Promise<boolean> {
    const seen = this.reactions;
    const marker = RESOLVED.then(() => this.reactions === seen);
    this.marker = marker;
    return marker;
  }
}

export class SimScheduler {
  /** Virtual milliseconds since the start of the run. */
  now = 0;
  steps = 0;
  /** Runs after each callback and the promise reactions it caused: per-step checkers. */
  onStep: (() => void) | null = null;
  /** A leak detector, told when the runner itself takes a real macrotask turn. */
  guard: { beforeTurn(): void; afterTurn(): void } | null = null;
  private readonly queue = new EventQueue<Entry>();
  /** The callback running now threw: the run stops with that error. */
  private failure: unknown = null;
  private hasFailure = false;
  /** Drains without real turns; null where Node's end of turn is not available. */
  private readonly watch = endOfTurn === undefined ? null : new ReactionWatch();

  /** Schedules `timer` to fire `ms` from now (its current generation). */
  push(timer: SimTimer, ms: number): void {
    assert(Number.isFinite(ms), `sim clock: timer delay ${ms} is not a number`);
    this.queue.push(this.now + Math.max(0, ms), { timer, generation: timer.generation });
  }

  /** Runs callbacks until virtual time `untilMs` or until `stop` returns true. */
  async run(untilMs: number, stop: () => boolean = () => false): Promise<void> {
    this.watch?.start();
    try {
      await this.runWatched(untilMs, stop);
    } finally {
      this.watch?.stop();
    }
  }

  private async runWatched(untilMs: number, stop: () => boolean): Promise<void> {
    for (;;) {
      if (this.hasFailure) throw this.failure;
      if (stop()) return;
      let time = this.queue.peekTime();
      if (time === undefined || time > untilMs) {
        // Reactions still queued (a caller's own awaits) may set a timer or satisfy `stop`.
        await this.turn();
        if (this.hasFailure || stop()) continue;
        time = this.queue.peekTime();
        if (time === undefined || time > untilMs) break;
      }
      const item = this.queue.pop()!;
      const { timer, generation } = item.event;
      if (timer.generation !== generation || !timer.live()) continue;
      this.steps++;
      assert(this.steps <= STEPS_MAX, "sim clock: the run took more steps than any run should");
      this.now = item.time;
      timer.fire();
      await this.drain();
      if (this.onStep !== null && !this.hasFailure) {
        try {
          this.onStep();
        } catch (error) {
          this.fail(error);
        }
      }
    }
    if (this.hasFailure) throw this.failure;
    this.now = Math.max(this.now, untilMs);
  }

  /**
   * Lets every reaction the step caused run, then what the end of a real macrotask runs
   * (next ticks, the report of unhandled rejections); a real turn when the step created
   * anything but promises.
   */
  private async drain(): Promise<void> {
    const watch = this.watch;
    if (watch === null) return this.turn();
    let empty = await watch.empty();
    while (!empty) empty = await watch.empty();
    if (watch.foreign) return this.turn();
    endOfTurn!();
  }

  /** Lets every pending promise reaction run (a real macrotask turn). */
  private async turn(): Promise<void> {
    // The runner's own real immediate is not a leak of the code under simulation, and what
    // runs in a real turn (a test runner's timers, say) is not the simulated code's either.
    this.guard?.beforeTurn();
    await drainMicrotasks();
    this.guard?.afterTurn();
    if (this.watch !== null) this.watch.foreign = false;
  }

  /** Whether anything is scheduled at all. */
  get idle(): boolean {
    return this.queue.size === 0;
  }

  /** An error thrown by a callback: the run stops and `run` rethrows it. */
  fail(error: unknown): void {
    if (this.hasFailure) return;
    this.hasFailure = true;
    this.failure = error;
  }
}

export class SimTimer implements Timer {
  generation = 0;
  cleared = false;

  constructor(
    private readonly clock: SimClock,
    private readonly callback: () => void,
    readonly delayMs: number,
    private readonly repeat: boolean,
  ) {}

  live(): boolean {
    return !this.cleared && !this.clock.killed;
  }

  fire(): void {
    if (this.clock.paused) {
      this.clock.defer(this);
      return;
    }
    if (this.repeat) this.clock.scheduler.push(this, this.delayMs);
    else this.cleared = true;
    this.clock.run(this.callback);
  }

  refresh(): Timer {
    if (this.cleared && !this.repeat) this.cleared = false;
    this.generation++;
    this.clock.scheduler.push(this, this.delayMs);
    return this;
  }

  unref(): Timer {
    return this;
  }

  clear(): void {
    this.cleared = true;
    this.generation++;
  }
}

/**
 * One simulated process's clock: its wall clock is virtual time plus an offset the
 * nemesis may jump, its monotonic clock is virtual time, and `kill()` (a crash) cancels
 * every timer it set, so a dead process never runs again.
 */
export class SimClock implements Clock {
  killed = false;
  /** A stopped process (SIGSTOP, a long pause): its timers wait until it resumes. */
  paused = false;
  private readonly deferred: SimTimer[] = [];
  /** Milliseconds this process's wall clock is ahead of virtual time (skew and jumps). */
  wallOffsetMs: number;

  constructor(
    readonly scheduler: SimScheduler,
    wallOriginMs: number,
  ) {
    this.wallOffsetMs = wallOriginMs;
  }

  wallMs(): number {
    return Math.floor(this.scheduler.now + this.wallOffsetMs);
  }

  monotonicMs(): number {
    return this.scheduler.now;
  }

  setTimeout(callback: () => void, ms: number): Timer {
    const timer = new SimTimer(this, callback, ms, false);
    if (!this.killed) this.scheduler.push(timer, ms);
    return timer;
  }

  clearTimeout(timer: Timer | null | undefined): void {
    if (timer === null || timer === undefined) return;
    assert(timer instanceof SimTimer, "sim clock: clearing a timer it did not set");
    timer.clear();
  }

  setInterval(callback: () => void, ms: number): Timer {
    assert(ms > 0, `sim clock: interval of ${ms} ms`);
    const timer = new SimTimer(this, callback, ms, true);
    if (!this.killed) this.scheduler.push(timer, ms);
    return timer;
  }

  clearInterval(timer: Timer | null | undefined): void {
    this.clearTimeout(timer);
  }

  setImmediate(callback: () => void): void {
    this.setTimeout(callback, 0);
  }

  /** A timer due while the process is stopped: it fires once the process resumes. */
  defer(timer: SimTimer): void {
    this.deferred.push(timer);
  }

  /** Stops the process: no timer of it fires until `resume`. */
  pause(): void {
    this.paused = true;
  }

  /** The process runs again: timers that came due meanwhile fire now, in order, once. */
  resume(): void {
    this.paused = false;
    for (const timer of this.deferred.splice(0)) {
      if (timer.live()) this.scheduler.push(timer, 0);
    }
  }

  /** The process died: none of its timers fires again. */
  kill(): void {
    this.killed = true;
  }

  /** Runs a callback of this process; what it throws stops the run with that error. */
  run(callback: () => void): void {
    try {
      callback();
    } catch (error) {
      this.scheduler.fail(error);
    }
  }
}
