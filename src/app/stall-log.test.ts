import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import type { NodeEvents } from "../server/node.js";
import { logStalls } from "./stall-log.js";

describe("stall log", () => {
  it("stall: a tick late by half the shortest election timeout or more is a warning naming both; shorter delays are not logged", () => {
    const node = new EventEmitter<NodeEvents>();
    const lines: { fields: unknown; message: string }[] = [];
    logStalls(node, { min: 300, max: 600 }, {
      warn: (fields: unknown, message: string) => void lines.push({ fields, message }),
    } as never);
    for (const ms of [0, 12, 149.9, 150, 812.4]) node.emit("tickDelay", ms);
    expect(lines).toEqual([
      {
        fields: { event: "stall", ms: 150, electionMsMin: 300 },
        message:
          "the event loop stalled 150 ms (backups call an election after 300-600 ms without a heartbeat)",
      },
      {
        fields: { event: "stall", ms: 812, electionMsMin: 300 },
        message:
          "the event loop stalled 812 ms (backups call an election after 300-600 ms without a heartbeat)",
      },
    ]);
  });
});
