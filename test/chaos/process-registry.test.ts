import { describe, expect, it } from "vitest";
import { ManagedProcess, pidAlive } from "../../src/chaos/process-registry.js";

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

describe("process registry", () => {
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
});
