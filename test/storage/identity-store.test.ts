/**
 * The data directory's identity file: it survives a restart, a damaged one is refused
 * with the file's name, and a leftover of an interrupted update is removed.
 */

import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { nodeFileSystem } from "../../src/storage/file-system.js";
import {
  CONFIGS_KEPT_MAX,
  configAt,
  configsAfter,
  IdentityStore,
  identityFileName,
  REMOVED_MEMBERS_KEPT_MAX,
  removedAfter,
  sameConfigs,
} from "../../src/storage/identity-store.js";
import { makeTempDir, removeTempDirs } from "./helpers.js";

afterEach(removeTempDirs);

const identity = {
  clusterId: null,
  incarnation: 123_456_789,
  joinedConfig: null,
  appliedConfig: {
    index: 7,
    config: [{ id: 1, incarnation: 5, voter: true, peerAddress: "127.0.0.1:7101", httpUrl: "" }],
  },
};

/** A voter as a configuration lists it. */
const member = (id: number, incarnation: number) => ({
  id,
  incarnation,
  voter: true,
  peerAddress: `127.0.0.1:710${id}`,
  httpUrl: "",
});

describe("identity store", () => {
  it("identity: none in a new directory; a saved one survives a restart", async () => {
    const dir = await makeTempDir();
    const store = await IdentityStore.open(dir, nodeFileSystem);
    expect(store.identity()).toBeNull();
    await store.save(identity);
    const again = await IdentityStore.open(dir, nodeFileSystem);
    // A file without the removed members (older ones) reads as none removed.
    expect(again.identity()).toEqual({ ...identity, removed: [] });
    expect(await readdir(dir)).toEqual([identityFileName]);
  });

  it("identity: a damaged file is refused, naming the file (flipped byte, bad checksum)", async () => {
    const dir = await makeTempDir();
    const store = await IdentityStore.open(dir, nodeFileSystem);
    await store.save(identity);
    const path = join(dir, identityFileName);
    const text = await readFile(path, "utf8");
    await writeFile(path, text.replace("123456789", "123456788"));
    await expect(IdentityStore.open(dir, nodeFileSystem)).rejects.toMatchObject({
      code: "ERR_STORAGE_INCONSISTENT",
      message: expect.stringContaining(path),
    });
  });

  it("identity: the temporary file of an interrupted save is removed", async () => {
    const dir = await makeTempDir();
    await writeFile(join(dir, `${identityFileName}.tmp`), "half");
    const store = await IdentityStore.open(dir, nodeFileSystem);
    expect(store.identity()).toBeNull();
    expect(await readdir(dir)).toEqual([]);
  });

  it("identity: the members removed survive a restart, each as it was removed, until listed again", async () => {
    const [a, b, c] = [member(1, 11), member(2, 22), member(3, 33)];
    // 2 removed, then 3; 2 added back as another incarnation, which drops its removal.
    let removed = removedAfter([], [a, b, c], [a, c]);
    expect(removed).toEqual([{ id: 2, incarnation: 22, peerAddress: "127.0.0.1:7102" }]);
    removed = removedAfter(removed, [a, c], [a]);
    expect(removed.map((r) => r.id)).toEqual([2, 3]);
    removed = removedAfter(removed, [a], [a, member(2, 44)]);
    expect(removed).toEqual([{ id: 3, incarnation: 33, peerAddress: "127.0.0.1:7103" }]);
    // Removed again: the newest removal of an id is the one kept, and the list is bounded.
    removed = removedAfter(removed, [a, member(3, 55)], [a]);
    expect(removed).toEqual([{ id: 3, incarnation: 55, peerAddress: "127.0.0.1:7103" }]);
    const many = Array.from({ length: REMOVED_MEMBERS_KEPT_MAX + 5 }, (_, i) => member(i + 10, i));
    expect(removedAfter([], many, [])).toHaveLength(REMOVED_MEMBERS_KEPT_MAX);

    const dir = await makeTempDir();
    const store = await IdentityStore.open(dir, nodeFileSystem);
    await store.save({ ...identity, removed });
    expect((await IdentityStore.open(dir, nodeFileSystem)).identity()?.removed).toEqual(removed);
    // A list of the wrong shape is refused, naming the file.
    const path = join(dir, identityFileName);
    const body = JSON.stringify({
      format: "baton-identity-1",
      ...identity,
      removed: [{ id: "x" }],
    });
    await writeFile(path, `${body}\ncrc32 ${crc32(Buffer.from(body))}\n`);
    await expect(IdentityStore.open(dir, nodeFileSystem)).rejects.toThrow(/removed members/);
  });

  it("identity: the configuration in force at the snapshot's index survives a restart, not only the newest", async () => {
    const [a, b, c] = [member(1, 11), member(2, 22), member(3, 33)];
    const first = { index: 2, config: [a, b, c] };
    const removal = { index: 40, config: [a, b] };
    const back = { index: 90, config: [a, b, member(3, 77)] };
    // Snapshot at 30: removed at 40 and added back at 90, both after it.
    let configs = configsAfter([], first, 0);
    configs = configsAfter(configs, removal, 30);
    configs = configsAfter(configs, back, 30);
    expect(configs.map((c) => c.index)).toEqual([2, 40, 90]);
    const saved = { ...identity, appliedConfig: back, configs };
    expect(configAt(saved, 30)).toEqual(first.config);
    expect(configAt(saved, 40)).toEqual(removal.config);
    expect(configAt(saved, 100)).toEqual(back.config);
    expect(configAt(saved, 1)).toBeNull();
    // A newer snapshot (at 50) drops what is before the one in force at its index.
    expect(configsAfter(configs, { index: 120, config: [a] }, 50).map((c) => c.index)).toEqual([
      40, 90, 120,
    ]);
    // Applied again (a restart replays the log after the snapshot): kept once.
    expect(configsAfter(configs, back, 30).map((c) => c.index)).toEqual([2, 40, 90]);
    // Older than the newest (a snapshot at 90 adopted, not installed; the log applied
    // again below it): in its place, not dropped.
    expect(
      configsAfter([first, back], removal, 30).map((c) => c.index),
      "an older configuration merged in index order",
    ).toEqual([2, 40, 90]);
    expect(sameConfigs(configsAfter(configs, removal, 30), configs)).toBe(true);
    // Bounded: the oldest go first.
    let many = configsAfter([], first, 0);
    for (let i = 1; i <= CONFIGS_KEPT_MAX + 5; i++) {
      many = configsAfter(many, { index: 100 + i, config: [a] }, 0);
    }
    expect(many).toHaveLength(CONFIGS_KEPT_MAX);
    expect(configAt({ ...identity, configs: many }, 50)).toBeNull();

    const dir = await makeTempDir();
    const store = await IdentityStore.open(dir, nodeFileSystem);
    await store.save(saved);
    expect((await IdentityStore.open(dir, nodeFileSystem)).identity()?.configs).toEqual(configs);
    // Older files have none: no configuration is made up for a snapshot.
    await store.save(identity);
    const older = (await IdentityStore.open(dir, nodeFileSystem)).identity()!;
    expect(older.configs).toBeUndefined();
    expect(configAt(older, 30)).toBeNull();
    // A list of the wrong shape is refused, naming the file.
    const path = join(dir, identityFileName);
    const body = JSON.stringify({
      format: "baton-identity-1",
      ...identity,
      configs: [{ index: "x", config: [] }],
    });
    await writeFile(path, `${body}\ncrc32 ${crc32(Buffer.from(body))}\n`);
    await expect(IdentityStore.open(dir, nodeFileSystem)).rejects.toThrow(/configurations/);
  });
});
