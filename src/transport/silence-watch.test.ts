import { expect, it } from "vitest";
import type { Clock, Timer } from "../shared/clock.js";
import { SilenceWatch } from "./silence-watch.js";

/** A clock whose time moves only when told, with one interval timer fired by hand. */
function handClock() {
  let now = 0;
  let tick: (() => void) | null = null;
  const timer: Timer = { refresh: () => timer, unref: () => timer };
  const clock: Clock = {
    wallMs: () => now,
    monotonicMs: () => now,
    setTimeout: () => timer,
    clearTimeout: () => {},
    setInterval: (callback) => {
      tick = callback;
      return timer;
    },
    clearInterval: () => {
      tick = null;
    },
    setImmediate: () => {},
  };
  return {
    clock,
    /** Moves time on by `ms` and fires the interval's callback. */
    tickAfter(ms: number) {
      now += ms;
      tick?.();
    },
    get stopped() {
      return tick === null;
    },
  };
}

const LIMITS = { pingIntervalMs: 100, peerSilenceMsMax: 500 };

it("silence watch: a peer heard within the limit is never silent; one unheard for the limit is", () => {
  const hand = handClock();
  const ticks: (number | null)[] = [];
  const watch = new SilenceWatch(hand.clock, LIMITS, (silent) => ticks.push(silent));
  for (let i = 0; i < 20; i++) {
    hand.tickAfter(100);
    if (i % 4 === 0) watch.heard();
  }
  expect(ticks.every((t) => t === null)).toBe(true);
  ticks.length = 0;
  watch.heard();
  for (let i = 0; i < 6; i++) hand.tickAfter(100);
  expect(ticks).toEqual([null, null, null, null, 500, 600]);
  watch.stop();
  expect(hand.stopped).toBe(true);
});

it("silence watch: time this process stood still is not held against the peer", () => {
  const hand = handClock();
  const ticks: (number | null)[] = [];
  new SilenceWatch(hand.clock, LIMITS, (silent) => ticks.push(silent));
  hand.tickAfter(100);
  // A 3-second pause of this process: the first tick after it starts the count over,
  // because what the peer sent meanwhile has not been read yet.
  hand.tickAfter(3000);
  expect(ticks).toEqual([null, null]);
  for (let i = 0; i < 5; i++) hand.tickAfter(100);
  expect(ticks.slice(2)).toEqual([null, null, null, null, 500]);
});
