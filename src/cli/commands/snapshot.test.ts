import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { captureIo } from "../../../harness/doubles/capture-io.js";
import { restore } from "./snapshot.js";

describe("baton snapshot restore: a FILE that is not a snapshot is bad usage", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "baton-restore-usage-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  async function restoreOf(file: string): Promise<{ code: number; err: string }> {
    const io = captureIo();
    const code = await restore(file, join(dir, "data"), io);
    expect(io.out()).toBe("");
    return { code, err: io.err() };
  }

  it("a missing file, a directory and another kind of file exit 2, naming the file, and write nothing", async () => {
    writeFileSync(join(dir, "notes.txt"), "these are not the bytes of a snapshot file");
    const cases: [string, string][] = [
      [join(dir, "missing.snap"), "cannot be read (ENOENT)"],
      [dir, "is a directory"],
      [join(dir, "notes.txt"), "is not a snapshot file"],
    ];
    for (const [file, why] of cases) {
      expect(await restoreOf(file)).toEqual({
        code: 2,
        err: `baton snapshot restore: ${file} ${why}: give the path of a file \`baton snapshot save\` wrote (nothing was written)\n`,
      });
    }
    expect(readdirSync(dir)).toEqual(["notes.txt"]);
  });
});
