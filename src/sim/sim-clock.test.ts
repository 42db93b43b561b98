import { describe, expect, it } from "vitest";
import { SimClock, SimScheduler } from "./sim-clock.js";

/** A chain of `depth` awaits, through thenables and promises resolved with promises. */
async function chain(depth: number): Promise<void> {
  for (let i = 0; i < depth; i++) {
    // biome-ignore lint/suspicious/noThenProperty: a thenable that is not a promise, on purpose
    if (i % 3 === 0) await { then: (resolve: (v: number) => void) => resolve(i) };
    else if (i % 3 === 1) await new Promise((resolve) => resolve(Promise.resolve(i)));
    else await null;
  }
}

function world(): { scheduler: SimScheduler; clock: SimClock; log: string[] } {
  const scheduler = new SimScheduler();
  return { scheduler, clock: new SimClock(scheduler, 0), log: [] };
}

describe("sim clock", () => {
  it("sim clock: every reaction a step causes runs before the next step (long chains)", async () => {
    const { scheduler, clock, log } = world();
    clock.setTimeout(() => {
      void chain(200).then(() => log.push("chain done"));
      void Promise.all([chain(50), chain(120)]).then(() => log.push("all done"));
    }, 1);
    clock.setTimeout(() => log.push("next step"), 1);
    await scheduler.run(10);
    expect(log).toEqual(["all done", "chain done", "next step"]);
  });

  it("sim clock: queued microtasks and next ticks run before the next step", async () => {
    // Each alone in its step: no promise hook sees either, so each must be noticed by itself.
    const { scheduler, clock, log } = world();
    clock.setTimeout(() => {
      queueMicrotask(() => void chain(30).then(() => log.push("microtask chain done")));
    }, 1);
    clock.setTimeout(() => log.push("step 2"), 2);
    clock.setTimeout(() => {
      process.nextTick(() => void chain(30).then(() => log.push("tick chain done")));
    }, 3);
    clock.setTimeout(() => log.push("step 4"), 4);
    await scheduler.run(10);
    expect(log).toEqual(["microtask chain done", "step 2", "tick chain done", "step 4"]);
    // The runner put the real functions back.
    expect(process.nextTick.name).toBe("nextTick");
    expect(queueMicrotask.name).toBe("queueMicrotask");
  });

  it("sim clock: a rejection nobody handles is reported before the next step", async () => {
    const { scheduler, clock, log } = world();
    // The test runner's own listeners would count the rejection as this test's failure.
    const listeners = process.listeners("unhandledRejection");
    process.removeAllListeners("unhandledRejection");
    const onUnhandled = (reason: unknown) => log.push(`unhandled ${(reason as Error).message}`);
    process.on("unhandledRejection", onUnhandled);
    const handledLater = () => {};
    process.on("rejectionHandled", handledLater);
    let late: Promise<void> | null = null;
    try {
      clock.setTimeout(() => {
        late = chain(5).then(() => Promise.reject(new Error("lost")));
      }, 1);
      clock.setTimeout(() => {
        log.push("next step");
        late?.catch(() => log.push("handled too late"));
      }, 2);
      await scheduler.run(10);
    } finally {
      process.off("unhandledRejection", onUnhandled);
      for (const listener of listeners) process.on("unhandledRejection", listener);
    }
    expect(log).toEqual(["unhandled lost", "next step", "handled too late"]);
    process.off("rejectionHandled", handledLater);
  });
});
