/**
 * The retry loop and its arithmetic under a fake clock: no real sleeps, every wait observed.
 */

import { describe, expect, it } from "vitest";
import {
  type AttemptFailure,
  type AttemptResult,
  backoffDelayMs,
  parseRetryAfterMs,
  type RetryClock,
  type RetryPolicy,
  retry,
} from "./retry.js";

const policy: RetryPolicy = {
  deadlineMs: 10_000,
  attemptTimeoutMs: 1000,
  retryDelayMsMin: 20,
  retryDelayMsMax: 1000,
  retryAfterMsMax: 1000,
  attemptCountMax: 1000,
};

/** A clock whose time moves only when the loop sleeps or an attempt says it took time. */
function fakeClock(random = 0.5): RetryClock & { sleeps: number[]; advance(ms: number): void } {
  let now = 0;
  const sleeps: number[] = [];
  return {
    sleeps,
    now: () => now,
    sleep: async (ms) => {
      sleeps.push(ms);
      now += ms;
    },
    random: () => random,
    advance: (ms) => {
      now += ms;
    },
  };
}

function failure(
  overrides: Partial<AttemptFailure> = {},
): Extract<AttemptResult<never>, { ok: false }> {
  return {
    ok: false,
    failure: {
      kind: "unavailable",
      endpoint: "http://n1",
      message: "HTTP 503",
      retryAfterMs: null,
      tryNextAtOnce: false,
      mayHaveApplied: false,
      cutByDeadline: false,
      ...overrides,
    },
  };
}

describe("retry: back-off", () => {
  it("retry: back-off doubles from the minimum and stays within [min, max] (any jitter)", () => {
    for (const random of [0, 0.25, 0.5, 0.999]) {
      let previousCeiling = 0;
      for (let wait = 0; wait < 40; wait++) {
        const delay = backoffDelayMs(wait, 20, 1000, random);
        expect(delay).toBeGreaterThanOrEqual(20);
        expect(delay).toBeLessThanOrEqual(1000);
        const ceiling = Math.min(1000, 20 * 2 ** wait);
        expect(delay).toBeGreaterThanOrEqual(Math.min(ceiling / 2, 1000) - 1);
        expect(ceiling).toBeGreaterThanOrEqual(previousCeiling);
        previousCeiling = ceiling;
      }
    }
    expect(backoffDelayMs(3, 20, 1000, 0)).toBe(80);
    expect(backoffDelayMs(3, 20, 1000, 0.999)).toBe(160);
    expect(backoffDelayMs(10_000, 20, 1000, 0.5)).toBeLessThanOrEqual(1000);
  });

  it("retry: Retry-After parses seconds, fractions and HTTP dates (garbage: null)", () => {
    expect(parseRetryAfterMs("1")).toBe(1000);
    expect(parseRetryAfterMs(" 0.25 ")).toBe(250);
    expect(parseRetryAfterMs(["2", "9"])).toBe(2000);
    const now = Date.parse("2025-01-01T00:00:00Z");
    expect(parseRetryAfterMs("Wed, 01 Jan 2025 00:00:03 GMT", now)).toBe(3000);
    expect(parseRetryAfterMs("Tue, 31 Dec 2024 00:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfterMs("soon")).toBeNull();
    expect(parseRetryAfterMs("-1")).toBeNull();
    expect(parseRetryAfterMs(undefined)).toBeNull();
  });
});

describe("retry: loop", () => {
  it("retry: tries every node at once before waiting (refused connections, 3 nodes)", async () => {
    const clock = fakeClock();
    let calls = 0;
    const outcome = await retry(
      async () =>
        ++calls <= 5 ? failure({ kind: "refused", tryNextAtOnce: true }) : { ok: true, value: "v" },
      policy,
      { endpointCount: 3, clock },
    );
    expect(outcome).toEqual({ ok: true, value: "v" });
    // Three immediate tries, one wait (round 0: 15 ms at jitter 0.5, floored at 20), two more.
    expect(clock.sleeps).toEqual([20]);
  });

  it("retry: waits the server's Retry-After when longer than the back-off, capped", async () => {
    const clock = fakeClock();
    let calls = 0;
    await retry<null>(
      async () => {
        calls++;
        if (calls === 1) return failure({ retryAfterMs: 300 });
        if (calls === 2) return failure({ retryAfterMs: 60_000 });
        return { ok: true, value: null };
      },
      policy,
      { endpointCount: 3, clock },
    );
    expect(clock.sleeps).toEqual([300, 1000]);
  });

  it("retry: gives up at the deadline without sleeping past it (503 forever)", async () => {
    const clock = fakeClock(0.999);
    const timeouts: number[] = [];
    const outcome = await retry(
      async ({ timeoutMs }) => {
        timeouts.push(timeoutMs);
        clock.advance(10);
        return failure();
      },
      { ...policy, deadlineMs: 2000 },
      { endpointCount: 3, clock },
    );
    expect(outcome.ok).toBe(false);
    if (outcome.ok) return;
    expect(outcome.reason).toBe("deadline");
    expect(outcome.elapsedMs).toBeLessThanOrEqual(2000);
    expect(outcome.failures).toHaveLength(timeouts.length);
    for (const sleep of clock.sleeps) expect(sleep).toBeLessThanOrEqual(1000);
  });

  it("retry: the last attempt gets only what is left of the deadline", async () => {
    const clock = fakeClock();
    const timeouts: number[] = [];
    await retry(
      async ({ timeoutMs }) => {
        timeouts.push(timeoutMs);
        clock.advance(timeoutMs);
        return failure({ kind: "lost", tryNextAtOnce: true });
      },
      { ...policy, deadlineMs: 2500 },
      { endpointCount: 3, clock },
    );
    expect(timeouts).toEqual([1000, 1000, 500]);
  });

  it("retry: stops at attemptCountMax even when the deadline is far", async () => {
    const clock = fakeClock();
    const outcome = await retry(
      async () => failure({ kind: "refused", tryNextAtOnce: true }),
      {
        ...policy,
        attemptCountMax: 7,
        deadlineMs: 1e9,
      },
      { endpointCount: 3, clock },
    );
    expect(outcome.ok).toBe(false);
    if (outcome.ok) return;
    expect(outcome.reason).toBe("attempts");
    expect(outcome.failures).toHaveLength(7);
  });

  it("retry: an aborted signal stops the loop before the next attempt (closing client)", async () => {
    const clock = fakeClock();
    const controller = new AbortController();
    let calls = 0;
    const outcome = await retry(
      async () => {
        if (++calls === 2) controller.abort();
        return failure();
      },
      policy,
      { endpointCount: 1, clock, signal: controller.signal },
    );
    expect(calls).toBe(2);
    expect(outcome).toMatchObject({ ok: false, reason: "closed" });
  });

  it("retry: a thrown error is permanent and propagates unchanged", async () => {
    const clock = fakeClock();
    const error = new Error("bad input");
    await expect(
      retry(
        async () => {
          throw error;
        },
        policy,
        { endpointCount: 3, clock },
      ),
    ).rejects.toBe(error);
  });
});
