import { describe, expect, it } from "vitest";
import { runExample } from "../../examples/replicated-counter.js";

describe("examples", () => {
  it("timing: example: the replicated counter survives losing its master (no increment lost or doubled)", async () => {
    const lines: string[] = [];
    const values = await runExample(12, (line) => lines.push(line));
    expect(values).toEqual([12, 12]);
    expect(lines.some((l) => l.startsWith("stopping the master"))).toBe(true);
  }, 30_000);
});
