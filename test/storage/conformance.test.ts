/**
 * Runs the storage conformance suite against both implementations: DiskStorage on real
 * temporary directories (small segments, so the log rolls during the tests) and
 * MemoryStorage on a MemoryVolume.
 */

import { rm } from "node:fs/promises";
import { DiskStorage } from "../../src/storage/disk-storage.js";
import { MemoryStorage, MemoryVolume } from "../../src/storage/memory-storage.js";
import { runStorageConformance } from "../conformance/storage.suite.js";
import { makeTempDir } from "./helpers.js";

runStorageConformance({
  name: "disk",
  async create() {
    const dir = await makeTempDir("baton-conformance-");
    return {
      open: () => DiskStorage.open(dir, { config: { walSegmentBytes: 4096 } }),
      dispose: () => rm(dir, { recursive: true, force: true }),
    };
  },
});

runStorageConformance({
  name: "memory",
  async create() {
    const volume = new MemoryVolume();
    return { open: () => MemoryStorage.open(volume), dispose: async () => {} };
  },
});
