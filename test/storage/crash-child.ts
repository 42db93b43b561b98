/**
 * The process that crash.test.ts kills. It opens a data directory, announces what it
 * recovered, then appends entries as fast as it can from several concurrent appenders
 * (so group commit and segment rolling happen), takes a snapshot and compacts now and
 * then, and prints one line per acknowledged batch:
 *
 *   ack <firstIndex> <count> <term>     printed only after sync() resolved
 *   snapshot <index>                    printed only after the snapshot is durable
 *
 * Entry content is `dataFor(index, term)`, so the parent can check every byte without
 * being told the data. This script must never print an ack before sync resolved: the
 * whole test rests on that line meaning "durable".
 *
 * Usage: node crash-child.js <dataDir> <run> <walSegmentBytes> <snapshotBytes>
 * (the run number is the term it writes; snapshot data is dataFor(index, 0, bytes + 1)).
 */

import { DiskStorage } from "../../src/storage/disk-storage.js";
import type { Storage } from "../../src/storage/storage.js";
import { command, dataFor } from "./helpers.js";

const appenderCount = 8;
const snapshotEveryEntries = 400;

function say(line: string): void {
  // Writes to a pipe are synchronous on Linux: the line is out before the next statement.
  process.stdout.write(`${line}\n`);
}

async function* snapshotChunks(index: number, bytes: number): AsyncGenerator<Uint8Array> {
  const data = dataFor(index, 0, bytes + 1);
  for (let at = 0; at < data.length; at += 8192) yield data.subarray(at, at + 8192);
}

/** Snapshot at a durable index, then compaction up to a little before it. */
async function snapshotAndCompact(
  storage: Storage,
  durable: number,
  run: number,
  bytes: number,
): Promise<void> {
  const index = durable - 20;
  if (index <= storage.snapshot().index || index < storage.firstIndex()) return;
  const term = storage.termAt(index)!;
  storage.setHardState({ term: run, votedFor: 1, commitIndex: durable });
  await storage.saveSnapshot({ index, term }, snapshotChunks(index, bytes));
  say(`snapshot ${index}`);
  await storage.compact(Math.max(storage.firstIndex() - 1, index - 50));
}

async function main(): Promise<void> {
  const [dir, runText, segmentText, snapshotText] = process.argv.slice(2);
  if (dir === undefined || snapshotText === undefined) {
    throw new Error("usage: crash-child <dir> <run> <walSegmentBytes> <snapshotBytes>");
  }
  const run = Number(runText);
  const snapshotBytes = Number(snapshotText);
  const opened = await DiskStorage.open(dir, { config: { walSegmentBytes: Number(segmentText) } });
  const { storage } = opened;
  say(`recovered ${storage.firstIndex()} ${storage.lastIndex()}`);
  storage.setHardState({ term: run, votedFor: 1, commitIndex: opened.hardState.commitIndex });
  await storage.sync();
  say("ready");
  let durable = storage.lastIndex();
  let snapshotting = false;
  const appender = async (id: number): Promise<void> => {
    for (let round = 0; ; round++) {
      const count = 1 + ((round * 7 + id) % 4);
      const from = storage.lastIndex() + 1;
      storage.append(Array.from({ length: count }, (_, i) => command(from + i, run, 600)));
      await storage.sync();
      say(`ack ${from} ${count} ${run}`);
      durable = Math.max(durable, from + count - 1);
      if (!snapshotting && durable - storage.snapshot().index > snapshotEveryEntries) {
        snapshotting = true;
        await snapshotAndCompact(storage, durable, run, snapshotBytes);
        snapshotting = false;
      }
    }
  };
  await Promise.all(Array.from({ length: appenderCount }, (_, id) => appender(id)));
}

main().catch((error: unknown) => {
  process.stderr.write(
    `crash-child failed: ${error instanceof Error ? error.stack : String(error)}\n`,
  );
  process.exit(1);
});
