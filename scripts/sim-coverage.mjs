#!/usr/bin/env node
// Which lines of the production code the whole-node simulator never runs: runs a range of
// seeds under V8's own coverage (NODE_V8_COVERAGE, block counts) and maps each line of the
// built JavaScript back to its TypeScript line through the build's source maps. A source
// line counts as run when any of its JavaScript ran; one that never ran is listed with its
// text, so that a reader sees which paths the seeds do not reach (docs/simulator.md, "What
// the seeds reach").
//
//   npm run build && node scripts/sim-coverage.mjs [--seeds 1000] [--from 5000001] [--out FILE]
//
// One process (--jobs 1), so that one coverage file holds the run; about 8 seeds a second.
// The summary goes to stdout, the listing to --out (default results/sim-coverage.txt).

import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { SourceMap } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: {
    seeds: { type: "string", default: "1000" },
    from: { type: "string", default: "5000001" },
    out: { type: "string", default: join(root, "results", "sim-coverage.txt") },
  },
});
/** The production code's directories the report covers, and the simulator's own. */
const PRODUCTION = ["core", "server", "storage", "kv", "transport", "shared"];
const ALL = [...PRODUCTION, "sim"];

const dist = join(root, "dist");
const coverage = mkdtempSync(join(tmpdir(), "baton-sim-coverage-"));
try {
  process.stderr.write(
    `running ${values.seeds} whole-node seeds from ${values.from} under coverage…\n`,
  );
  const run = spawnSync(
    process.execPath,
    [
      // V8 may flush the bytecode of a function idle for a while, and its counts with it:
      // one run of 1,000 seeds reported most of the code never run; the next three did not.
      "--no-flush-bytecode",
      join(dist, "cli", "main.js"),
      "sim",
      "--whole-node",
      "--seeds",
      values.seeds,
      "--from",
      values.from,
      "--jobs",
      "1",
    ],
    { env: { ...process.env, NODE_V8_COVERAGE: coverage }, stdio: ["ignore", "pipe", "inherit"] },
  );
  const summary = run.stdout
    .toString()
    .split("\n")
    .filter((l) => !l.includes(" done, "));
  process.stdout.write(`${summary.join("\n")}\n`);
  if (run.status !== 0) {
    process.stderr.write(`sim-coverage: the simulator exited ${run.status}; no report\n`);
    process.exit(1);
  }
  const report = analyse(coverage);
  mkdirSync(dirname(values.out), { recursive: true });
  writeFileSync(values.out, report.listing);
  process.stdout.write(
    `\nlines never run, of lines with code (listing: ${relative(process.cwd(), values.out)}):\n`,
  );
  for (const row of report.rows) process.stdout.write(`${row}\n`);
} finally {
  if (process.env.SIM_COVERAGE_KEEP === undefined)
    rmSync(coverage, { recursive: true, force: true });
  else process.stderr.write(`coverage files kept in ${coverage}\n`);
}

/** Per source file: the lines with code, and those of them that never ran. */
function analyse(dir) {
  const scripts = new Map(); // built file URL -> function coverage of each process
  for (const name of readdirSync(dir)) {
    for (const script of JSON.parse(readFileSync(join(dir, name), "utf8")).result) {
      const prefix = pathToFileURL(`${dist}/`).href;
      if (!script.url.startsWith(prefix)) continue;
      const rel = script.url.slice(prefix.length);
      if (!ALL.some((d) => rel.startsWith(`${d}/`))) continue;
      scripts.set(script.url, [...(scripts.get(script.url) ?? []), script.functions]);
    }
  }
  const run = new Map(); // source path -> lines that ran
  const code = new Map(); // source path -> lines with code
  for (const [url, processes] of scripts) {
    const path = fileURLToPath(url);
    const text = readFileSync(path, "utf8");
    const ran = ranOffsets(text.length, processes);
    const map = new SourceMap(JSON.parse(readFileSync(`${path}.map`, "utf8")));
    let offset = 0;
    const lines = text.split("\n");
    for (let line = 0; line < lines.length; line++) {
      const t = lines[line];
      const first = t.search(/\S/);
      if (first >= 0 && !/^(\/\/|\/\*|\*|[}\])]+[;,)]*$)/.test(t.trim())) {
        const entry = map.findEntry(line, first);
        if (entry?.originalSource) {
          const source = relative(root, resolve(dirname(path), entry.originalSource));
          const at = entry.originalLine + 1;
          if (!code.has(source)) code.set(source, new Set());
          if (!run.has(source)) run.set(source, new Set());
          code.get(source).add(at);
          for (let c = first; c < t.length; c++) {
            if (!/\s/.test(t[c]) && ran[offset + c] === 1) {
              run.get(source).add(at);
              break;
            }
          }
        }
      }
      offset += t.length + 1;
    }
  }
  const rows = [];
  let listing = "";
  for (const source of [...code.keys()].sort()) {
    if (source.endsWith(".test.ts")) continue;
    const never = [...code.get(source)]
      .filter((l) => !run.get(source).has(l))
      .sort((a, b) => a - b);
    const total = code.get(source).size;
    rows.push(`${String(never.length).padStart(5)} of ${String(total).padStart(5)}  ${source}`);
    if (never.length === 0) continue;
    const text = readFileSync(join(root, source), "utf8").split("\n");
    listing += `\n=== ${source}: ${never.length} of ${total} lines never run\n`;
    let previous = -2;
    for (const l of never) {
      if (l !== previous + 1) listing += "  ...\n";
      listing += `${String(l).padStart(5)}: ${text[l - 1]}\n`;
      previous = l;
    }
  }
  return { rows, listing };
}

/**
 * 1 for each character of the built file that ran in any process. V8 lists a function's
 * ranges outermost first, each nested one overriding its enclosing count.
 */
function ranOffsets(length, processes) {
  const ran = new Uint8Array(length);
  for (const functions of processes) {
    const counts = new Int32Array(length).fill(-1);
    for (const fn of functions) {
      for (const range of fn.ranges)
        counts.fill(range.count, range.startOffset, Math.min(range.endOffset, length));
    }
    for (let i = 0; i < length; i++) if (counts[i] > 0) ran[i] = 1;
  }
  return ran;
}
