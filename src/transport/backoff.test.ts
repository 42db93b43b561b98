import { describe, expect, it } from "vitest";
import { reconnectDelayMs } from "./backoff.js";

const limits = { reconnectDelayMsMin: 10, reconnectDelayMsMax: 1000 };

describe("backoff", () => {
  it("backoff: the first retry comes within the minimum delay (10 ms)", () => {
    expect(reconnectDelayMs(0, limits, () => 0)).toBe(5);
    expect(reconnectDelayMs(0, limits, () => 0.999)).toBeLessThan(10);
  });

  it("backoff: doubles per failure up to the maximum (jitter in the upper half)", () => {
    const nominal = [10, 20, 40, 80, 160, 320, 640, 1000, 1000];
    nominal.forEach((delay, failures) => {
      expect(reconnectDelayMs(failures, limits, () => 0)).toBe(delay / 2);
      expect(reconnectDelayMs(failures, limits, () => 0.999_999)).toBeCloseTo(delay, 2);
    });
  });

  it("backoff: stays bounded after very many failures (10^6)", () => {
    expect(reconnectDelayMs(1_000_000, limits, () => 0.5)).toBe(750);
  });

  it("backoff: rejects a random source outside [0, 1) as a bug", () => {
    expect(() => reconnectDelayMs(0, limits, () => 1)).toThrow(/random/);
  });
});
