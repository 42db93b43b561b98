import { describe, expect, it } from "vitest";
import { CONTROL_RESERVE_MESSAGES, SendQueue } from "./send-queue.js";

describe("send queue", () => {
  it("queue: keeps FIFO order across many offers and shifts", () => {
    const queue = new SendQueue({ queueMessagesMax: 1000, queueBytesMax: 1_000_000 });
    const shifted: number[] = [];
    let offered = 0;
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 7; i++) queue.offer(Uint8Array.of(offered++ % 256, 0));
      for (let i = 0; i < 5; i++) shifted.push(queue.shift()?.[0] ?? -1);
    }
    expect(shifted).toEqual(Array.from({ length: 250 }, (_, n) => n % 256));
    expect(queue.count).toBe(100);
    expect(queue.bytes).toBe(200);
  });

  it("queue: a small frame encoded into a large shared buffer is kept as a copy, so that the queue holds what it counts", () => {
    const queue = new SendQueue({ queueMessagesMax: 1000, queueBytesMax: 1_000_000 });
    // As msgpackr hands out frames after a snapshot chunk: views into a 4 MiB buffer.
    const shared = new Uint8Array(4 * 1024 * 1024);
    const frames = Array.from({ length: 3 }, (_, n) => {
      const frame = shared.subarray(n * 100, n * 100 + 70);
      frame.fill(n + 1);
      return frame;
    });
    for (const frame of frames) queue.offer(frame);
    const kept = [queue.shift()!, queue.shift()!, queue.shift()!];
    for (const [n, frame] of kept.entries()) {
      expect(frame.buffer.byteLength).toBe(70); // not the 4 MiB buffer
      expect([...frame]).toEqual(new Array(70).fill(n + 1));
    }
    // A frame that fills most of its buffer is queued as it is (no copy of large frames).
    const large = new Uint8Array(1000).subarray(0, 900);
    queue.offer(large, true);
    expect(queue.shift()).toBe(large);
  });

  it("queue: refuses an offer beyond the count bound (3 messages)", () => {
    const queue = new SendQueue({ queueMessagesMax: 3, queueBytesMax: 1000 });
    const results = [1, 2, 3, 4].map((n) => queue.offer(Uint8Array.of(n), true));
    expect(results).toEqual([true, true, true, false]);
    expect(queue.count).toBe(3);
  });

  it("queue: bulk frames leave part of the count to control frames (a quarter, up to the reserve)", () => {
    const small = new SendQueue({ queueMessagesMax: 8, queueBytesMax: 1000 });
    const bulk = Array.from({ length: 8 }, (_, n) => small.offer(Uint8Array.of(n), true));
    expect(bulk.filter(Boolean)).toHaveLength(6);
    // A heartbeat's answer behind many small forwarded proposals still goes out.
    expect([small.offer(Uint8Array.of(9)), small.offer(Uint8Array.of(9))]).toEqual([true, true]);
    expect(small.offer(Uint8Array.of(9))).toBe(false);
    expect(small.shift()?.[0]).toBe(9);
    const large = new SendQueue({ queueMessagesMax: 4096, queueBytesMax: 1 << 20 });
    let queued = 0;
    while (large.offer(Uint8Array.of(1), true)) queued++;
    expect(queued).toBe(4096 - CONTROL_RESERVE_MESSAGES);
  });

  it("queue: refuses an offer beyond the byte bound (10 bytes)", () => {
    const queue = new SendQueue({ queueMessagesMax: 100, queueBytesMax: 10 });
    expect(queue.offer(new Uint8Array(6), true)).toBe(true);
    expect(queue.offer(new Uint8Array(5), true)).toBe(false);
    expect(queue.offer(new Uint8Array(4), true)).toBe(true);
    expect(queue.bytes).toBe(10);
    queue.shift();
    expect(queue.bytes).toBe(4);
    expect(queue.offer(new Uint8Array(5), true)).toBe(true);
  });

  it("queue: control frames overtake queued bulk frames; each lane keeps its order", () => {
    const queue = new SendQueue({ queueMessagesMax: 100, queueBytesMax: 1000 });
    queue.offer(Uint8Array.of(1), true);
    queue.offer(Uint8Array.of(2), true);
    queue.offer(Uint8Array.of(10));
    queue.offer(Uint8Array.of(3), true);
    queue.offer(Uint8Array.of(11));
    const order = Array.from({ length: 5 }, () => queue.shift()?.[0]);
    expect(order).toEqual([10, 11, 1, 2, 3]);
    expect([queue.count, queue.bytes]).toEqual([0, 0]);
  });

  it("queue: a queue full of bulk frames still takes control frames (reserve)", () => {
    const queue = new SendQueue({ queueMessagesMax: 100, queueBytesMax: 10 });
    expect(queue.offer(new Uint8Array(10), true)).toBe(true);
    expect(queue.offer(new Uint8Array(1), true)).toBe(false);
    expect(queue.offer(new Uint8Array(40))).toBe(true);
    expect(queue.bytes).toBe(50);
    expect(queue.shift()?.length).toBe(40);
  });

  it("queue: clear discards everything and reports the count", () => {
    const queue = new SendQueue({ queueMessagesMax: 10, queueBytesMax: 100 });
    queue.offer(Uint8Array.of(1));
    queue.offer(Uint8Array.of(2));
    expect(queue.clear()).toBe(2);
    expect([queue.count, queue.bytes, queue.shift()]).toEqual([0, 0, undefined]);
  });
});
