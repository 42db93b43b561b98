/**
 * The campaign reads the stall warnings a node writes: the line src/app/stall-log.ts logs
 * through pino is the line src/chaos/processes.ts parses, so the two cannot drift apart.
 */

import { EventEmitter } from "node:events";
import { Writable } from "node:stream";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { logStalls } from "../../src/app/stall-log.js";
import { stallPastElection } from "../../src/chaos/processes.js";
import type { NodeEvents } from "../../src/server/node.js";

describe("chaos: stall lines", () => {
  it("stalls: a node's stall warning past its election timeout is read back with its time; shorter ones and other lines are not", () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(...String(chunk).split("\n").filter(Boolean));
        done();
      },
    });
    const node = new EventEmitter<NodeEvents>();
    const before = Date.now();
    logStalls(node, { min: 300, max: 600 }, pino({ name: "baton" }, sink).child({ node: 2 }));
    node.emit("tickDelay", 200);
    node.emit("tickDelay", 450);
    expect(lines).toHaveLength(2);
    expect(stallPastElection(lines[0]!)).toBeNull();
    const read = stallPastElection(lines[1]!);
    expect(read?.ms).toBe(450);
    expect(read?.wallAt).toBeGreaterThanOrEqual(before);
    expect(stallPastElection('{"event":"role","role":"candidate","time":1}')).toBeNull();
    expect(stallPastElection('not json "event":"stall"')).toBeNull();
  });
});
