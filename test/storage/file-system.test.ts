/**
 * The file-system seam's helpers: what they turn into catalogued storage errors, and what
 * they must leave alone.
 */

import { describe, expect, it } from "vitest";
import { AssertionError } from "../../src/shared/assert.js";
import { closeQuietly, io } from "../../src/storage/file-system.js";

describe("file system", () => {
  it("file system: an I/O failure becomes a storage error naming the file (ERR_STORAGE_IO)", async () => {
    const failing = () =>
      Promise.reject(Object.assign(new Error("EIO: i/o error"), { code: "EIO" }));
    await expect(io("/data/wal/x.seg", "write", failing)).rejects.toMatchObject({
      code: "ERR_STORAGE_IO",
      file: "/data/wal/x.seg",
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
});
