/**
 * `baton snapshot save` interrupted: a real CLI process (through tsx) saves from a fake
 * master whose snapshot never finishes arriving, and gets Ctrl-C (SIGINT) while it writes.
 * Its work folder (`.FILE.PID.partial`, as large as the store) must not stay behind.
 */

import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { FakeCluster } from "../../harness/doubles/fake-cluster.js";
import {
  batonCommand,
  ManagedProcess,
  makeTempDir,
  REPO_ROOT,
  removeTempDir,
  waitFor,
} from "../../harness/processes.js";
import { useClusterHarness } from "../../harness/vitest-hooks.js";

useClusterHarness();

let fake: FakeCluster | null = null;
afterEach(async () => {
  await fake?.close();
  fake = null;
});

it("timing: snapshot save stopped by Ctrl-C while it writes leaves no work folder", async () => {
  fake = await FakeCluster.start(1, 1);
  let asked = false;
  fake.node(1).intercept = (request, reply) => {
    if (request.method !== "POST" || request.url !== "/v1/snapshot") return false;
    asked = true;
    // Announces a megabyte and sends a kilobyte of it: the save waits for the rest.
    reply.hijack();
    reply.raw.writeHead(200, {
      "content-type": "application/octet-stream",
      "content-length": String(1024 * 1024),
      "baton-snapshot-index": "10",
      "baton-snapshot-term": "1",
      "baton-snapshot-crc32": "0",
    });
    reply.raw.write(Buffer.alloc(1024, 7));
    return true;
  };
  const dir = makeTempDir("baton-save-");
  try {
    const file = join(dir, "backup.snap");
    const { command, args } = batonCommand("source");
    let exited: (exit: { code: number | null; how: string }) => void = () => {};
    const exit = new Promise<{ code: number | null; how: string }>((done) => {
      exited = done;
    });
    const cli = new ManagedProcess(
      "snapshot save",
      command,
      [...args, "snapshot", "save", file, "--endpoints", fake.node(1).url],
      { cwd: REPO_ROOT, onExit: (e) => exited(e) },
    );
    cli.start();
    await waitFor(
      "the save's work folder",
      () => (asked && readdirSync(dir).some((name) => name.endsWith(".partial"))) || undefined,
      20_000,
    );
    cli.signal("SIGINT");
    expect(await exit).toMatchObject({ code: null, how: "SIGINT" });
    expect(readdirSync(dir)).toEqual([]);
    expect(existsSync(file)).toBe(false);
  } finally {
    removeTempDir(dir);
  }
}, 60_000);
