/**
 * Snapshots on disk: written as a stream of chunks into a temporary file, made durable
 * and renamed into place (so a crash never leaves a half snapshot under a real name), read
 * back as a stream whose checksum is verified at the end, and pruned to the newest few.
 * A snapshot may also arrive in offset-addressed chunks from the master (state transfer);
 * `SnapshotReceiver` turns those into the same atomic write.
 *
 * This store never holds a whole snapshot in memory, never names a file as a snapshot
 * before it is durable, and never falls back to an older snapshot when the newest fails
 * its checksum: that is an error for the operator, because the log may already have been
 * compacted up to the newest one.
 */

import { join } from "node:path";
import { crc32 } from "node:zlib";
import type { SnapshotMeta } from "../protocol/messages.js";
import { assert, rethrowIfBug } from "../shared/assert.js";
import { hasErrno, SnapshotCorruptError } from "./errors.js";
import {
  closeQuietly,
  createDirDurably,
  type FileHandleLike,
  type FileSystem,
  io,
  readFully,
  writeFully,
} from "./file-system.js";
import { snapshotChunkBytesMax, snapshotReadChunkBytes } from "./limits.js";
import { readU64, writeU64 } from "./wal-format.js";

export const snapshotMagic = Buffer.from("BATONSNP", "latin1");
export const snapshotTrailerMagic = Buffer.from("BATONEND", "latin1");
export const snapshotFormatVersion = 1;
/** magic(8) version(4) reserved(4) index(8) term(8) dataBytes(8) reserved(4) crc32(4) */
export const snapshotHeaderBytes = 48;
/** dataCrc32(4) reserved(4) magic(8) */
export const snapshotTrailerBytes = 16;

/** A durable snapshot file. */
export interface StoredSnapshot {
  readonly meta: SnapshotMeta;
  readonly path: string;
  /** Size of the application's data, in bytes (header and trailer excluded). */
  readonly dataBytes: number;
  /** CRC32 of the data: a master can announce it so a backup can check a transfer. */
  readonly dataCrc32: number;
}

export function snapshotFileName(meta: SnapshotMeta): string {
  return `${String(meta.index).padStart(20, "0")}-${String(meta.term).padStart(20, "0")}.snap`;
}

function parseSnapshotFileName(name: string): SnapshotMeta | null {
  const match = /^(\d{20})-(\d{20})\.snap$/.exec(name);
  if (match === null) return null;
  const index = Number(match[1]);
  const term = Number(match[2]);
  return Number.isSafeInteger(index) && Number.isSafeInteger(term) ? { index, term } : null;
}

function encodeHeader(meta: SnapshotMeta, dataBytes: number): Buffer {
  const header = Buffer.alloc(snapshotHeaderBytes);
  snapshotMagic.copy(header, 0);
  header.writeUInt32LE(snapshotFormatVersion, 8);
  writeU64(header, 16, meta.index);
  writeU64(header, 24, meta.term);
  writeU64(header, 32, dataBytes);
  header.writeUInt32LE(crc32(header.subarray(0, 44)), 44);
  return header;
}

function encodeTrailer(dataCrc: number): Buffer {
  const trailer = Buffer.alloc(snapshotTrailerBytes);
  trailer.writeUInt32LE(dataCrc, 0);
  snapshotTrailerMagic.copy(trailer, 8);
  return trailer;
}

/** Checks a header against the file's name and size; returns the data size or throws. */
function checkHeader(header: Buffer, path: string, meta: SnapshotMeta, fileBytes: number): number {
  const fail = (offset: number, detail: string) => new SnapshotCorruptError(path, offset, detail);
  if (fileBytes < snapshotHeaderBytes + snapshotTrailerBytes) {
    throw fail(0, `the file is only ${fileBytes} bytes`);
  }
  if (!header.subarray(0, 8).equals(snapshotMagic)) throw fail(0, "not a snapshot (bad magic)");
  if (header.readUInt32LE(44) !== crc32(header.subarray(0, 44))) {
    throw fail(0, "the header fails its checksum");
  }
  const version = header.readUInt32LE(8);
  if (version !== snapshotFormatVersion) {
    throw fail(
      8,
      `format version ${version} is not supported (this build reads ${snapshotFormatVersion})`,
    );
  }
  if (readU64(header, 16) !== meta.index || readU64(header, 24) !== meta.term) {
    throw fail(16, "the header's index and term differ from the file name");
  }
  const dataBytes = readU64(header, 32);
  if (snapshotHeaderBytes + dataBytes + snapshotTrailerBytes !== fileBytes) {
    throw fail(
      32,
      `the header announces ${dataBytes} bytes of data but the file is ${fileBytes} bytes`,
    );
  }
  return dataBytes;
}

/** Checks the trailer against the checksum computed over the data; throws on mismatch. */
function checkTrailer(trailer: Buffer, path: string, offset: number, dataCrc: number): number {
  if (!trailer.subarray(8, 16).equals(snapshotTrailerMagic)) {
    throw new SnapshotCorruptError(path, offset, "the trailer is missing (bad magic)");
  }
  // Written as zeros and covered by no checksum: anything else there is damage.
  if (trailer.readUInt32LE(4) !== 0) {
    throw new SnapshotCorruptError(path, offset + 4, "the trailer's reserved bytes are not zero");
  }
  const stored = trailer.readUInt32LE(0);
  if (stored !== dataCrc) {
    throw new SnapshotCorruptError(path, offset, "the data fails its checksum");
  }
  return stored;
}

/**
 * Streams the data of the snapshot file at `path` in chunks of `snapshotReadChunkBytes`.
 * The checksum is verified after the last chunk: a consumer must not treat what it read as
 * valid until the iteration ends without throwing ERR_SNAPSHOT_CORRUPT.
 */
export async function* readSnapshotData(
  fs: FileSystem,
  path: string,
  meta: SnapshotMeta,
): AsyncGenerator<Uint8Array, number, undefined> {
  const handle = await io(path, "open", () => fs.open(path, "r"));
  try {
    const header = Buffer.alloc(snapshotHeaderBytes);
    await readFully(handle, path, header, snapshotHeaderBytes, 0);
    const dataBytes = checkHeader(header, path, meta, await io(path, "stat", () => handle.size()));
    let crc = 0;
    for (let done = 0; done < dataBytes; ) {
      // Not zeroed first: a short read throws below, so no byte of it is ever used unread.
      const chunk = Buffer.allocUnsafeSlow(Math.min(snapshotReadChunkBytes, dataBytes - done));
      const got = await readFully(handle, path, chunk, chunk.length, snapshotHeaderBytes + done);
      if (got !== chunk.length) {
        throw new SnapshotCorruptError(
          path,
          snapshotHeaderBytes + done + got,
          "the file ends early",
        );
      }
      crc = crc32(chunk, crc);
      done += got;
      yield chunk;
    }
    const trailer = Buffer.alloc(snapshotTrailerBytes);
    const at = snapshotHeaderBytes + dataBytes;
    await readFully(handle, path, trailer, snapshotTrailerBytes, at);
    return checkTrailer(trailer, path, at, crc);
  } finally {
    await closeQuietly(handle);
  }
}

/** Reads a whole snapshot file through, checking every byte; returns its description. */
async function verifyFile(
  fs: FileSystem,
  path: string,
  meta: SnapshotMeta,
): Promise<StoredSnapshot> {
  const data = readSnapshotData(fs, path, meta);
  let dataBytes = 0;
  for (;;) {
    const step = await data.next();
    if (step.done === true) return { meta, path, dataBytes, dataCrc32: step.value };
    dataBytes += step.value.length;
  }
}

/** A snapshot being written: chunks in order into a temporary file, then `finish`. */
export class SnapshotWriter {
  private bytes = 0;
  private crc = 0;
  private state: "open" | "busy" | "done" | "failed" = "open";

  constructor(
    private readonly store: SnapshotStore,
    readonly meta: SnapshotMeta,
    private readonly temporary: string,
    private readonly handle: FileHandleLike,
  ) {}

  /** Bytes of data written so far. */
  get dataBytes(): number {
    return this.bytes;
  }

  /** CRC32 of the data written so far. */
  get dataCrc32(): number {
    return this.crc;
  }

  /** Appends one chunk (at most `snapshotChunkBytesMax`); calls must not overlap. */
  async append(chunk: Uint8Array): Promise<void> {
    assert(this.state === "open", `snapshot writer: append while ${this.state}`);
    assert(chunk.length <= snapshotChunkBytesMax, "snapshot chunk larger than the limit");
    this.state = "busy";
    await this.guard(() =>
      writeFully(this.handle, this.temporary, chunk, snapshotHeaderBytes + this.bytes),
    );
    this.crc = crc32(chunk, this.crc);
    this.bytes += chunk.length;
    this.state = "open";
  }

  /**
   * Writes the trailer and the header, makes the file durable and renames it into place;
   * from then on it is the store's newest snapshot, and older ones beyond the retention
   * count are deleted.
   */
  async finish(): Promise<StoredSnapshot> {
    assert(this.state === "open", `snapshot writer: finish while ${this.state}`);
    this.state = "busy";
    const path = join(this.store.dir, snapshotFileName(this.meta));
    await this.guard(async () => {
      await writeFully(
        this.handle,
        this.temporary,
        encodeTrailer(this.crc),
        snapshotHeaderBytes + this.bytes,
      );
      await writeFully(this.handle, this.temporary, encodeHeader(this.meta, this.bytes), 0);
      await io(this.temporary, "fdatasync", () => this.handle.datasync());
      await io(this.temporary, "close", () => this.handle.close());
      await io(path, "rename", () => this.store.fs.rename(this.temporary, path));
      await io(this.store.dir, "fsync directory", () => this.store.fs.syncDir(this.store.dir));
    });
    this.state = "done";
    const stored = { meta: this.meta, path, dataBytes: this.bytes, dataCrc32: this.crc };
    await this.store.adopt(stored);
    return stored;
  }

  /** Gives up: closes and deletes the temporary file. Safe to call after a failure. */
  async abort(): Promise<void> {
    if (this.state === "done") return;
    this.state = "failed";
    await closeQuietly(this.handle);
    try {
      await this.store.fs.unlink(this.temporary);
    } catch (error) {
      // Already gone, or the disk refuses; recovery removes temporary files anyway.
      rethrowIfBug(error);
    }
  }

  private async guard(action: () => Promise<void>): Promise<void> {
    try {
      await action();
    } catch (error) {
      await this.abort();
      throw error;
    }
  }
}

/**
 * A snapshot arriving from the master in offset-addressed chunks. Chunks must arrive in
 * order; a repeated chunk (a retransmission) is skipped, a chunk beyond what was received
 * is ignored, and `write` always answers the offset it expects next, which the backup
 * reports to the master so it resends from there.
 */
export class SnapshotReceiver {
  constructor(private readonly writer: SnapshotWriter) {}

  get meta(): SnapshotMeta {
    return this.writer.meta;
  }

  get receivedBytes(): number {
    return this.writer.dataBytes;
  }

  /** CRC32 of the data received so far, to compare with what the master announced. */
  get dataCrc32(): number {
    return this.writer.dataCrc32;
  }

  /** Writes the part of `chunk` (which starts at data offset `offset`) not yet received. */
  async write(offset: number, chunk: Uint8Array): Promise<number> {
    assert(Number.isSafeInteger(offset) && offset >= 0, "snapshot chunk offset out of range");
    const received = this.writer.dataBytes;
    if (offset > received || offset + chunk.length <= received) return received;
    await this.writer.append(chunk.subarray(received - offset));
    return this.writer.dataBytes;
  }

  finish(): Promise<StoredSnapshot> {
    return this.writer.finish();
  }

  abort(): Promise<void> {
    return this.writer.abort();
  }
}

export class SnapshotStore {
  private stored: StoredSnapshot[];
  private temporaries = 0;

  private constructor(
    readonly dir: string,
    readonly fs: FileSystem,
    private readonly retainCount: number,
    stored: StoredSnapshot[],
  ) {
    this.stored = stored;
  }

  /**
   * Opens the snapshot directory: deletes temporary files (half-written snapshots, each
   * reported), verifies the newest snapshot completely and prunes old ones. Throws
   * ERR_SNAPSHOT_CORRUPT when the newest snapshot fails its checks.
   */
  static async open(
    dir: string,
    fs: FileSystem,
    retainCount: number,
  ): Promise<{ store: SnapshotStore; latest: StoredSnapshot | null; warnings: string[] }> {
    assert(Number.isSafeInteger(retainCount) && retainCount >= 1, "keep at least one snapshot");
    await createDirDurably(fs, dir);
    const warnings: string[] = [];
    const found: { meta: SnapshotMeta; path: string }[] = [];
    for (const name of await io(dir, "list", () => fs.list(dir))) {
      const path = join(dir, name);
      const meta = parseSnapshotFileName(name);
      if (meta !== null) found.push({ meta, path });
      else if (name.endsWith(".tmp")) {
        await io(path, "delete", () => fs.unlink(path));
        warnings.push(`removed ${path}, a snapshot whose writing was interrupted`);
      } else warnings.push(`ignored ${path}: not a snapshot file`);
    }
    // A snapshot's name may not be durable yet (a process that died between its rename and
    // the directory's fsync): it is about to be relied on, and the log it covers deleted.
    await io(dir, "fsync directory", () => fs.syncDir(dir));
    found.sort((a, b) => a.meta.index - b.meta.index || a.meta.term - b.meta.term);
    const newest = found.at(-1);
    const stored = newest === undefined ? [] : [await verifyFile(fs, newest.path, newest.meta)];
    // Older snapshots are kept unverified: they are a spare for the operator, not read.
    const older = found.slice(0, -1).map((f) => ({ ...f, dataBytes: -1, dataCrc32: -1 }));
    const store = new SnapshotStore(dir, fs, retainCount, [...older, ...stored]);
    await store.prune();
    return { store, latest: store.latest(), warnings };
  }

  /** The newest durable snapshot, or null. */
  latest(): StoredSnapshot | null {
    return this.stored.at(-1) ?? null;
  }

  /** Starts writing a snapshot of the state up to `meta` into a temporary file. */
  async begin(meta: SnapshotMeta): Promise<SnapshotWriter> {
    assert(Number.isSafeInteger(meta.index) && meta.index >= 1, "snapshot index must be positive");
    // Numbered by this store alone: it holds its directory (the data directory's lock) and
    // removed every temporary file it found when it opened, so no other writer's name can
    // clash; a process id here made the simulator's traces differ from run to run.
    const name = `${snapshotFileName(meta)}.${++this.temporaries}.tmp`;
    const temporary = join(this.dir, name);
    const handle = await io(temporary, "create", () => this.fs.open(temporary, "w"));
    return new SnapshotWriter(this, meta, temporary, handle);
  }

  /** Writes a whole snapshot from a stream of chunks; resolves once it is durable. */
  async save(meta: SnapshotMeta, chunks: AsyncIterable<Uint8Array>): Promise<StoredSnapshot> {
    const writer = await this.begin(meta);
    try {
      for await (const chunk of chunks) {
        for (let at = 0; at < chunk.length; at += snapshotChunkBytesMax) {
          await writer.append(chunk.subarray(at, at + snapshotChunkBytesMax));
        }
      }
    } catch (error) {
      await writer.abort();
      throw error;
    }
    return writer.finish();
  }

  /** Starts receiving a snapshot from the master (state transfer). */
  async receive(meta: SnapshotMeta): Promise<SnapshotReceiver> {
    return new SnapshotReceiver(await this.begin(meta));
  }

  /** The data of `snapshot` as a stream verified at its end; see readSnapshotData. */
  read(snapshot: StoredSnapshot): AsyncGenerator<Uint8Array, number, undefined> {
    return readSnapshotData(this.fs, snapshot.path, snapshot.meta);
  }

  /** Reads `snapshot` through and checks every byte; throws ERR_SNAPSHOT_CORRUPT. */
  async verify(snapshot: StoredSnapshot): Promise<void> {
    await verifyFile(this.fs, snapshot.path, snapshot.meta);
  }

  /** Makes a finished snapshot the newest one and prunes; called by SnapshotWriter. */
  async adopt(snapshot: StoredSnapshot): Promise<void> {
    const newest = this.latest();
    this.stored = this.stored.filter((s) => s.path !== snapshot.path);
    if (newest !== null && snapshot.meta.index < newest.meta.index) {
      // The runtime snapshots its own state while state transfers go on: a snapshot it
      // started before a newer one arrived by transfer finishes older. It is a spare like
      // any older one (recovery takes the newest by name too), never the newest.
      this.stored.push(snapshot);
      this.stored.sort((a, b) => a.meta.index - b.meta.index);
    } else {
      this.stored.push(snapshot);
    }
    await this.prune();
  }

  /** Deletes all but the newest `retainCount` snapshots. */
  private async prune(): Promise<void> {
    const excess = this.stored.length - this.retainCount;
    if (excess <= 0) return;
    for (const old of this.stored.splice(0, excess)) {
      await io(old.path, "delete", async () => {
        try {
          await this.fs.unlink(old.path);
        } catch (error) {
          // Someone (an operator) removed it already: the goal is reached.
          if (!hasErrno(error, "ENOENT")) throw error;
        }
      });
    }
    await io(this.dir, "fsync directory", () => this.fs.syncDir(this.dir));
  }
}
