import { describe, expect, it } from "vitest";
import { LogThrottle } from "./log-throttle.js";

describe("log throttle", () => {
  it("throttle: demotes repeats of a key within the interval (10 s)", () => {
    let now = 0;
    const throttle = new LogThrottle(10_000, () => now);
    expect(throttle.level("a")).toBe("warn");
    now = 9_999;
    expect(throttle.level("a")).toBe("debug");
    expect(throttle.level("b")).toBe("warn");
    now = 10_000;
    expect(throttle.level("a")).toBe("warn");
  });
});
