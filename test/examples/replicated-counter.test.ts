import { describe, expect, it } from "vitest";
import { runExample } from "../../examples/replicated-counter.js";

describe("examples", () => {
  it("timing: example: the replicated counter survives losing its master (no increment lost or doubled)", async () => {
    const lines: string[] = [];
    const values = await runExample(12, (line) => lines.push(line));
    expect(values).toEqual([12, 12]);
    expect(lines.some((l) => l.startsWith("stopping the master"))).toBe(true);
    expect(lines.some((l) => l.includes("forwarded to node"))).toBe(true);
    // Two masters: the first one and the one that took over, each announced by its event.
    expect(lines.filter((l) => l.includes("became master")).length).toBeGreaterThanOrEqual(2);
    expect(lines.at(-2)).toMatch(/^GET \/health\/master on node \d: 200$/);
  }, 30_000);
});
