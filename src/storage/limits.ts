/**
 * The fixed bounds of the storage layer: sizes that are part of the on-disk format or
 * that keep memory and recovery time bounded. Tunable settings (segment size, how many
 * snapshots to keep) live in `storage-config.ts` instead; these are not meant to change
 * between deployments. They belong with `shared/limits.ts` once that file exists.
 *
 * This file holds constants only and must never read the environment.
 */

/**
 * Largest `data` of one log entry, in bytes. Recovery refuses a record that claims to be
 * larger, so a corrupt length field cannot make it allocate gigabytes.
 * @default 67_108_864 (64 MiB)
 */
export const walEntryDataBytesMax = 64 * 1024 * 1024;

/**
 * Most bytes of encoded records that may wait for the write-ahead log's writer. The
 * runtime bounds its own pipeline far below this; reaching it is a bug upstream.
 * @default 1_073_741_824 (1 GiB)
 */
export const walQueuedBytesMax = 1024 * 1024 * 1024;

/**
 * Bytes of entries not yet durable (`Storage.pendingBytes`) above which the runtime
 * refuses new writes as busy and drops appends from the master (which sends them again):
 * a disk slower than the write load slows the cluster down rather than filling memory.
 * With the master's uncommitted bytes (`uncommittedBytesMax`, 64 MiB) and a full
 * replication pipeline on top, what the log's writer holds stays below `walQueuedBytesMax`.
 * @default 134_217_728 (128 MiB)
 */
export const storagePendingBytesMax = 128 * 1024 * 1024;

/**
 * Bytes read at a time when recovery scans a segment, and the size of the read window
 * used by `entries()`.
 * @default 1_048_576 (1 MiB)
 */
export const walScanWindowBytes = 1024 * 1024;

/**
 * Largest segment size a configuration may ask for. Record offsets are kept as numbers
 * and segment sizes must stay well inside what one positional read can address.
 * @default 1_073_741_824 (1 GiB)
 */
export const walSegmentBytesMax = 1024 * 1024 * 1024;

/**
 * Smallest segment size a configuration may ask for (tests use small segments to make
 * the log roll often).
 * @default 4096
 */
export const walSegmentBytesMin = 4096;

/**
 * Size of the chunks a stored snapshot is streamed back in, in bytes.
 * @default 1_048_576 (1 MiB)
 */
export const snapshotReadChunkBytes = 1024 * 1024;

/**
 * Largest chunk accepted by one `write` of a snapshot being received or saved, in bytes.
 * @default 67_108_864 (64 MiB)
 */
export const snapshotChunkBytesMax = 64 * 1024 * 1024;
