/**
 * The file-system seam's helpers: what they turn into catalogued storage errors, and what
 * they must leave alone.
 */

import { mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { useTempDir } from "../../harness/vitest-hooks.js";
import { AssertionError } from "../../src/shared/assert.js";
import {
  closeQuietly,
  createDirDurably,
  type FileSystem,
  io,
  nodeFileSystem,
} from "../../src/storage/file-system.js";

const root = useTempDir("baton-fs-");

/** The real file system, except that no directory may be opened for fsync (EACCES). */
const parentUnreadable: FileSystem = {
  ...nodeFileSystem,
  syncDir: () =>
    Promise.reject(Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" })),
};

describe("file system", () => {
  it("file system: an I/O failure becomes a storage error naming the file (ERR_STORAGE_IO)", async () => {
    const failing = () =>
      Promise.reject(Object.assign(new Error("EIO: i/o error"), { code: "EIO" }));
    await expect(io("/data/wal/x.seg", "write", failing)).rejects.toMatchObject({
      code: "ERR_STORAGE_IO",
      file: "/data/wal/x.seg",
    });
  });

  it("file system: mkdir makes every missing level, ends with ENOENT under /proc (Node's recursive mkdir spins there) and ENOTDIR naming a parent that is a file", async () => {
    const deep = join(root, "a", "b", "c");
    await nodeFileSystem.mkdir(deep);
    await nodeFileSystem.mkdir(deep);
    expect(statSync(deep).isDirectory()).toBe(true);
    await expect(nodeFileSystem.mkdir("/proc/baton-data/n1")).rejects.toMatchObject({
      code: "ENOENT",
    });
    const file = join(root, "file");
    writeFileSync(file, "");
    await expect(nodeFileSystem.mkdir(join(file, "n1"))).rejects.toMatchObject({
      code: "ENOTDIR",
      path: file,
    });
  });

  it("file system: a bug inside an I/O operation stays an AssertionError (io, closeQuietly)", async () => {
    const bug = () => Promise.reject(new AssertionError("broken invariant"));
    await expect(io("/data/wal/x.seg", "write", bug)).rejects.toBeInstanceOf(AssertionError);
    const handle = {
      read: bug,
      write: bug,
      datasync: bug,
      truncate: bug,
      size: bug,
      close: bug,
    };
    await expect(closeQuietly(handle)).rejects.toBeInstanceOf(AssertionError);
  });

  it("file system: a data directory prepared inside a directory this process may not list is used as it is; a new one there is an error naming the parent", async () => {
    const prepared = join(root, "prepared");
    mkdirSync(prepared);
    await expect(createDirDurably(parentUnreadable, prepared)).resolves.toBeUndefined();
    await expect(createDirDurably(parentUnreadable, join(root, "new"))).rejects.toMatchObject({
      code: "ERR_STORAGE_IO",
      file: root,
    });
  });
});
