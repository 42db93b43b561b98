/**
 * `baton sim` sweeps, in-process: the summary ends with the speed and the seed the next
 * range starts at, and the progress line on stderr counts the seeds done.
 */

import { afterEach, describe, expect, it, vi } from "vitest";
import { captureIo } from "../../harness/doubles/capture-io.js";
import { main } from "../../src/cli/main.js";

afterEach(() => {
  vi.restoreAllMocks();
  // `baton sim` sets the process's exit code (a reader that closes the pipe early ends the
  // process with it). Left set, it leaked into later files of a run without isolation:
  // commander's `help` exits with it, and `baton help` read as bad usage (exit 2).
  process.exitCode = undefined;
});

describe("cli: sim sweeps", () => {
  it("cli: a sweep prints its progress and ends with seeds/s and the next --from (one process)", async () => {
    const out: string[] = [];
    const err: string[] = [];
    vi.spyOn(console, "log").mockImplementation((line: unknown) => void out.push(String(line)));
    vi.spyOn(process.stderr, "write").mockImplementation((chunk: unknown) => {
      err.push(String(chunk));
      return true;
    });
    const code = await main(["sim", "--seeds", "2", "--from", "5", "--jobs", "1"], captureIo());
    vi.restoreAllMocks();
    expect(code).toBe(0);
    expect(out[0]).toMatch(/^seeds 5\.\.6: 2 runs in [0-9.]+s$/);
    expect(out.at(-1)).toMatch(
      /^ {2}speed: [0-9.]+ seeds\/s, 1 process; the next range starts at --from 7$/,
    );
    expect(err.join("")).toMatch(/seeds 5\.\.6: 2 done, [0-9.]+ seeds\/s, about 0 s left/);
  }, 60_000);

  it("cli: a violation is said the moment its seed fails, not only in the summary at the end (one process)", async () => {
    const err: string[] = [];
    vi.spyOn(console, "log").mockImplementation(() => {});
    vi.spyOn(process.stderr, "write").mockImplementation((chunk: unknown) => {
      err.push(String(chunk));
      return true;
    });
    // The core simulator with a deliberate bug (a wiped node keeps its identity) fails
    // seed 4 of these.
    const code = await main(
      ["sim", "--seeds", "5", "--from", "1", "--jobs", "1", "--negative-control", "keep_identity"],
      captureIo(),
    );
    vi.restoreAllMocks();
    expect(code).toBe(1);
    const said = err.join("");
    expect(said).toMatch(/ {2}VIOLATION seed 4: SafetyViolation: /);
    // Before the progress line that counts it.
    expect(said.indexOf("VIOLATION seed 4")).toBeLessThan(said.indexOf("5 done"));
  }, 60_000);

  it("cli: --jobs 0 and --seeds 0 are refused with the rule, not run as one process or none", async () => {
    for (const args of [
      ["--seeds", "2", "--jobs", "0"],
      ["--seeds", "0"],
    ]) {
      const io = captureIo();
      const code = await main(["sim", ...args], io);
      expect(code).toBe(2);
      expect(io.err()).toContain("expected an integer of at least 1");
    }
  });
});
