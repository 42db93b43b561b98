/**
 * A test double (in harness/, never published): a stopped member's data directory on real
 * files, as a node of a three-member cluster leaves it, for the tests of `baton recover`.
 */

import { type Configuration, encodeConfiguration } from "../../src/core/configuration.js";
import type { Entry, HardState, Member } from "../../src/protocol/messages.js";
import { DiskStorage } from "../../src/storage/disk-storage.js";
import { nodeFileSystem } from "../../src/storage/file-system.js";
import { IdentityStore } from "../../src/storage/identity-store.js";

export const CLUSTER_ID = "c-test";

/** Member `id` with incarnation `incarnation`, at 127.0.0.1:710<id> and :810<id>. */
export function member(id: number, incarnation: number, voter = true): Member {
  return {
    id,
    incarnation,
    voter,
    peerAddress: `127.0.0.1:710${id}`,
    httpUrl: `http://127.0.0.1:810${id}`,
  };
}

/** Nodes 1, 2 and 3, voters, with incarnations 11, 22 and 33. */
export const THREE: Configuration = [member(1, 11), member(2, 22), member(3, 33)];

function command(index: number, term: number): Entry {
  return { index, term, kind: "command", data: new TextEncoder().encode(`command ${index}`) };
}

/**
 * Writes into the empty directory `dir` what a stopped member leaves: entry 1 is the
 * config entry of `config` (a command with `configInLog` false: the configuration is then
 * only in the identity file, as after a compaction), 2..9 are commands (term 2 from 5 on),
 * current term 3, commit index 7 on disk, and an identity file with `incarnation`.
 */
export async function writeMemberDataDir(
  dir: string,
  options: {
    config?: Configuration;
    incarnation?: number;
    hardState?: Partial<HardState>;
    configInLog?: boolean;
    /** The cluster id the identity file holds (the log's config entry holds CLUSTER_ID). */
    identityClusterId?: string | null;
  } = {},
): Promise<void> {
  const config = options.config ?? THREE;
  const first: Entry =
    options.configInLog === false
      ? command(1, 1)
      : { index: 1, term: 1, kind: "config", data: encodeConfiguration(config, CLUSTER_ID) };
  const entries = [first];
  for (let index = 2; index <= 9; index++) entries.push(command(index, index < 5 ? 1 : 2));
  const { storage } = await DiskStorage.open(dir);
  storage.append(entries);
  storage.setHardState({ term: 3, votedFor: 2, commitIndex: 7, ...options.hardState });
  await storage.sync();
  await storage.close();
  const identity = await IdentityStore.open(dir, nodeFileSystem);
  await identity.save({
    clusterId: options.identityClusterId === undefined ? CLUSTER_ID : options.identityClusterId,
    incarnation: options.incarnation ?? 11,
    joinedConfig: null,
    appliedConfig: { index: 1, config },
  });
}
