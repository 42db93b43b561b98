/**
 * The tunable settings of the storage layer, parsed once: `parseStorageConfig` reports
 * every bad field at once and returns a frozen object, so no other file reads a default.
 * Fixed bounds that are part of the format live in `limits.ts` instead.
 */

import { StorageConfigError } from "./errors.js";
import { walSegmentBytesMax, walSegmentBytesMin } from "./limits.js";

export interface StorageConfig {
  /**
   * A write-ahead log segment is closed and a new one started once it would grow past
   * this many bytes. Compaction deletes whole segments, so smaller segments free disk
   * sooner after a snapshot; larger ones mean fewer files.
   * @default 67_108_864 (64 MiB)
   */
  readonly walSegmentBytes: number;
  /**
   * Snapshots kept on disk, the newest included. Two keeps the previous one readable for a
   * state transfer that started before the newest was taken.
   * @default 2
   */
  readonly snapshotsRetainedCount: number;
  /**
   * The commit index is only a hint (Raft needs no durable commit index), so a change of
   * it alone is written to the hard-state file once it has advanced by this many entries,
   * not on every sync; term and vote changes are always written before `sync` resolves.
   * @default 10_000
   */
  readonly commitIndexPersistIntervalEntries: number;
}

export function defaultStorageConfig(): StorageConfig {
  return Object.freeze({
    walSegmentBytes: 64 * 1024 * 1024,
    snapshotsRetainedCount: 2,
    commitIndexPersistIntervalEntries: 10_000,
  });
}

function integerIn(
  problems: string[],
  name: string,
  value: unknown,
  min: number,
  max: number,
): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    problems.push(`${name} must be an integer from ${min} to ${max} (got ${String(value)})`);
    return min;
  }
  return value;
}

/**
 * Validates `input` (a partial configuration; missing fields take their defaults). Throws
 * ERR_STORAGE_CONFIG listing every problem; returns the frozen configuration.
 */
export function parseStorageConfig(
  input: Partial<Record<keyof StorageConfig, unknown>> = {},
): StorageConfig {
  const defaults = defaultStorageConfig();
  const problems: string[] = [];
  for (const key of Object.keys(input)) {
    if (!(key in defaults)) problems.push(`${key} is not a storage setting`);
  }
  const config: StorageConfig = {
    walSegmentBytes: integerIn(
      problems,
      "walSegmentBytes",
      input.walSegmentBytes ?? defaults.walSegmentBytes,
      walSegmentBytesMin,
      walSegmentBytesMax,
    ),
    snapshotsRetainedCount: integerIn(
      problems,
      "snapshotsRetainedCount",
      input.snapshotsRetainedCount ?? defaults.snapshotsRetainedCount,
      1,
      100,
    ),
    commitIndexPersistIntervalEntries: integerIn(
      problems,
      "commitIndexPersistIntervalEntries",
      input.commitIndexPersistIntervalEntries ?? defaults.commitIndexPersistIntervalEntries,
      1,
      Number.MAX_SAFE_INTEGER,
    ),
  };
  if (problems.length > 0) throw new StorageConfigError(problems);
  return Object.freeze(config);
}
