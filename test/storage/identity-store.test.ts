/**
 * The data directory's identity file: it survives a restart, a damaged one is refused
 * with the file's name, and a leftover of an interrupted update is removed.
 */

import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { nodeFileSystem } from "../../src/storage/file-system.js";
import { IdentityStore, identityFileName } from "../../src/storage/identity-store.js";
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

describe("identity store", () => {
  it("identity: none in a new directory; a saved one survives a restart", async () => {
    const dir = await makeTempDir();
    const store = await IdentityStore.open(dir, nodeFileSystem);
    expect(store.identity()).toBeNull();
    await store.save(identity);
    const again = await IdentityStore.open(dir, nodeFileSystem);
    expect(again.identity()).toEqual(identity);
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
});
