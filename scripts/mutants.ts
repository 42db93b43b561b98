/**
 * Shows that the simulator catches real protocol bugs. Each mutant is a classic Raft
 * mistake applied to a throw-away copy of the sources (the shipped code has no bug
 * switches); the simulator then runs seeds from 1 until it reports a violation, and the
 * table says how many seeds that took.
 *
 *   npx tsx scripts/mutants.ts [--max-seeds 2000] [--only <words in the mutant's name>]
 *
 * Mistakes of the runtime and of storage run under the whole-node simulator, which runs
 * that code; the rest under the core simulator, which is faster.
 */

import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

import { MUTANTS, type Mutant } from "./mutants-list.js";

const root = resolve(import.meta.dirname, "..");
const maxSeeds = process.argv.includes("--max-seeds")
  ? Number(process.argv[process.argv.indexOf("--max-seeds") + 1])
  : 2000;
if (!Number.isSafeInteger(maxSeeds) || maxSeeds < 1) {
  throw new Error("--max-seeds: expected a positive integer");
}
const only = process.argv.includes("--only")
  ? (process.argv[process.argv.indexOf("--only") + 1] ?? "")
  : "";

function runMutant(mutant: Mutant): { seeds: number | null; violation: string; seconds: number } {
  const dir = mkdtempSync(join(tmpdir(), "baton-mutant-"));
  try {
    cpSync(join(root, "src"), join(dir, "src"), { recursive: true });
    cpSync(join(root, "package.json"), join(dir, "package.json"));
    symlinkSync(join(root, "node_modules"), join(dir, "node_modules"));
    if (mutant.file !== "") {
      const path = join(dir, mutant.file);
      let text = readFileSync(path, "utf8");
      for (const edit of mutant.also === undefined ? [mutant] : [mutant, mutant.also]) {
        if (!text.includes(edit.find))
          throw new Error(`mutant "${mutant.name}": pattern not found in ${mutant.file}`);
        text = text.replace(edit.find, edit.replace);
      }
      writeFileSync(path, text);
    }
    if (mutant.test !== undefined) return runTest(dir, mutant.test);
    const probe = join(dir, "probe.ts");
    const run =
      mutant.wholeNode === true
        ? `await runWholeNode(seed, ${mutant.options ?? "{}"})`
        : "runSeed(seed)";
    writeFileSync(
      probe,
      `import { runSeed } from "./src/sim/run.ts";
import { runWholeNode } from "./src/sim/whole-node.ts";
for (let seed = 1; seed <= ${maxSeeds}; seed++) {
  const r = ${run};
  if (!r.ok) { console.log(JSON.stringify({ seeds: seed, violation: r.violation })); process.exit(0); }
}
console.log(JSON.stringify({ seeds: null, violation: "" }));`,
    );
    const started = Date.now();
    const out = execFileSync(join(root, "node_modules/.bin/tsx"), [probe], {
      cwd: dir,
      encoding: "utf8",
    });
    const result = JSON.parse(out.trim().split("\n").pop()!) as {
      seeds: number | null;
      violation: string;
    };
    return { ...result, seconds: (Date.now() - started) / 1000 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs one test file in the mutant's copy: caught when it fails. */
function runTest(
  dir: string,
  file: string,
): { seeds: number | null; violation: string; seconds: number } {
  cpSync(join(root, "test"), join(dir, "test"), { recursive: true });
  cpSync(join(root, "vitest.config.ts"), join(dir, "vitest.config.ts"));
  const started = Date.now();
  try {
    execFileSync(join(root, "node_modules/.bin/vitest"), ["run", file], {
      cwd: dir,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    });
    return { seeds: null, violation: "", seconds: (Date.now() - started) / 1000 };
  } catch (error) {
    const out = String((error as { stdout?: string }).stdout ?? "");
    const first = out.split("\n").find((line) => line.includes("→")) ?? "the test failed";
    return {
      seeds: 0,
      violation: first.replace(/^\s*→\s*/, ""),
      seconds: (Date.now() - started) / 1000,
    };
  }
}

console.log(`| mutant | caught after | first violation |`);
console.log(`| --- | --- | --- |`);
let missed = 0;
for (const mutant of MUTANTS.filter((m) => m.name.includes(only))) {
  const r = runMutant(mutant);
  if (r.seeds === null) missed++;
  const caught =
    r.seeds === null
      ? `NOT caught in ${mutant.test ?? `${maxSeeds} seeds`}`
      : mutant.test !== undefined
        ? `by ${mutant.test} (${r.seconds.toFixed(1)} s)`
        : `seed ${r.seeds} (${r.seconds.toFixed(1)} s)`;
  console.log(`| ${mutant.name} | ${caught} | ${r.violation.replace(/\|/g, "/").slice(0, 140)} |`);
}
process.exitCode = missed === 0 ? 0 : 1;
