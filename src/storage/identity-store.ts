/**
 * The data directory's identity, in one small file (`identity`) replaced atomically like
 * the hard state: the cluster id, this directory's member incarnation, the configuration
 * a member added with `--join` learned, the newest committed configuration with the
 * index of its entry (so that a configuration compacted into a snapshot survives a
 * restart), the committed configurations since the one in force at the newest snapshot,
 * and the members committed configurations removed, with the incarnation each was
 * removed as. JSON with a CRC32 line, because it is written rarely and read by people.
 *
 * A directory without this file is either new (nothing else in it) or was written by
 * Baton 0.1 or 0.2; the runtime decides which and creates the identity. This store never makes
 * one up itself and never reports a save done before the rename is durable: a directory
 * that could come back with an identity it did not have would speak for a member that it
 * is not.
 */

import { join } from "node:path";
import { crc32 } from "node:zlib";
import type { Member } from "../protocol/messages.js";
import { StorageInconsistentError } from "./errors.js";
import { closeQuietly, type FileSystem, io, writeFully } from "./file-system.js";

export const identityFileName = "identity";
const identityFormat = "baton-identity-1";

export interface DataIdentity {
  /** The cluster's id, drawn once when it bootstrapped; null until this node knows it. */
  readonly clusterId: string | null;
  /** This directory's member incarnation (1..2^48), drawn when it was initialised. */
  readonly incarnation: number;
  /** The configuration learned with `--join`, for a member added to a running cluster. */
  readonly joinedConfig: readonly Member[] | null;
  /** The newest committed configuration this node applied, and its entry's index. */
  readonly appliedConfig: { readonly index: number; readonly config: readonly Member[] } | null;
  /**
   * Members that committed configurations removed and none lists again, each as it was
   * removed, newest last: so that a restarted node still tells a member added back under
   * its id (a new incarnation) from the one that was removed. Absent in files written
   * before it existed.
   */
  readonly removed?: readonly RemovedMember[];
  /**
   * The committed configurations from the one in force at the newest stored snapshot's
   * index on, oldest first (see configsAfter). A stored snapshot holds no configuration: a
   * restart takes the one in force at its index (configAt), so that the snapshot goes to
   * a backup with the configuration of its own index rather than a newer one. Absent in
   * files written before it existed.
   */
  readonly configs?: readonly IndexedConfig[];
}

/** A committed configuration and the index of its entry. */
export interface IndexedConfig {
  readonly index: number;
  readonly config: readonly Member[];
}

/** Configurations kept in the identity: a bound on a file read at every start. */
export const CONFIGS_KEPT_MAX = 64;

/**
 * The configurations to keep once `applied` is committed, with the newest stored snapshot
 * at `snapshotIndex`: `applied` joins them in index order, older than the newest too (a
 * node that adopted a snapshot and stopped before installing it applies the entries below
 * it again), and those before the one in force at `snapshotIndex` go. Past
 * CONFIGS_KEPT_MAX the oldest go too; a restart then finds none for its snapshot and falls
 * back to the newest (configAt's caller), as a file without them does.
 */
export function configsAfter(
  configs: readonly IndexedConfig[],
  applied: IndexedConfig,
  snapshotIndex: number,
): IndexedConfig[] {
  const kept = configs.filter((c) => c.index !== applied.index);
  kept.push({ index: applied.index, config: applied.config });
  kept.sort((a, b) => a.index - b.index);
  let from = 0;
  for (let i = 0; i < kept.length; i++) if (kept[i]!.index <= snapshotIndex) from = i;
  return kept.slice(Math.max(from, kept.length - CONFIGS_KEPT_MAX));
}

/** Whether two lists of configurations hold the same entries (an entry's index names it). */
export function sameConfigs(a: readonly IndexedConfig[], b: readonly IndexedConfig[]): boolean {
  return a.length === b.length && a.every((c, i) => c.index === b[i]!.index);
}

/** The configuration in force at `index` as the identity records it, or null if unknown. */
export function configAt(identity: DataIdentity, index: number): readonly Member[] | null {
  let found: readonly Member[] | null = null;
  for (const c of identity.configs ?? []) if (c.index <= index) found = c.config;
  return found;
}

/** A member as a committed configuration removed it. */
export interface RemovedMember {
  readonly id: number;
  readonly incarnation: number;
  readonly peerAddress: string;
}

/** Removed members kept in the identity: the newest, a bound on a file read at every start. */
export const REMOVED_MEMBERS_KEPT_MAX = 64;

/**
 * The removed members after `next` replaces `previous` as the committed configuration:
 * those `previous` listed and `next` does not are added (replacing an older removal of the
 * same id), those `next` lists are dropped.
 */
export function removedAfter(
  removed: readonly RemovedMember[],
  previous: readonly Member[],
  next: readonly Member[],
): RemovedMember[] {
  const listed = new Set(next.map((m) => m.id));
  const byId = new Map(removed.map((r) => [r.id, r]));
  for (const m of previous) {
    if (listed.has(m.id)) continue;
    byId.delete(m.id);
    byId.set(m.id, { id: m.id, incarnation: m.incarnation, peerAddress: m.peerAddress });
  }
  for (const id of listed) byId.delete(id);
  return [...byId.values()].slice(-REMOVED_MEMBERS_KEPT_MAX);
}

export class IdentityStore {
  private constructor(
    readonly dir: string,
    private readonly fs: FileSystem,
    private current: DataIdentity | null,
  ) {}

  get path(): string {
    return join(this.dir, identityFileName);
  }

  /** Reads the identity in `dir` (null when there is none); throws for a damaged file. */
  static async open(dir: string, fs: FileSystem): Promise<IdentityStore> {
    const path = join(dir, identityFileName);
    const temporary = `${path}.tmp`;
    if ((await io(temporary, "read", () => fs.readSmall(temporary))) !== null) {
      await io(temporary, "delete", () => fs.unlink(temporary));
    }
    const bytes = await io(path, "read", () => fs.readSmall(path));
    // A name that is only in the page cache (a process that died between the rename and the
    // directory's fsync) must survive a power loss before the node speaks with it.
    await io(dir, "fsync directory", () => fs.syncDir(dir));
    return new IdentityStore(dir, fs, bytes === null ? null : decodeIdentity(bytes, path));
  }

  identity(): DataIdentity | null {
    return this.current;
  }

  /** Makes `identity` durable (temporary file, fdatasync, rename, directory fsync). */
  async save(identity: DataIdentity): Promise<void> {
    const temporary = `${this.path}.tmp`;
    const handle = await io(temporary, "create", () => this.fs.open(temporary, "w"));
    try {
      await writeFully(handle, temporary, encodeIdentity(identity), 0);
      await io(temporary, "fdatasync", () => handle.datasync());
    } finally {
      await closeQuietly(handle);
    }
    await io(this.path, "rename", () => this.fs.rename(temporary, this.path));
    await io(this.dir, "fsync directory", () => this.fs.syncDir(this.dir));
    this.current = identity;
  }
}

export function encodeIdentity(identity: DataIdentity): Buffer {
  const body = JSON.stringify({ format: identityFormat, ...identity });
  return Buffer.from(`${body}\ncrc32 ${crc32(Buffer.from(body, "utf8"))}\n`, "utf8");
}

export function decodeIdentity(bytes: Uint8Array, path: string): DataIdentity {
  const text = Buffer.from(bytes).toString("utf8");
  const fail = (detail: string) => new StorageInconsistentError(path, `identity file: ${detail}`);
  const match = /^(.*)\ncrc32 (\d+)\n$/s.exec(text);
  if (match === null) throw fail("not an identity file (no checksum line)");
  const body = match[1]!;
  if (crc32(Buffer.from(body, "utf8")) !== Number(match[2])) {
    throw fail("the file fails its checksum");
  }
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(body) as Record<string, unknown>;
  } catch {
    throw fail("the identity is not JSON");
  }
  if (parsed.format !== identityFormat) throw fail(`unknown format ${String(parsed.format)}`);
  const incarnation = parsed.incarnation;
  if (typeof incarnation !== "number" || !Number.isSafeInteger(incarnation) || incarnation < 1) {
    throw fail("the incarnation is not a positive integer");
  }
  const clusterId = parsed.clusterId;
  if (clusterId !== null && typeof clusterId !== "string") throw fail("bad cluster id");
  const removed = parsed.removed ?? [];
  if (!Array.isArray(removed) || !removed.every(isRemovedMember)) {
    throw fail("the removed members are not a list of {id, incarnation, peerAddress}");
  }
  const configs = parsed.configs ?? [];
  if (!Array.isArray(configs) || !configs.every(isIndexedConfig)) {
    throw fail("the configurations are not a list of {index, config}");
  }
  return Object.freeze({
    clusterId,
    incarnation,
    joinedConfig: (parsed.joinedConfig ?? null) as readonly Member[] | null,
    appliedConfig: (parsed.appliedConfig ?? null) as DataIdentity["appliedConfig"],
    removed,
    ...(parsed.configs === undefined ? {} : { configs }),
  });
}

function isIndexedConfig(value: unknown): value is IndexedConfig {
  if (typeof value !== "object" || value === null) return false;
  const c = value as Record<string, unknown>;
  return Number.isSafeInteger(c.index) && Array.isArray(c.config);
}

function isRemovedMember(value: unknown): value is RemovedMember {
  if (typeof value !== "object" || value === null) return false;
  const r = value as Record<string, unknown>;
  return (
    Number.isSafeInteger(r.id) &&
    Number.isSafeInteger(r.incarnation) &&
    typeof r.peerAddress === "string"
  );
}
