/**
 * How `baton demo` stops, with real processes. Ctrl-C in a terminal sends SIGINT to the
 * demo and to each of its nodes at once (one process group): every node stops on its own
 * signal and exits with code 0, and the demo sends nothing more to a node that said it is
 * stopping (a second signal that lands while a process exits ends it "by signal": the demo
 * used to report "node 2 exited (SIGTERM)" after a clean stop, in about one `npm start` out
 * of three; src/cli/commands/demo.test.ts pins that decision, this file the whole stop).
 * A demo stopped on its own (`kill -INT <pid of the demo>`) sends its nodes the SIGINT they
 * did not get.
 *
 * Real processes through tsx, hence `timing:` names. The demo runs in a process group of
 * its own, killed whole after each test, pass or fail (harness/vitest-hooks.ts).
 */

import { createServer } from "node:net";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  demoCommand,
  freeConsecutivePorts,
  ManagedProcess,
  REPO_ROOT,
  waitFor,
} from "../../harness/processes.js";
import { useClusterHarness, useTempDir } from "../../harness/vitest-hooks.js";

useClusterHarness();
const root = useTempDir("baton-demo-stop-");

interface RunningDemo {
  readonly process: ManagedProcess;
  readonly output: string[];
  readonly exited: Promise<string>;
}

async function startDemo(name: string): Promise<RunningDemo> {
  const [peerPort, httpPort] = [await freeConsecutivePorts(3), await freeConsecutivePorts(3)];
  const output: string[] = [];
  let onExit: (how: string) => void = () => {};
  const exited = new Promise<string>((resolve) => {
    onExit = resolve;
  });
  const command = demoCommand({ data: join(root, name), peerPort, httpPort, load: 0 });
  const demo = new ManagedProcess("demo", command.command, command.args, {
    cwd: REPO_ROOT,
    group: true,
    onLine: (line) => output.push(line),
    onExit: (exit) => onExit(exit.how),
  });
  demo.start();
  await waitFor(
    "a master and two backups in the demo's output",
    () => output.filter((line) => / became (master|backup) /.test(line)).length >= 3 || undefined,
    60_000,
  );
  return { process: demo, output, exited };
}

/** The demo's "node N exited (…)" lines, by node. */
function exits(output: readonly string[]): Map<number, string> {
  const found = new Map<number, string>();
  for (const line of output) {
    const match = / node (\d+) exited \((.+)\)$/.exec(line);
    if (match !== null) found.set(Number(match[1]), match[2]!);
  }
  return found;
}

describe("baton demo: stopping", () => {
  it("timing: Ctrl-C (SIGINT to the whole group) stops every node with code 0", async () => {
    const demo = await startDemo("ctrl-c");
    demo.process.signal("SIGINT");
    expect(await demo.exited).toBe("code 0");
    const text = demo.output.join("\n");
    expect(text).toContain("all nodes stopped.");
    expect([...exits(demo.output).entries()].sort()).toEqual([
      [1, "code 0"],
      [2, "code 0"],
      [3, "code 0"],
    ]);
  }, 90_000);

  it("timing: SIGINT to the demo alone stops every node with code 0", async () => {
    const demo = await startDemo("demo-alone");
    const stoppingAt = demo.output.length;
    process.kill(demo.process.pid!, "SIGINT");
    expect(await demo.exited).toBe("code 0");
    expect(demo.output.slice(stoppingAt).join("\n")).toContain("all nodes stopped.");
    expect([...exits(demo.output).entries()].sort()).toEqual([
      [1, "code 0"],
      [2, "code 0"],
      [3, "code 0"],
    ]);
  }, 90_000);
});

describe("baton demo: when its nodes cannot run", () => {
  it("timing: every node failing to start (its ports taken) ends the demo with exit 1 and says why", async () => {
    const [peerPort, httpPort] = [await freeConsecutivePorts(3), await freeConsecutivePorts(3)];
    // Something else holds every node's HTTP port.
    const holders = await Promise.all(
      [0, 1, 2].map(async (i) => {
        const server = createServer();
        await new Promise<void>((resolve) => server.listen(httpPort + i, "127.0.0.1", resolve));
        return server;
      }),
    );
    try {
      const output: string[] = [];
      const exited = new Promise<number | null>((resolve) => {
        const command = demoCommand({ data: join(root, "taken"), peerPort, httpPort, load: 0 });
        new ManagedProcess("demo", command.command, command.args, {
          cwd: REPO_ROOT,
          group: true,
          onLine: (line) => output.push(line),
          onExit: (exit) => resolve(exit.code),
        }).start();
      });
      expect(await exited).toBe(1);
      expect(output.join("\n")).toContain("every node exited with an error");
    } finally {
      await Promise.all(holders.map((s) => new Promise((resolve) => s.close(resolve))));
    }
  }, 60_000);

  it("timing: a --host other machines can reach is refused before anything starts (exit 2)", async () => {
    const command = demoCommand({
      data: join(root, "host"),
      peerPort: 7101,
      httpPort: 8101,
      load: 0,
    });
    const output: string[] = [];
    const code = await new Promise<number | null>((resolve) => {
      new ManagedProcess("demo", command.command, [...command.args, "--host", "10.11.12.13"], {
        cwd: REPO_ROOT,
        onLine: (line) => output.push(line),
        onExit: (exit) => resolve(exit.code),
      }).start();
    });
    expect(code).toBe(2);
    expect(output.join("\n")).toContain("is not a loopback address");
  }, 30_000);
});
