/**
 * The hard state (current term, vote, commit index) in one small file, replaced
 * atomically: the new content goes to a temporary file, which is fdatasync'ed and renamed
 * over the old one, and then the directory is fsync'ed. A crash therefore leaves either
 * the old or the new hard state, never a mix; the checksum catches a disk that lies.
 *
 * This store must never report a save as done before the rename is durable, because a
 * node that forgets its vote after a crash can vote twice in one term (Raft §5.2). It does
 * not decide when to save; `disk-storage.ts` does.
 */

import { join } from "node:path";
import { crc32 } from "node:zlib";
import type { HardState } from "../protocol/messages.js";
import { assert } from "../shared/assert.js";
import { HardStateCorruptError } from "./errors.js";
import { closeQuietly, type FileSystem, io, writeFully } from "./file-system.js";
import { readU64, writeU64 } from "./wal-format.js";

export const hardStateFileName = "hard-state";
export const hardStateMagic = Buffer.from("BATONHST", "latin1");
export const hardStateFormatVersion = 1;
/**
 * magic(8) version(4) flags(4) term(8) votedFor(8) commitIndex(8) reserved(4) crc32(4).
 * flags bit 0: joining (the node lost its data and is catching up). Files written before
 * the flags existed hold 0 there, which reads as "not joining".
 */
export const hardStateFileBytes = 48;

export const emptyHardState: HardState = Object.freeze({ term: 0, votedFor: null, commitIndex: 0 });

export function encodeHardState(state: HardState): Buffer {
  assert(state.votedFor === null || state.votedFor >= 1, "a node id is a positive integer");
  const bytes = Buffer.alloc(hardStateFileBytes);
  hardStateMagic.copy(bytes, 0);
  bytes.writeUInt32LE(hardStateFormatVersion, 8);
  bytes.writeUInt32LE(state.joining === true ? JOINING_FLAG : 0, 12);
  writeU64(bytes, 16, state.term);
  writeU64(bytes, 24, state.votedFor ?? 0);
  writeU64(bytes, 32, state.commitIndex);
  bytes.writeUInt32LE(crc32(bytes.subarray(0, 44)), 44);
  return bytes;
}

/** Decodes a hard-state file, or throws ERR_HARD_STATE_CORRUPT naming `path` and the offset. */
export function decodeHardState(bytes: Uint8Array, path: string): HardState {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (offset: number, detail: string) => new HardStateCorruptError(path, offset, detail);
  if (buffer.length !== hardStateFileBytes) {
    throw fail(0, `the file is ${buffer.length} bytes, not ${hardStateFileBytes}`);
  }
  if (!buffer.subarray(0, 8).equals(hardStateMagic))
    throw fail(0, "not a hard-state file (bad magic)");
  if (buffer.readUInt32LE(44) !== crc32(buffer.subarray(0, 44))) {
    throw fail(44, "the file fails its checksum");
  }
  const version = buffer.readUInt32LE(8);
  if (version !== hardStateFormatVersion) {
    throw fail(
      8,
      `format version ${version} is not supported (this build reads ${hardStateFormatVersion})`,
    );
  }
  const flags = buffer.readUInt32LE(12);
  if ((flags & ~JOINING_FLAG) !== 0) throw fail(12, `unknown flags 0x${flags.toString(16)}`);
  const term = readU64(buffer, 16);
  const vote = readU64(buffer, 24);
  const commitIndex = readU64(buffer, 32);
  if (Number.isNaN(term) || Number.isNaN(vote) || Number.isNaN(commitIndex)) {
    throw fail(16, "a field is out of range");
  }
  const state = { term, votedFor: vote === 0 ? null : vote, commitIndex };
  return Object.freeze((flags & JOINING_FLAG) !== 0 ? { ...state, joining: true } : state);
}

const JOINING_FLAG = 1;

export class StableStore {
  private durable: HardState;
  private latest: HardState;
  private requested = 0;
  private written = 0;
  private chain: Promise<void> = Promise.resolve();
  private failure: Error | null = null;

  private constructor(
    readonly dir: string,
    private readonly fs: FileSystem,
    state: HardState,
  ) {
    this.durable = state;
    this.latest = state;
  }

  get path(): string {
    return join(this.dir, hardStateFileName);
  }

  /**
   * Loads the hard state from `dir` (the empty state when there is none yet) and removes a
   * temporary file a crash left behind. Throws ERR_HARD_STATE_CORRUPT for a damaged file.
   */
  static async open(
    dir: string,
    fs: FileSystem,
  ): Promise<{ store: StableStore; hardState: HardState; warnings: string[] }> {
    const path = join(dir, hardStateFileName);
    const warnings: string[] = [];
    const temporary = `${path}.tmp`;
    if ((await io(temporary, "read", () => fs.readSmall(temporary))) !== null) {
      await io(temporary, "delete", () => fs.unlink(temporary));
      warnings.push(`removed ${temporary}, a hard-state update that a crash interrupted`);
    }
    const bytes = await io(path, "read", () => fs.readSmall(path));
    const hardState = bytes === null ? emptyHardState : decodeHardState(bytes, path);
    // The file's name may be only in the page cache (a process that died between the rename
    // and the directory's fsync). The node is about to act on this term and vote, repeating
    // a vote without saving it again, so the name must survive a power loss first.
    await io(dir, "fsync directory", () => fs.syncDir(dir));
    return { store: new StableStore(dir, fs, hardState), hardState, warnings };
  }

  /** The hard state last made durable. */
  current(): HardState {
    return this.durable;
  }

  /**
   * Makes `state` durable. Saves are applied in call order; one still waiting when a newer
   * one arrives is skipped, since only the newest matters. Rejects with ERR_DISK_FULL or
   * ERR_STORAGE_IO, after which every save fails.
   */
  save(state: HardState): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    const sequence = ++this.requested;
    this.latest = state;
    const run = this.chain.then(async () => {
      if (this.failure !== null) throw this.failure;
      if (this.written >= sequence) return;
      const target = this.requested;
      const value = this.latest;
      try {
        await this.write(value);
      } catch (error) {
        this.failure = error instanceof Error ? error : new Error(String(error));
        throw this.failure;
      }
      this.durable = value;
      this.written = target;
    });
    this.chain = run.catch(() => {});
    return run;
  }

  /** Resolves when every save requested so far has finished (successfully or not). */
  async idle(): Promise<void> {
    await this.chain;
  }

  private async write(state: HardState): Promise<void> {
    const temporary = `${this.path}.tmp`;
    const handle = await io(temporary, "create", () => this.fs.open(temporary, "w"));
    try {
      await writeFully(handle, temporary, encodeHardState(state), 0);
      await io(temporary, "fdatasync", () => handle.datasync());
    } finally {
      await closeQuietly(handle);
    }
    await io(this.path, "rename", () => this.fs.rename(temporary, this.path));
    await io(this.dir, "fsync directory", () => this.fs.syncDir(this.dir));
  }
}
