/**
 * Benchmark of the write-ahead log: appends per second and megabytes per second with 1,
 * 16 and 256 concurrent appenders (each appends one entry and waits for sync(), so
 * throughput comes from group commit), next to the raw fdatasync rate of the same disk
 * (write 4 KiB + fdatasync in a loop), measured by this same script in the same
 * directory. Prints a table and the ratio of WAL appends to raw fdatasyncs.
 *
 *   npx tsx scripts/bench-wal.ts [--seconds 5] [--bytes 256] [--dir <path on the disk to test>]
 *
 * It only measures; it must never leave files behind (its directory is removed at the end).
 */

import { mkdtemp, open, rm } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Entry } from "../src/protocol/messages.js";
import { Wal } from "../src/storage/wal.js";

interface Options {
  readonly seconds: number;
  readonly bytes: number;
  readonly dir: string;
}

interface Row {
  readonly name: string;
  readonly opsPerSecond: number;
  readonly megabytesPerSecond: number;
  readonly fsyncsPerSecond: number;
  readonly opsPerFsync: number;
  readonly latencyMsP50: number;
  readonly latencyMsP99: number;
}

function parseOptions(argv: readonly string[]): Options {
  const value = (flag: string): string | undefined => {
    const at = argv.indexOf(flag);
    return at >= 0 ? argv[at + 1] : undefined;
  };
  return {
    seconds: Number(value("--seconds") ?? 5),
    bytes: Number(value("--bytes") ?? 256),
    dir: value("--dir") ?? tmpdir(),
  };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

/** The raw rate of the disk: 4 KiB appended and fdatasync'ed, one at a time. */
async function rawFdatasync(dir: string, seconds: number): Promise<Row> {
  const handle = await open(join(dir, "raw.bin"), "w");
  const block = Buffer.alloc(4096, 0xab);
  const latencies: number[] = [];
  const start = performance.now();
  let position = 0;
  while (performance.now() - start < seconds * 1000) {
    const t0 = performance.now();
    await handle.write(block, 0, block.length, position);
    await handle.datasync();
    latencies.push(performance.now() - t0);
    position += block.length;
  }
  const elapsed = (performance.now() - start) / 1000;
  await handle.close();
  latencies.sort((a, b) => a - b);
  const rate = latencies.length / elapsed;
  return {
    name: "raw 4 KiB write + fdatasync",
    opsPerSecond: rate,
    megabytesPerSecond: (rate * block.length) / 1e6,
    fsyncsPerSecond: rate,
    opsPerFsync: 1,
    latencyMsP50: percentile(latencies, 0.5),
    latencyMsP99: percentile(latencies, 0.99),
  };
}

/** `appenders` concurrent loops of append(one entry) + await sync(), for `seconds`. */
async function walAppenders(dir: string, appenders: number, options: Options): Promise<Row> {
  const walDir = join(dir, `wal-${appenders}`);
  const { wal } = await Wal.open(walDir, { index: 0, term: 0 }, { segmentBytes: 64 * 1024 * 1024 });
  const data = new Uint8Array(options.bytes).fill(0x5c);
  const latencies: number[] = [];
  const deadline = performance.now() + options.seconds * 1000;
  const before = { ...wal.stats };
  const start = performance.now();
  const appender = async (): Promise<void> => {
    while (performance.now() < deadline) {
      const entry: Entry = { index: wal.lastIndex() + 1, term: 1, kind: "command", data };
      const t0 = performance.now();
      wal.append([entry]);
      await wal.sync();
      latencies.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: appenders }, appender));
  const elapsed = (performance.now() - start) / 1000;
  const fsyncs = wal.stats.fdatasyncs - before.fdatasyncs;
  const written = wal.stats.bytesWritten - before.bytesWritten;
  await wal.close();
  latencies.sort((a, b) => a - b);
  return {
    name: `WAL, ${appenders} appender${appenders === 1 ? "" : "s"}`,
    opsPerSecond: latencies.length / elapsed,
    megabytesPerSecond: written / elapsed / 1e6,
    fsyncsPerSecond: fsyncs / elapsed,
    opsPerFsync: latencies.length / Math.max(1, fsyncs),
    latencyMsP50: percentile(latencies, 0.5),
    latencyMsP99: percentile(latencies, 0.99),
  };
}

function printTable(rows: readonly Row[], raw: Row, options: Options): void {
  const header = [
    "case",
    "appends/s",
    "MB/s",
    "fdatasync/s",
    "appends/fsync",
    "p50 ms",
    "p99 ms",
    "× raw fsync rate",
  ];
  const lines = rows.map((r) => [
    r.name,
    r.opsPerSecond.toFixed(0),
    r.megabytesPerSecond.toFixed(2),
    r.fsyncsPerSecond.toFixed(0),
    r.opsPerFsync.toFixed(1),
    r.latencyMsP50.toFixed(2),
    r.latencyMsP99.toFixed(2),
    (r.opsPerSecond / raw.opsPerSecond).toFixed(2),
  ]);
  console.log(
    `bench-wal: ${options.seconds} s per case, ${options.bytes}-byte entries ` +
      `(${options.bytes + 26} bytes on disk), dir ${options.dir}, ` +
      `${cpus().length} cores, Node ${process.version}\n`,
  );
  console.log(`| ${header.join(" | ")} |`);
  console.log(`| ${header.map((_h, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`);
  for (const line of lines) console.log(`| ${line.join(" | ")} |`);
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const dir = await mkdtemp(join(options.dir, "baton-bench-wal-"));
  try {
    const raw = await rawFdatasync(dir, options.seconds);
    const rows = [raw];
    for (const appenders of [1, 16, 256]) rows.push(await walAppenders(dir, appenders, options));
    printTable(rows, raw, options);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
