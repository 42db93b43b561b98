import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { Prng } from "./prng.js";

const here = dirname(fileURLToPath(import.meta.url));

describe("core purity", () => {
  it("core: no clock, timer, randomness or I/O in the core's sources", () => {
    const banned = [
      /Math\.random/,
      /Date\.now/,
      /new Date/,
      /setTimeout/,
      /setInterval/,
      /performance\.now/,
      /from "node:/,
      /process\./,
    ];
    for (const dir of [here, join(here, "../kv")]) {
      for (const file of readdirSync(dir).filter(
        (f) => f.endsWith(".ts") && !f.endsWith(".test.ts"),
      )) {
        const text = readFileSync(join(dir, file), "utf8");
        for (const pattern of banned)
          expect(pattern.test(text), `${file} uses ${pattern}`).toBe(false);
      }
    }
  });

  it("prng: the same seed gives the same sequence, another seed another one", () => {
    const a = new Prng(7);
    const b = new Prng(7);
    const c = new Prng(8);
    const xs = Array.from({ length: 100 }, () => a.nextUint32());
    expect(Array.from({ length: 100 }, () => b.nextUint32())).toEqual(xs);
    expect(Array.from({ length: 100 }, () => c.nextUint32())).not.toEqual(xs);
  });

  it("prng: int() stays in range and covers it", () => {
    const p = new Prng(1);
    const seen = new Set<number>();
    for (let i = 0; i < 10_000; i++) {
      const v = p.int(3, 9);
      expect(v).toBeGreaterThanOrEqual(3);
      expect(v).toBeLessThanOrEqual(9);
      seen.add(v);
    }
    expect(seen.size).toBe(7);
  });
});
