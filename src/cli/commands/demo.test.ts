/**
 * How the demo stops its nodes. Ctrl-C reaches the demo and every node at once; a node that
 * says it is stopping on its own signal must not get another one, which could land while
 * it exits (its handlers gone) and end a clean stop "by signal".
 */

import { EventEmitter } from "node:events";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { narrate, type StoppableNode, stopAll } from "./demo.js";

class FakeNode extends EventEmitter {
  readonly signals: string[] = [];
  exited = false;

  constructor(public stopping: boolean) {
    super();
  }

  get process(): StoppableNode["process"] {
    return this as unknown as StoppableNode["process"];
  }

  kill(signal: string): boolean {
    this.signals.push(signal);
    return true;
  }

  exit(): void {
    this.exited = true;
    this.emit("exit", 0, null);
  }
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("demo: stopping its nodes", () => {
  it("leaves a node that logged its own shutdown alone, and sends SIGINT to the others", async () => {
    const own = new FakeNode(true);
    const other = new FakeNode(false);
    let done = false;
    void stopAll([own, other]).then(() => {
      done = true;
    });
    await vi.advanceTimersByTimeAsync(299);
    expect([own.signals, other.signals]).toEqual([[], []]);
    await vi.advanceTimersByTimeAsync(1);
    expect([own.signals, other.signals]).toEqual([[], ["SIGINT"]]);
    own.exit();
    other.exit();
    await vi.advanceTimersByTimeAsync(0);
    expect(done).toBe(true);
    // Nothing is sent after the exits: the force timer went with them.
    await vi.advanceTimersByTimeAsync(10_000);
    expect([own.signals, other.signals]).toEqual([[], ["SIGINT"]]);
  });

  it("sends nothing to a node that exits within the grace time", async () => {
    const node = new FakeNode(false);
    const stopping = stopAll([node]);
    await vi.advanceTimersByTimeAsync(100);
    node.exit();
    await stopping;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(node.signals).toEqual([]);
  });

  it("kills a node still running five seconds after it was asked to stop", async () => {
    const stuck = new FakeNode(true);
    const stopping = stopAll([stuck]);
    await vi.advanceTimersByTimeAsync(300 + 4999);
    expect(stuck.signals).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(stuck.signals).toEqual(["SIGKILL"]);
    stuck.exit();
    await stopping;
  });

  it("does not wait for a node that had exited already", async () => {
    const gone = new FakeNode(false);
    gone.exited = true;
    await stopAll([gone]);
    expect(gone.signals).toEqual([]);
  });
});

describe("demo: what it narrates", () => {
  afterEach(() => vi.restoreAllMocks());

  it("demo: a stall past the election timeout is told (it explains a fail-over with no fault); a shorter one is not", () => {
    const said: string[] = [];
    vi.spyOn(console, "log").mockImplementation((line: unknown) => void said.push(String(line)));
    const stall = (ms: number) =>
      JSON.stringify({
        event: "stall",
        ms,
        electionMsMin: 300,
        msg: `the event loop stalled ${ms} ms`,
      });
    expect(narrate(2, stall(160))).toBe("stall");
    expect(narrate(2, stall(420))).toBe("stall");
    expect(said).toHaveLength(1);
    expect(said[0]).toMatch(/^\d\d:\d\d:\d\d\.\d{3} {2}node 2: the event loop stalled 420 ms$/);
  });
});
