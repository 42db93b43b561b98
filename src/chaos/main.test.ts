import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import { afterAll, describe, expect, it, vi } from "vitest";
import { register } from "./main.js";

/** Runs `baton chaos …` in-process up to its first refusal; returns exit code and stderr. */
async function chaos(args: string[]): Promise<{ code: number; err: string }> {
  const lines: string[] = [];
  const error = vi.spyOn(console, "error").mockImplementation((line: unknown) => {
    lines.push(String(line));
  });
  const program = new Command("baton").exitOverride();
  register(program);
  try {
    await program.parseAsync(["chaos", ...args], { from: "user" });
    return { code: Number(process.exitCode ?? 0), err: lines.join("\n") };
  } finally {
    error.mockRestore();
    process.exitCode = undefined;
  }
}

describe("baton chaos refuses a report folder it cannot make before starting anything", () => {
  const root = mkdtempSync(join(tmpdir(), "baton-chaos-out-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("names a parent that is a file", async () => {
    const file = join(root, "file");
    writeFileSync(file, "");
    const result = await chaos(["--out", join(file, "report"), "--duration", "12"]);
    expect(result.code).toBe(2);
    expect(result.err).toBe(
      `--out: ${file} is a file, not a directory; give a folder that can be created`,
    );
  });

  it("ends under a file system that refuses every mkdir (/proc), naming the level", async () => {
    const result = await chaos(["--out", "/proc/baton-report/x", "--duration", "12"]);
    expect(result.code).toBe(2);
    expect(result.err).toBe(
      "--out: cannot create /proc/baton-report: ENOENT; give a folder that can be created",
    );
  });
});
