import { describe, expect, it } from "vitest";
import { AssertionError } from "../shared/assert.js";
import { ExpiringTable } from "./expiring-table.js";

const ids = (table: ExpiringTable<number>): string[] => Array.from(table.entries(), ([id]) => id);

describe("expiring table", () => {
  it("expiring table: evicts the least recently used entry when full (use refreshes)", () => {
    const table = new ExpiringTable<number>(3, 1000);
    table.set("a", 1, 0);
    table.set("b", 2, 1);
    table.set("c", 3, 2);
    table.set("a", 4, 3);
    table.set("d", 5, 4);
    expect(ids(table)).toEqual(["c", "a", "d"]);
    expect(table.get("b", 4)).toBeUndefined();
    expect(table.get("a", 4)).toBe(4);
  });

  it("expiring table: treats expired entries as absent before removing them (bounded work)", () => {
    const table = new ExpiringTable<number>(10, 100);
    for (let i = 0; i < 5; i++) table.set(`e${i}`, i, i);
    table.set("live", 9, 50);
    expect(table.get("e0", 100)).toBeUndefined();
    expect(table.get("e1", 100)).toBe(1);
    expect(table.expire(200, 2)).toBe(2);
    expect(ids(table)).toEqual(["e2", "e3", "e4", "live"]);
    expect(table.get("e2", 200)).toBeUndefined();
    expect(table.expire(149, 10)).toBe(3);
    expect(ids(table)).toEqual(["live"]);
  });

  it("expiring table: refuses time going backwards (bug) and bad loads (corrupt snapshot)", () => {
    const table = new ExpiringTable<number>(10, 100);
    table.set("a", 1, 10);
    expect(() => table.set("b", 2, 9)).toThrow(AssertionError);
    const loaded = new ExpiringTable<number>(10, 100);
    expect(loaded.load("a", 1, 5)).toBe(true);
    expect(loaded.load("a", 1, 6)).toBe(false);
    expect(loaded.load("b", 1, 4)).toBe(false);
    expect(loaded.load("b", 1, 5)).toBe(true);
  });
});
