/**
 * Shared helpers for the storage tests: temporary directories that are always removed,
 * and deterministic entries whose content can be recomputed from their index (so a test
 * can check every byte after a restart without keeping a copy).
 */

import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Entry } from "../../src/protocol/messages.js";

const created: string[] = [];

/** A fresh directory under the system temp dir; `removeTempDirs` deletes it. */
export async function makeTempDir(prefix = "baton-storage-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  created.push(dir);
  return dir;
}

/** Deletes every directory `makeTempDir` made; call from afterEach. */
export async function removeTempDirs(): Promise<void> {
  const dirs = created.splice(0);
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
}

/** The data of the entry at `index` in term `term`: a size and bytes derived from both. */
export function dataFor(index: number, term: number, sizeMax = 200): Uint8Array {
  const size = (index * 7919 + term * 104729) % sizeMax;
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (index * 31 + term * 17 + i * 13) & 0xff;
  return data;
}

export function command(index: number, term: number, sizeMax = 200): Entry {
  return { index, term, kind: "command", data: dataFor(index, term, sizeMax) };
}

/** `count` command entries from `from`, all in `term`. */
export function commands(from: number, count: number, term: number, sizeMax = 200): Entry[] {
  return Array.from({ length: count }, (_, i) => command(from + i, term, sizeMax));
}

/** Entries as plain objects with arrays, so vitest's equality reports readable diffs. */
export function plain(entries: readonly Entry[]): unknown[] {
  return entries.map((e) => ({ index: e.index, term: e.term, kind: e.kind, data: [...e.data] }));
}
