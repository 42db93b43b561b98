/**
 * The crash test: a child process (crash-child.ts) appends under load and prints every
 * acknowledged batch; this test kills it with SIGKILL at random moments, many times,
 * and after each kill opens the data directory itself and checks that recovery kept
 * every acknowledged entry with the right content (and any snapshot intact). Kills land
 * during recovery, appends, segment rolls, snapshots and compactions.
 *
 * It needs real time and real processes, hence the `timing:` name. The child is bundled
 * once with esbuild (which tsx brings along) because starting tsx costs about a second
 * per process; without esbuild it falls back to `node --import tsx`. Replay a failure
 * with CRASH_SEED=<seed>; CRASH_RUNS sets the number of kills (default 20).
 */

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DiskStorage } from "../../src/storage/disk-storage.js";
import { dataFor, makeTempDir, removeTempDirs } from "./helpers.js";

const here = dirname(fileURLToPath(import.meta.url));
const childSource = join(here, "crash-child.ts");
const walSegmentBytes = 64 * 1024;
const snapshotBytes = 40_000;
const runs = Number(process.env.CRASH_RUNS ?? 20);
const seed = Number(process.env.CRASH_SEED ?? Math.floor(Math.random() * 1e9));

let bundleDir: string | null = null;
let childCommand: string[] = [];

/** mulberry32: a tiny seeded generator, so a failing schedule of kills replays exactly. */
function prng(state: number): () => number {
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

beforeAll(async () => {
  try {
    const esbuild = await import("esbuild");
    bundleDir = await mkdtemp(join(tmpdir(), "baton-crash-child-"));
    const outfile = join(bundleDir, "crash-child.mjs");
    await esbuild.build({
      entryPoints: [childSource],
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      outfile,
      logLevel: "silent",
    });
    childCommand = [outfile];
  } catch {
    childCommand = ["--import", "tsx", childSource];
  }
});

afterAll(async () => {
  if (bundleDir !== null) await rm(bundleDir, { recursive: true, force: true });
});

afterEach(removeTempDirs);

interface ChildRun {
  readonly child: ChildProcess;
  readonly ready: Promise<void>;
  readonly exited: Promise<number | null>;
  stderr: string;
}

/** Starts the child for `run`; every ack it prints is recorded in `acked` (index -> term). */
function startChild(dir: string, run: number, acked: Map<number, number>): ChildRun {
  const args = [...childCommand, dir, String(run), String(walSegmentBytes), String(snapshotBytes)];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  let markReady: () => void = () => {};
  const ready = new Promise<void>((resolve) => {
    markReady = resolve;
  });
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  void exited.then(() => markReady());
  const state: ChildRun = { child, ready, exited, stderr: "" };
  let pending = "";
  child.stdout!.on("data", (data: Buffer) => {
    const lines = (pending + data.toString("utf8")).split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) {
      const [what, a, b, c] = line.split(" ");
      if (what === "ready") markReady();
      if (what !== "ack") continue;
      for (let i = 0; i < Number(b); i++) acked.set(Number(a) + i, Number(c));
    }
  });
  child.stderr!.on("data", (data: Buffer) => {
    state.stderr += data.toString("utf8");
  });
  return state;
}

async function sleep(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const chunk of chunks) parts.push(chunk);
  return Buffer.concat(parts);
}

/** Opens the directory as the next start-up would, and checks every acknowledged entry. */
async function verify(dir: string, acked: Map<number, number>, context: string): Promise<string[]> {
  const opened = await DiskStorage.open(dir, { config: { walSegmentBytes } });
  try {
    const { snapshot, entries, hardState } = opened;
    const first = snapshot.index + 1;
    entries.forEach((entry, k) => {
      expect(entry.index, `${context}: entries are contiguous`).toBe(first + k);
    });
    for (const [index, term] of acked) {
      if (index <= snapshot.index) continue;
      const entry = entries[index - first];
      expect(entry, `${context}: acknowledged entry ${index} lost`).toBeDefined();
      expect(entry!.term, `${context}: entry ${index} term`).toBe(term);
      const expected = Buffer.from(dataFor(index, term, 600));
      expect(Buffer.from(entry!.data).equals(expected), `${context}: entry ${index} data`).toBe(
        true,
      );
      expect(hardState.term, `${context}: durable term behind the log`).toBeGreaterThanOrEqual(
        term,
      );
    }
    if (snapshot.index > 0) {
      const data = await collect(opened.storage.readSnapshot()!.chunks());
      const expected = Buffer.from(dataFor(snapshot.index, 0, snapshotBytes + 1));
      expect(data.equals(expected), `${context}: snapshot ${snapshot.index} content`).toBe(true);
    }
    return [...opened.warnings];
  } finally {
    await opened.storage.close();
  }
}

describe("crash recovery", () => {
  it(`timing: crash: every acknowledged entry survives SIGKILL at random moments (${runs} kills)`, async () => {
    const random = prng(seed);
    const dir = await makeTempDir("baton-crash-");
    const acked = new Map<number, number>();
    let torn = 0;
    for (let run = 1; run <= runs; run++) {
      const context = `seed ${seed}, run ${run} (replay: CRASH_SEED=${seed})`;
      const childRun = startChild(dir, run, acked);
      // One kill in five lands at a random moment of start-up and recovery; the rest
      // land while the child is busy appending.
      if (random() < 0.2) await sleep(random() * 150);
      else {
        await childRun.ready;
        await sleep(20 + random() * 250);
      }
      childRun.child.kill("SIGKILL");
      const code = await childRun.exited;
      expect(childRun.stderr, context).toBe("");
      expect(code, `${context}: the child exited by itself`).toBeNull();
      const warnings = await verify(dir, acked, context);
      torn += warnings.filter((w) => /torn record/.test(w)).length;
    }
    expect(acked.size, `seed ${seed}: the child acknowledged nothing`).toBeGreaterThan(100);
    console.info(
      `crash test: seed ${seed}, ${runs} kills, ${acked.size} acknowledged entries, ${torn} torn tails trimmed`,
    );
  }, 120_000);
});
