/**
 * `baton snapshot save` interrupted: a real CLI process (through tsx) saves from a fake
 * master whose snapshot never finishes arriving, and gets Ctrl-C (SIGINT) while it writes.
 * Its work folder (`.FILE.PID.partial`, as large as the store) must not stay behind. And,
 * in-process, a master whose advertised address does not reach it from here, and a FILE
 * that is taken, a directory, or in a directory that does not exist.
 */

import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { afterEach, expect, it } from "vitest";
import { captureIo } from "../../harness/doubles/capture-io.js";
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
import { main } from "../../src/cli/main.js";

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

/**
 * A fake master whose status advertises `advertised` as its HTTP API (null: its own URL),
 * serving `data`.
 */
async function masterAdvertising(advertised: string | null, data: Buffer): Promise<FakeCluster> {
  const cluster = await FakeCluster.start(1, 1);
  cluster.node(1).intercept = (request, reply) => {
    if (request.url.startsWith("/v1/status")) {
      const httpUrl = advertised ?? cluster.node(1).url;
      reply.send({
        id: 1,
        role: "master",
        term: 1,
        master: 1,
        commitIndex: 10,
        appliedIndex: 10,
        lastIndex: 10,
        members: [{ id: 1, address: "127.0.0.1:7101", httpUrl, role: "master" }],
      });
      return true;
    }
    if (request.method !== "POST" || request.url !== "/v1/snapshot") return false;
    reply
      .header("content-type", "application/octet-stream")
      .header("baton-snapshot-index", "10")
      .header("baton-snapshot-term", "1")
      .header("baton-snapshot-crc32", String(crc32(data)))
      .send(data);
    return true;
  };
  return cluster;
}

it("snapshot save: a master whose advertised address does not reach it from here is asked through the endpoint given", async () => {
  fake = await masterAdvertising("http://127.0.0.1:1", Buffer.from("the store's data"));
  const dir = makeTempDir("baton-save-");
  try {
    const file = join(dir, "backup.snap");
    const io = captureIo();
    const code = await main(
      ["snapshot", "save", file, "--endpoints", fake.node(1).url, "--timeout", "5000"],
      io,
    );
    expect(io.err()).toBe("");
    expect(code).toBe(0);
    expect(io.out()).toContain(`saved ${file}: index 10`);
    expect(existsSync(file)).toBe(true);
  } finally {
    removeTempDir(dir);
  }
});

it("snapshot save: a master reached by no address says which address failed, not 'is the cluster up?'", async () => {
  fake = await masterAdvertising("http://127.0.0.1:1", Buffer.from("x"));
  fake.node(1).intercept = ((inner) => (request, reply, node) => {
    // Only the status answers: as through a proxy that passes nothing else.
    if (request.url.startsWith("/v1/snapshot")) {
      reply.code(503).send({ error: "not the master", code: "ERR_NOT_MASTER" });
      return true;
    }
    return inner!(request, reply, node);
  })(fake.node(1).intercept);
  const dir = makeTempDir("baton-save-");
  try {
    const io = captureIo();
    const code = await main(
      [
        "snapshot",
        "save",
        join(dir, "b.snap"),
        "--endpoints",
        fake.node(1).url,
        "--timeout",
        "600",
      ],
      io,
    );
    expect(code).toBe(3);
    expect(io.err()).toContain(
      "the master, node 1, did not answer at the address it advertises, http://127.0.0.1:1",
    );
    expect(io.err()).toContain("--advertise-http");
  } finally {
    removeTempDir(dir);
  }
});

it("timing: snapshot save gives up at its --timeout when the master takes the request and never answers (exit 3)", async () => {
  fake = await masterAdvertising(null, Buffer.from("x"));
  fake.node(1).intercept = ((inner) => (request, reply, node) => {
    // The master takes the request and never answers it.
    if (request.url.startsWith("/v1/snapshot")) return new Promise<boolean>(() => {});
    return inner!(request, reply, node);
  })(fake.node(1).intercept);
  const dir = makeTempDir("baton-save-");
  try {
    const io = captureIo();
    const started = Date.now();
    const code = await main(
      [
        "snapshot",
        "save",
        join(dir, "b.snap"),
        "--endpoints",
        fake.node(1).url,
        "--timeout",
        "1000",
      ],
      io,
    );
    // Before, it waited for undici's own 300 s per attempt, --timeout notwithstanding.
    expect(code).toBe(3);
    expect(Date.now() - started).toBeLessThan(5000);
  } finally {
    removeTempDir(dir);
  }
}, 20_000);

it("timing: snapshot save with no node answering says it is waiting, then gives up naming the endpoint (exit 3)", async () => {
  const dir = makeTempDir("baton-save-");
  try {
    const io = captureIo();
    const started = Date.now();
    const code = await main(
      [
        "snapshot",
        "save",
        join(dir, "b.snap"),
        "--endpoints",
        "http://127.0.0.1:1",
        "--timeout",
        "4000",
      ],
      io,
    );
    expect(code).toBe(3);
    expect(io.err()).toContain(
      "baton snapshot save: no snapshot yet; waiting for a master and its answer, up to 4 s in all (--timeout)",
    );
    expect(io.err()).toContain("no node answered at http://127.0.0.1:1");
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(readdirSync(dir)).toEqual([]);
  } finally {
    removeTempDir(dir);
  }
});

it("snapshot save: refuses an existing FILE without --force, a missing directory and a directory (exit 2), naming what to do", async () => {
  fake = await masterAdvertising(null, Buffer.from("the store's data"));
  const dir = makeTempDir("baton-save-");
  try {
    const save = async (file: string, ...extra: string[]) => {
      const io = captureIo();
      const args = ["snapshot", "save", file, "--endpoints", fake!.node(1).url];
      const code = await main([...args, "--timeout", "5000", ...extra], io);
      return { code, out: io.out(), err: io.err() };
    };
    const file = join(dir, "backup.snap");
    writeFileSync(file, "last night's backup");
    expect(await save(file)).toMatchObject({
      code: 2,
      err: `baton snapshot save: ${file} already exists: pass --force to overwrite it, or give another FILE\n`,
    });
    expect(readFileSync(file, "utf8")).toBe("last night's backup");
    const forced = await save(file, "--force");
    expect(forced.code).toBe(0);
    expect(forced.out).toContain(`saved ${file}: index 10`);
    expect(readFileSync(file, "utf8")).not.toBe("last night's backup");

    const missing = join(dir, "no-such-dir");
    expect(await save(join(missing, "b.snap"))).toMatchObject({
      code: 2,
      err: `baton snapshot save: the directory ${missing} does not exist: create it first (mkdir -p ${missing}), or save into one that exists\n`,
    });
    expect(existsSync(missing)).toBe(false);

    for (const extra of [[], ["--force"]]) {
      expect(await save(dir, ...extra)).toMatchObject({
        code: 2,
        err: `baton snapshot save: ${dir} is a directory: give a file name in it, such as ${join(dir, "backup.snap")}\n`,
      });
    }
  } finally {
    removeTempDir(dir);
  }
});
