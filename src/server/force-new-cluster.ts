/**
 * Recovery of a cluster that lost a majority of its voters, from one survivor's stopped
 * data directory: the survivor keeps its data and its cluster id, and a config entry that
 * lists it as the only voter is appended to its log at a new term. At its next start it
 * is a cluster of one, elects itself and commits everything in its log, that entry
 * included; the operator then grows the cluster again (`baton member add` + `--join`).
 *
 * This is the one place that writes a configuration no master proposed, so it checks
 * everything before it writes anything: the directory is a Baton data directory that no
 * process holds, the configuration in effect lists this very directory (its id and its
 * member incarnation) as a voter, and the node is not still catching up after a wipe.
 * The lost members are not in the new configuration: if they come back with their old
 * incarnations, their votes and acknowledgements are ignored, and their log (older terms)
 * can win no vote of the survivor's.
 *
 * What it cannot do, and says so in the plan: give back an entry the lost members
 * committed that never reached this node, or tell an entry this node holds but that was
 * never committed from one that was (every entry it holds becomes committed).
 *
 * It must never write into a directory another process has open, never write half a
 * recovery that a restart would read differently (the entry and the term are synced
 * before the identity file names the new configuration; a crash in between leaves a log
 * whose newest configuration is already the new one), and never run on a running node.
 */

import {
  type Configuration,
  decodeClusterId,
  decodeConfiguration,
  encodeConfiguration,
  memberOf,
  votersOf,
} from "../core/configuration.js";
import type { Entry, HardState, Member, NodeId } from "../protocol/messages.js";
import { assert } from "../shared/assert.js";
import type { Clock } from "../shared/clock.js";
import type { LockHost } from "../storage/dir-lock.js";
import { DiskStorage } from "../storage/disk-storage.js";
import { type FileSystem, nodeFileSystem } from "../storage/file-system.js";
import {
  configsAfter,
  type DataIdentity,
  IdentityStore,
  identityFileName,
  removedAfter,
} from "../storage/identity-store.js";
import type { OpenedStorage } from "../storage/storage.js";

/** Why a survivor's directory cannot be recovered; the message says what to do instead. */
export class RecoveryRefusedError extends Error {
  override readonly name = "RecoveryRefusedError";
  readonly code = "ERR_RECOVERY_REFUSED";
}

/** What the survivor's data directory holds, read while it is locked. */
export interface SurvivorState {
  readonly dir: string;
  readonly id: NodeId;
  /** The cluster id in the identity file; null when the cluster never committed one. */
  readonly clusterId: string | null;
  readonly incarnation: number;
  /** The durable current term. */
  readonly term: number;
  /** The newest snapshot's index (0: none). */
  readonly snapshotIndex: number;
  readonly lastIndex: number;
  readonly lastTerm: number;
  /**
   * The highest index this node knew committed (written lazily: the cluster may have
   * committed more, and so may the entries this node holds beyond it).
   */
  readonly commitIndex: number;
  /** The configuration in effect (the newest in the log, else the identity file's). */
  readonly configuration: Configuration;
  /** Where it comes from: the log entry's index, or 0 for the identity file. */
  readonly configIndex: number;
}

/** What a forced recovery writes, or why it is not needed. */
export interface RecoveryPlan {
  readonly survivor: SurvivorState;
  /** The node already is the only voter (a cluster of one, or recovered before): no write. */
  readonly alreadyAlone: boolean;
  /** The config entry appended: at lastIndex + 1, in `term`. */
  readonly entry: { readonly index: number; readonly term: number };
  /** The new configuration: the survivor alone, a voter, with its incarnation. */
  readonly configuration: Configuration;
  /** The members it drops. */
  readonly removed: readonly Member[];
  /** Entries after the known commit index that become committed (null: none). */
  readonly uncommitted: { readonly from: number; readonly to: number } | null;
  /** What opening the directory changed on disk (a torn tail trimmed, …), one line each. */
  readonly warnings: readonly string[];
}

export interface ForceNewClusterOptions {
  /** Write the new configuration; without it only the plan is computed. @default false */
  readonly write?: boolean;
  /** The file system; the simulator passes a machine's. @default nodeFileSystem */
  readonly fs?: FileSystem;
  /** Time and timers of the storage. @default realClock */
  readonly clock?: Clock;
  /** Who takes the directory lock. @default this process */
  readonly lockHost?: LockHost;
}

/**
 * Reads the stopped data directory `dir` of node `id` and works out the forced
 * recovery; with `write`, carries it out and makes it durable. Throws
 * RecoveryRefusedError (not a data directory, held by a running node, not this node's,
 * a learner, removed, catching up after a wipe, no configuration), and the storage's own
 * errors (ERR_WAL_CORRUPT, …) for a damaged directory.
 */
export async function forceNewCluster(
  dir: string,
  id: NodeId,
  options: ForceNewClusterOptions = {},
): Promise<RecoveryPlan> {
  const fs = options.fs ?? nodeFileSystem;
  await checkIsDataDir(dir, fs);
  const opened = await openLocked(dir, options);
  try {
    const identityStore = await IdentityStore.open(dir, fs);
    const identity = identityStore.identity();
    assert(identity !== null, `${dir}: the identity file vanished while the directory was locked`);
    const survivor = readSurvivor(dir, id, opened, identity);
    const plan = { ...planRecovery(survivor), warnings: opened.warnings };
    if (options.write === true && !plan.alreadyAlone) {
      await writeRecovery(opened, identityStore, identity, plan);
    }
    return plan;
  } finally {
    await opened.storage.close();
  }
}

async function checkIsDataDir(dir: string, fs: FileSystem): Promise<void> {
  let names: string[];
  try {
    names = await fs.list(dir);
  } catch (error) {
    throw new RecoveryRefusedError(`--data ${dir}: ${(error as Error).message}`);
  }
  if (names.length === 0) {
    throw new RecoveryRefusedError(
      `--data ${dir} is empty or does not exist: give the directory the survivor ran on`,
    );
  }
  if (!names.includes(identityFileName)) {
    throw new RecoveryRefusedError(
      `--data ${dir} is not a Baton data directory (it has no ${identityFileName} file): give the directory a member ran on`,
    );
  }
}

async function openLocked(dir: string, options: ForceNewClusterOptions): Promise<OpenedStorage> {
  try {
    return await DiskStorage.open(dir, {
      ...(options.fs === undefined ? {} : { fs: options.fs }),
      ...(options.clock === undefined ? {} : { clock: options.clock }),
      ...(options.lockHost === undefined ? {} : { lockHost: options.lockHost }),
    });
  } catch (error) {
    if ((error as { code?: string }).code === "ERR_STORAGE_LOCKED") {
      const pid = (error as { pid?: number }).pid;
      throw new RecoveryRefusedError(
        `--data ${dir} is held by a running process (${pid ?? "unknown"}): a forced recovery works only on a stopped node's directory; stop that node first`,
      );
    }
    throw error;
  }
}

/** What the directory holds, and every check that does not depend on the plan. */
export function readSurvivor(
  dir: string,
  id: NodeId,
  opened: Pick<OpenedStorage, "hardState" | "snapshot" | "entries">,
  identity: DataIdentity,
): SurvivorState {
  const { hardState, snapshot, entries } = opened;
  if (hardState.joining === true) {
    throw new RecoveryRefusedError(
      `--data ${dir}: this node's directory was wiped and it had not caught up with a master since (it is joining): its log lacks committed entries; recover from another survivor`,
    );
  }
  const last = entries.at(-1);
  const { configuration, configIndex } = configurationIn(dir, entries, identity);
  checkListsSelf(dir, id, configuration, identity.incarnation);
  return Object.freeze({
    dir,
    id,
    clusterId: clusterIdIn(opened, identity),
    incarnation: identity.incarnation,
    term: hardState.term,
    snapshotIndex: snapshot.index,
    lastIndex: last?.index ?? snapshot.index,
    lastTerm: last?.term ?? snapshot.term,
    commitIndex: hardState.commitIndex,
    configuration,
    configIndex,
  });
}

/** The newest configuration in the log, else the identity file's; refuses when none. */
function configurationIn(
  dir: string,
  entries: readonly Entry[],
  identity: DataIdentity,
): { configuration: Configuration; configIndex: number } {
  for (let i = entries.length - 1; i >= 0; i--) {
    const entry = entries[i]!;
    if (entry.kind !== "config") continue;
    const configuration = decodeConfiguration(entry.data);
    // The log is checksummed on disk and was written by this node: a bad entry is damage.
    if (configuration === null) {
      throw new RecoveryRefusedError(
        `--data ${dir}: the config entry at index ${entry.index} does not decode; the directory is damaged`,
      );
    }
    return { configuration, configIndex: entry.index };
  }
  const stored = identity.appliedConfig?.config ?? identity.joinedConfig;
  if (stored === null || stored === undefined) {
    throw new RecoveryRefusedError(
      `--data ${dir} holds no configuration (the cluster never committed one): nothing to recover; start the members as a new cluster`,
    );
  }
  return { configuration: stored, configIndex: 0 };
}

/**
 * The cluster's id: the identity file's, else the newest config entry's that carries one,
 * else the snapshot's. The identity file may not have it yet (a node stopped between
 * learning it and recording it, or a directory from `snapshot restore`), and a recovery
 * entry written without it would leave the new cluster's log without its id.
 */
function clusterIdIn(
  opened: Pick<OpenedStorage, "snapshot" | "entries">,
  identity: DataIdentity,
): string | null {
  if (identity.clusterId !== null) return identity.clusterId;
  for (let i = opened.entries.length - 1; i >= 0; i--) {
    const entry = opened.entries[i]!;
    if (entry.kind !== "config") continue;
    const clusterId = decodeClusterId(entry.data);
    if (clusterId !== null) return clusterId;
  }
  return opened.snapshot.clusterId ?? null;
}

function checkListsSelf(
  dir: string,
  id: NodeId,
  configuration: Configuration,
  incarnation: number,
): void {
  const owner = configuration.find((m) => m.incarnation === incarnation && m.id !== id);
  if (owner !== undefined) {
    throw new RecoveryRefusedError(
      `--data ${dir} is node ${owner.id}'s data directory (member incarnation ${incarnation}), not node ${id}'s: give --id ${owner.id}`,
    );
  }
  const self = memberOf(configuration, id);
  if (self === undefined) {
    throw new RecoveryRefusedError(
      `--data ${dir}: the configuration does not list node ${id} (members ${configuration.map((m) => m.id).join(", ")}): it was removed, or --id is wrong`,
    );
  }
  if (self.incarnation !== 0 && self.incarnation !== incarnation) {
    throw new RecoveryRefusedError(
      `--data ${dir}: the configuration lists node ${id} with member incarnation ${self.incarnation}, but this directory is incarnation ${incarnation}: it was replaced, and is not the member's data`,
    );
  }
  if (!self.voter) {
    throw new RecoveryRefusedError(
      `--data ${dir}: node ${id} is a learner: it counted for no commit, so it may lack entries the voters committed; recover from a voter's directory`,
    );
  }
}

/** The recovery for `survivor`: a pure function of what the directory holds. */
export function planRecovery(survivor: SurvivorState): Omit<RecoveryPlan, "warnings"> {
  const self = memberOf(survivor.configuration, survivor.id);
  assert(
    self?.voter === true,
    `node ${survivor.id} is not a voter of the survivor's configuration`,
  );
  const alone = Object.freeze([
    Object.freeze({ ...self, voter: true, incarnation: survivor.incarnation }),
  ]);
  const voters = votersOf(survivor.configuration);
  // A new term above every term the survivor has seen: no master of the old configuration
  // ever wrote at it, and the new entry is more up to date than any log of the lost members.
  const term = Math.max(survivor.term, survivor.lastTerm) + 1;
  const uncommitted =
    survivor.commitIndex < survivor.lastIndex
      ? { from: survivor.commitIndex + 1, to: survivor.lastIndex }
      : null;
  return Object.freeze({
    survivor,
    alreadyAlone: voters.length === 1 && voters[0] === survivor.id,
    entry: { index: survivor.lastIndex + 1, term },
    configuration: alone,
    removed: survivor.configuration.filter((m) => m.id !== survivor.id),
    uncommitted,
  });
}

/**
 * Appends the config entry at the new term, commits it (the survivor is its only voter),
 * and records the configuration in the identity file, each step durable before the next.
 */
async function writeRecovery(
  opened: OpenedStorage,
  identityStore: IdentityStore,
  identity: DataIdentity,
  plan: RecoveryPlan,
): Promise<void> {
  const { storage } = opened;
  const { entry, configuration, survivor } = plan;
  assert(storage.lastIndex() === survivor.lastIndex, "the log changed while it was locked");
  const data = encodeConfiguration(configuration, survivor.clusterId);
  storage.append([{ index: entry.index, term: entry.term, kind: "config", data }]);
  const hard: HardState = { term: entry.term, votedFor: null, commitIndex: entry.index };
  storage.setHardState(hard);
  await storage.sync();
  assert(storage.termAt(entry.index) === entry.term, "the recovery entry is not in the log");
  await identityStore.save({
    ...identity,
    clusterId: survivor.clusterId,
    appliedConfig: { index: entry.index, config: configuration },
    configs: configsAfter(
      identity.configs ?? (identity.appliedConfig === null ? [] : [identity.appliedConfig]),
      { index: entry.index, config: configuration },
      storage.snapshot().index,
    ),
    // The members left out are removed, as a committed removal records them: one that comes
    // back with its old data is refused at the handshake, even by a survivor that knows it
    // from nothing else (not on its --peers, joined after it).
    removed: removedAfter(identity.removed ?? [], survivor.configuration, configuration),
  });
}
