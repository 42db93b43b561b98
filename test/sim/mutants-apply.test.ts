/**
 * Every mutant of `scripts/mutants.ts` must still find the text it replaces: a mutant whose
 * text a refactor changed would fail its run ("pattern not found"), and one whose text
 * appears but no longer means the mistake would pass it silently. This checks the first
 * at every test run; the table in docs/simulator.md is what a full run measures.
 */

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../../harness/processes.js";
import { MUTANTS } from "../../scripts/mutants-list.js";

describe("mutants", () => {
  it("mutants: each one's text is in today's sources, once", () => {
    const stale: string[] = [];
    for (const mutant of MUTANTS) {
      if (mutant.file === "") continue; // a negative control: a simulator switch, no edit
      const text = readFileSync(join(REPO_ROOT, mutant.file), "utf8");
      for (const edit of mutant.also === undefined ? [mutant] : [mutant, mutant.also]) {
        const found = text.split(edit.find).length - 1;
        if (found !== 1) stale.push(`${mutant.name}: found ${found} times in ${mutant.file}`);
      }
    }
    expect(stale).toEqual([]);
    expect(MUTANTS.length).toBeGreaterThan(30);
  });
});
