import { describe, expect, it } from "vitest";
import { AssertionError } from "../shared/assert.js";
import { ExpiringTable } from "./expiring-table.js";

const ids = (table: ExpiringTable<number>): string[] => Array.from(table.entries(), ([id]) => id);

describe("expiring table", () => {
  it("expiring table: a full table has no room until its oldest entry expires (use refreshes)", () => {
    const table = new ExpiringTable<number>(3, 1000);
    table.set("a", 1, 0);
    table.set("b", 2, 1);
    table.set("c", 3, 2);
    table.set("a", 4, 3);
    expect(ids(table)).toEqual(["b", "c", "a"]);
    expect(table.oldestExpiryMs()).toBe(1001);
    expect(table.hasRoom(1000)).toBe(false);
    expect(() => table.set("d", 5, 1000)).toThrow(AssertionError);
    // A live entry is never removed to make room; an expired oldest one is.
    expect(ids(table)).toEqual(["b", "c", "a"]);
    table.set("c", 6, 1000);
    expect(table.hasRoom(1001)).toBe(true);
    expect(ids(table)).toEqual(["a", "c"]);
    table.set("d", 5, 1001);
    expect(table.get("a", 1001)).toBe(4);
    expect(new ExpiringTable<number>(1, 10).oldestExpiryMs()).toBeNull();
  });

  it("expiring table: a table loaded past its count removes expired entries until it has room, live ones never", () => {
    const table = new ExpiringTable<number>(2, 100);
    for (let i = 0; i < 4; i++) expect(table.load(`e${i}`, i, i)).toBe(true);
    // At 101 only e0 and e1 have expired: removed, and the two live ones fill the table.
    expect(table.hasRoom(101)).toBe(false);
    expect(ids(table)).toEqual(["e2", "e3"]);
    // At 103 e2 has expired too: one removed is room.
    expect(table.hasRoom(103)).toBe(true);
    expect(ids(table)).toEqual(["e3"]);
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
