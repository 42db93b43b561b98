/**
 * `baton start` and SIGHUP with a real process: under a service manager SIGHUP means
 * "reload", and a reload asked while the node is still starting (here: asking the member of
 * --join for its identity) must not kill it, since a process killed by SIGHUP is a clean
 * exit to systemd, which then does not restart it.
 */

import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { Cluster } from "../../harness/cluster.js";
import {
  batonCommand,
  freePorts,
  ManagedProcess,
  makeTempDir,
  removeTempDir,
  sleep,
  waitFor,
} from "../../harness/processes.js";
import { useClusterHarness } from "../../harness/vitest-hooks.js";

useClusterHarness();

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

it("timing: a SIGHUP while --join waits for the member's answer is queued, not fatal (systemd)", async () => {
  const held: ServerResponse[] = [];
  const member = createServer((_request: IncomingMessage, response: ServerResponse) => {
    held.push(response);
  });
  await new Promise<void>((resolve) => member.listen(0, "127.0.0.1", resolve));
  cleanups.push(() => new Promise<void>((resolve) => member.close(() => resolve())));
  cleanups.push(() => {
    for (const response of held) response.destroy();
  });
  const { port } = member.address() as AddressInfo;
  const dir = makeTempDir("baton-start-hup-");
  cleanups.push(() => removeTempDir(dir));
  const [peerPort, httpPort] = await freePorts(2);
  const { command, args } = batonCommand("source");
  let exit: { code: number | null; how: string } | null = null;
  const lines: string[] = [];
  const node = new ManagedProcess(
    "joiner",
    command,
    [
      ...args,
      "start",
      ...["--id", "4", "--listen", `127.0.0.1:${peerPort}`, "--http", `127.0.0.1:${httpPort}`],
      ...["--data", join(dir, "n4"), "--join", `http://127.0.0.1:${port}`, "--token", "t0ken"],
    ],
    {
      // What systemd sets for a service's processes: SIGHUP is a reload there.
      env: { ...process.env, INVOCATION_ID: "0123456789abcdef" },
      onLine: (line) => lines.push(line),
      onExit: (ended) => {
        exit = ended;
      },
    },
  );
  cleanups.push(() => node.kill());
  const pid = node.start();
  await waitFor("the join request", () => (held.length > 0 ? true : undefined), 30_000);
  process.kill(pid, "SIGHUP");
  await sleep(500);
  expect(exit, lines.join("\n")).toBeNull();
  // The member refuses: the start fails on its own terms, with its exit code.
  const refusal = JSON.stringify({ error: "no such member", code: "ERR_INVALID_INPUT" });
  for (const response of held.splice(0)) {
    response.writeHead(400, { "content-type": "application/json" }).end(refusal);
  }
  const ended = await waitFor("the start to give up", () => exit ?? undefined, 30_000);
  expect(ended.code, lines.join("\n")).toBe(1);
}, 90_000);

it("timing: a second SIGTERM while a master waits to hand over ends it at once (exit code 1)", async () => {
  // Long election timeouts: the hand-over would wait several seconds for a backup.
  const cluster = await Cluster.start({ electionMs: "1000-2000", heartbeatMs: 100 });
  const master = await cluster.waitForMaster();
  const node = cluster.node(master.id);
  // With every backup paused the hand-over waits (several election timeouts).
  for (const other of cluster.nodes) if (other.id !== master.id) cluster.pause(other.id);
  const since = performance.now();
  node.signal("SIGTERM");
  await node.waitForLog("the stop", (line) => line.json?.signal === "SIGTERM", 10_000, since);
  await sleep(200);
  const second = performance.now();
  node.signal("SIGTERM");
  await node.exited();
  expect(performance.now() - second).toBeLessThan(1_500);
  // The harness notes the exit once the last line is read.
  await node.waitForLog(
    "the exit, code 1",
    (line) => /exited \(code 1\)/.test(line.text),
    5_000,
    since,
  );
  for (const other of cluster.nodes) if (other.id !== master.id) cluster.resume(other.id);
}, 90_000);
