import { describe, expect, it } from "vitest";
import { parseBenchOptions } from "../../bench/main.js";

describe("npm run bench options", () => {
  it("passes every --node-flag to the nodes, in order, and none by default", () => {
    expect(parseBenchOptions([]).nodeFlags).toEqual([]);
    const options = parseBenchOptions([
      "--node-flag=--no-opt",
      "--node-flag",
      "--max-semi-space-size=32",
    ]);
    expect(options.nodeFlags).toEqual(["--no-opt", "--max-semi-space-size=32"]);
  });

  it("refuses --per-second without wrk", () => {
    expect(() => parseBenchOptions(["--per-second"])).toThrow(/--per-second needs --generator wrk/);
  });
});
