import { describe, expect, it } from "vitest";
import { percentile } from "./percentile.js";

describe("percentile", () => {
  it("percentile: nearest rank of an ascending list, ends included; null when empty", () => {
    const ten = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    expect(percentile(ten, 0)).toBe(1);
    expect(percentile(ten, 0.5)).toBe(5);
    expect(percentile(ten, 0.9)).toBe(9);
    expect(percentile(ten, 0.91)).toBe(10);
    expect(percentile(ten, 1)).toBe(10);
    expect(percentile([7], 0.99)).toBe(7);
    expect(percentile(new Float64Array([0.5, 2.5]), 0.5)).toBe(0.5);
    expect(percentile([], 0.5)).toBeNull();
  });
});
