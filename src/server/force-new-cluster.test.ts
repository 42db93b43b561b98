import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import {
  CLUSTER_ID as CLUSTER,
  member,
  writeMemberDataDir,
} from "../../harness/doubles/member-data-dir.js";
import { makeTempDir, removeTempDirs } from "../../test/storage/helpers.js";
import { defaultReplicaConfig } from "../core/config.js";
import { decodeClusterId, decodeConfiguration } from "../core/configuration.js";
import { Prng } from "../core/prng.js";
import { Replica } from "../core/replica.js";
import { DiskStorage } from "../storage/disk-storage.js";
import { nodeFileSystem } from "../storage/file-system.js";
import { IdentityStore } from "../storage/identity-store.js";
import { forceNewCluster } from "./force-new-cluster.js";

afterEach(removeTempDirs);

/** A stopped member's data directory (see writeMemberDataDir). */
async function survivorDir(
  options: Parameters<typeof writeMemberDataDir>[1] = {},
): Promise<string> {
  const dir = await makeTempDir("baton-recover-");
  await writeMemberDataDir(dir, options);
  return dir;
}

async function reopen(dir: string) {
  const opened = await DiskStorage.open(dir);
  await opened.storage.close();
  return opened;
}

describe("forceNewCluster", () => {
  it("recover: the dry run reports what the survivor holds and writes nothing", async () => {
    const dir = await survivorDir();
    const plan = await forceNewCluster(dir, 1);
    expect(plan.survivor).toMatchObject({
      id: 1,
      clusterId: CLUSTER,
      incarnation: 11,
      term: 3,
      lastIndex: 9,
      lastTerm: 2,
      commitIndex: 7,
      configIndex: 1,
    });
    expect(plan.alreadyAlone).toBe(false);
    expect(plan.entry).toEqual({ index: 10, term: 4 });
    expect(plan.configuration).toEqual([member(1, 11)]);
    expect(plan.removed.map((m) => m.id)).toEqual([2, 3]);
    expect(plan.uncommitted).toEqual({ from: 8, to: 9 });
    const after = await reopen(dir);
    expect(after.entries.at(-1)?.index).toBe(9);
    expect(after.hardState.term).toBe(3);
  });

  it("recover: the write appends the sole-voter config entry at a new term and commits it", async () => {
    const dir = await survivorDir();
    await forceNewCluster(dir, 1, { write: true });
    const after = await reopen(dir);
    const last = after.entries.at(-1)!;
    expect(last).toMatchObject({ index: 10, term: 4, kind: "config" });
    expect(decodeConfiguration(last.data)).toEqual([member(1, 11)]);
    expect(after.entries.map((e) => e.index)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(after.hardState).toMatchObject({ term: 4, votedFor: null, commitIndex: 10 });
    const identity = (await IdentityStore.open(dir, nodeFileSystem)).identity();
    expect(identity).toMatchObject({
      clusterId: CLUSTER,
      incarnation: 11,
      appliedConfig: { index: 10, config: [member(1, 11)] },
    });
    // Run again (an operator retrying): nothing more to do, nothing written.
    const again = await forceNewCluster(dir, 1, { write: true });
    expect(again.alreadyAlone).toBe(true);
    expect((await reopen(dir)).entries.at(-1)?.index).toBe(10);
  });

  it("recover: the recovered node elects itself alone, commits its whole log and ignores the lost members", async () => {
    const dir = await survivorDir();
    await forceNewCluster(dir, 1, { write: true });
    const opened = await reopen(dir);
    const replica = new Replica(
      { ...defaultReplicaConfig(1, [1, 2, 3]), bindIncarnations: true, drawClusterId: true },
      new Prng(7),
      { ...opened, snapshot: { ...opened.snapshot, config: [member(1, 11)] } },
      { incarnation: 11, clusterId: CLUSTER },
    );
    for (let i = 0; i < 200 && replica.role !== "master"; i++) {
      replica.tick();
      const ready = replica.ready();
      const last = ready.entries.at(-1);
      if (last !== undefined) replica.persisted(last.index, last.term);
    }
    expect(replica.role).toBe("master");
    expect(replica.term).toBeGreaterThan(4);
    const ready = replica.ready();
    const last = ready.entries.at(-1);
    if (last !== undefined) replica.persisted(last.index, last.term);
    replica.ready();
    expect(replica.commitIndex).toBe(replica.lastIndex);
    expect(replica.commitIndex).toBeGreaterThanOrEqual(11);
    // Node 2 comes back with its old data directory: its log ends in term 2.
    const term = replica.term;
    const vote = replica.step({
      type: "vote_request",
      from: 2,
      to: 1,
      term: term + 1,
      incarnation: 22,
      preVote: true,
      handover: false,
      lastIndex: 9,
      lastTerm: 2,
    });
    expect(vote.ok).toBe(true);
    // Pre-vote: a master that hears from its quorum ignores it, or refuses it (older log).
    const out = replica.ready();
    const granted = [...out.messages, ...out.messagesNow].filter(
      (m) => m.type === "vote_response" && m.granted,
    );
    expect(granted).toEqual([]);
    const ack = replica.step({
      type: "heartbeat_response",
      from: 2,
      to: 1,
      term,
      incarnation: 22,
      readContext: 0,
    });
    expect(ack).toMatchObject({ ok: true, ignored: "not_member" });
    expect(replica.role).toBe("master");
    expect(replica.term).toBe(term);
  });

  it("recover: the cluster id comes from the log when the identity file does not hold it yet", async () => {
    const dir = await survivorDir({ identityClusterId: null });
    const plan = await forceNewCluster(dir, 1, { write: true });
    expect(plan.survivor.clusterId).toBe(CLUSTER);
    const last = (await reopen(dir)).entries.at(-1)!;
    expect(decodeClusterId(last.data)).toBe(CLUSTER);
    const identity = (await IdentityStore.open(dir, nodeFileSystem)).identity();
    expect(identity?.clusterId).toBe(CLUSTER);
  });

  it("recover: the configuration comes from the identity file when the log holds none (compacted)", async () => {
    const dir = await survivorDir({ configInLog: false, incarnation: 22 });
    const plan = await forceNewCluster(dir, 2, { write: true });
    expect(plan.survivor.configIndex).toBe(0);
    expect(plan.configuration).toEqual([{ ...member(2, 22) }]);
    const after = await reopen(dir);
    expect(decodeConfiguration(after.entries.at(-1)!.data)).toEqual([member(2, 22)]);
  });

  it("recover: a survivor that is already the only voter needs nothing", async () => {
    const dir = await survivorDir({ config: [member(1, 11), member(2, 22, false)] });
    const plan = await forceNewCluster(dir, 1, { write: true });
    expect(plan.alreadyAlone).toBe(true);
    expect((await reopen(dir)).entries.at(-1)?.index).toBe(9);
  });

  it("recover: refuses a directory that is missing, empty or not a data directory", async () => {
    const root = await makeTempDir("baton-recover-");
    await expect(forceNewCluster(join(root, "absent"), 1)).rejects.toThrow(
      /is empty or does not exist/,
    );
    await expect(forceNewCluster(root, 1)).rejects.toThrow(/is empty or does not exist/);
    await writeFile(join(root, "a-file"), "x");
    await expect(forceNewCluster(join(root, "a-file"), 1)).rejects.toThrow(/ENOTDIR/);
    await mkdir(join(root, "other"));
    await writeFile(join(root, "other", "notes.txt"), "hello");
    await expect(forceNewCluster(join(root, "other"), 1)).rejects.toThrow(/has no identity file/);
  });

  it("recover: refuses a directory a running node holds", async () => {
    const dir = await survivorDir();
    const held = await DiskStorage.open(dir);
    try {
      await expect(forceNewCluster(dir, 1, { write: true })).rejects.toThrow(
        /held by a running process .*stop that node first/,
      );
    } finally {
      await held.storage.close();
    }
  });

  it("recover: refuses a learner, a replaced incarnation, another node's directory, an unlisted id", async () => {
    const learner = await survivorDir({
      config: [member(1, 11, false), member(2, 22), member(3, 33)],
    });
    await expect(forceNewCluster(learner, 1)).rejects.toThrow(/node 1 is a learner/);
    const replaced = await survivorDir({ incarnation: 99 });
    await expect(forceNewCluster(replaced, 1)).rejects.toThrow(
      /lists node 1 with member incarnation 11, but this directory is incarnation 99/,
    );
    const other = await survivorDir({ incarnation: 22 });
    await expect(forceNewCluster(other, 1)).rejects.toThrow(/is node 2's data directory/);
    const unlisted = await survivorDir({ incarnation: 44 });
    await expect(forceNewCluster(unlisted, 4)).rejects.toThrow(/does not list node 4/);
  });

  it("recover: refuses a node still catching up after a wipe", async () => {
    const dir = await survivorDir({ hardState: { joining: true } });
    await expect(forceNewCluster(dir, 1)).rejects.toThrow(/it is joining/);
  });
});
