import { describe, expect, it } from "vitest";
import { Prng } from "../core/prng.js";
import { EventQueue } from "./event-queue.js";

describe("event queue", () => {
  it("event queue: pops in time order, ties in insertion order (random pushes and pops)", () => {
    const prng = new Prng(7);
    const queue = new EventQueue<number>();
    const reference: { time: number; seq: number }[] = [];
    let seq = 0;
    for (let round = 0; round < 5000; round++) {
      if (prng.chance(0.55)) {
        // Few distinct times, so that ties are common.
        const time = prng.int(0, 200);
        queue.push(time, seq);
        reference.push({ time, seq });
        seq++;
      } else {
        reference.sort((a, b) => a.time - b.time || a.seq - b.seq);
        const want = reference.shift();
        const got = queue.pop();
        expect(got === undefined ? undefined : { time: got.time, seq: got.event }).toEqual(want);
      }
      expect(queue.size).toBe(reference.length);
      expect(queue.peekTime()).toBe(
        reference.length === 0 ? undefined : Math.min(...reference.map((r) => r.time)),
      );
    }
  });
});
