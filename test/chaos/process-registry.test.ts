import { describe, expect, it } from "vitest";
import { ManagedProcess, type ProcessExit, pidAlive } from "../../src/chaos/process-registry.js";

/**
 * A shell that starts two sleeps of its own and prints their PIDs: a stand-in for the
 * demo and its nodes.
 */
function parentOfTwo(group: boolean) {
  const children: number[] = [];
  const proc = new ManagedProcess(
    "parent",
    "sh",
    ["-c", "sleep 60 & echo $!; sleep 60 & echo $!; wait"],
    { group, onLine: (line) => children.push(Number(line)) },
  );
  return { proc, children };
}

async function until(condition: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * A node stand-in that says "ready" once its SIGTERM handler is in place: `onTerm` is what
 * the handler does ("" ignores the signal).
 */
async function startNode(onTerm: string): Promise<{ proc: ManagedProcess; exits: ProcessExit[] }> {
  const exits: ProcessExit[] = [];
  let ready = false;
  const script = `process.on("SIGTERM", () => { ${onTerm} }); console.log("ready"); setInterval(() => {}, 1000);`;
  const proc = new ManagedProcess("node", process.execPath, ["-e", script], {
    onLine: (line) => {
      if (line === "ready") ready = true;
    },
    onExit: (exit) => exits.push(exit),
  });
  proc.start();
  await until(() => ready);
  return { proc, exits };
}

describe("process registry", () => {
  it("process registry: a stop is an expected exit only when the process exits 0 within the grace time (exit 0, exit 3, SIGTERM ignored)", async () => {
    const ends: ProcessExit[] = [];
    for (const [onTerm, end] of [
      ["process.exit(0)", "stop"],
      ["process.exit(3)", "stop"],
      ["", "stop"],
      ["", "kill"],
    ] as const) {
      const { proc, exits } = await startNode(onTerm);
      await (end === "kill" ? proc.kill() : proc.stop(300));
      await until(() => exits.length === 1);
      ends.push(exits[0]!);
    }
    // A kill is expected whatever comes of it; a stop only when it ends cleanly.
    expect(ends.map((e) => e.expected)).toEqual([true, false, false, true]);
    expect(ends.map((e) => e.how)).toEqual([
      "code 0",
      "code 3",
      "SIGKILL, still running 300 ms after SIGTERM",
      "SIGKILL",
    ]);
    expect(ends.map((e) => e.stopping)).toEqual([true, true, true, false]);
  });

  it("a process started as a group takes its own children with it, on kill and on stop", async () => {
    for (const end of ["kill", "stop"] as const) {
      const { proc, children } = parentOfTwo(true);
      proc.start();
      await until(() => children.length === 2);
      expect(children.every(pidAlive)).toBe(true);
      await (end === "kill" ? proc.kill() : proc.stop(2000));
      await until(() => !children.some(pidAlive));
    }
  });

  it("without a group, the children outlive their parent (what the group option is for)", async () => {
    const { proc, children } = parentOfTwo(false);
    proc.start();
    await until(() => children.length === 2);
    await proc.kill();
    try {
      expect(children.every(pidAlive)).toBe(true);
    } finally {
      for (const pid of children) process.kill(pid, "SIGKILL");
    }
  });

  it("process registry: killIfRunning() says whether it killed anything: not a process that never started or has exited", async () => {
    const never = new ManagedProcess("never", process.execPath, ["-e", ""]);
    expect(await never.killIfRunning()).toBe(false);
    const { proc, exits } = await startNode("process.exit(0)");
    expect(await proc.killIfRunning()).toBe(true);
    await until(() => exits.length === 1);
    expect(await proc.killIfRunning()).toBe(false);
  });
});
