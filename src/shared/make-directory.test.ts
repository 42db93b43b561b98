import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { makeDirectory, statOf } from "./make-directory.js";

const root = mkdtempSync(join(tmpdir(), "baton-mkdir-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("making a directory and its parents", () => {
  it("makes every missing level, and an existing directory is fine", () => {
    const deep = join(root, "a", "b", "c");
    makeDirectory(deep);
    expect(statSync(deep).isDirectory()).toBe(true);
    makeDirectory(deep);
    makeDirectory(root);
  });

  it("a file in the way is named, whether it is the directory or one of its parents", () => {
    const file = join(root, "file");
    writeFileSync(file, "x");
    expect(() => makeDirectory(file)).toThrow(`${file} is a file, not a directory`);
    expect(() => makeDirectory(join(file, "sub", "deeper"))).toThrow(
      `${file} is a file, not a directory`,
    );
    expect(statOf(join(file, "sub"))).toBeUndefined();
  });

  it("a file system that refuses every mkdir ends the walk at once with its code (Node's recursive mkdir spins forever under /proc)", () => {
    let caught: NodeJS.ErrnoException | undefined;
    try {
      makeDirectory("/proc/baton-nope/data");
    } catch (error) {
      caught = error as NodeJS.ErrnoException;
    }
    expect(caught?.message).toBe("cannot create /proc/baton-nope: ENOENT");
    expect(caught?.code).toBe("ENOENT");
  });
});
