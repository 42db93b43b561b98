/**
 * Backup and restore with real processes: a three-node cluster takes writes (some keys
 * overwritten, some deleted, across several snapshots and compactions), `baton snapshot
 * save` fetches a snapshot from its master while writes go on, and `baton snapshot restore`
 * seeds the three data directories of a new cluster on other ports. The new cluster elects
 * a master and holds every key the old one had acknowledged before the save, with the same
 * values and revisions, and takes writes after them. The CLI runs in-process.
 */

import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it, onTestFinished } from "vitest";
import { Cluster } from "../../harness/cluster.js";
import { captureIo } from "../../harness/doubles/capture-io.js";
import { useClusterHarness } from "../../harness/vitest-hooks.js";
import { restore } from "../../src/cli/commands/snapshot.js";
import { main } from "../../src/cli/main.js";
import { type BatonClient, createClient } from "../../src/client/index.js";

useClusterHarness();

const KEYS = 600;

async function baton(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = captureIo();
  const code = await main(args, io);
  return { code, out: io.out(), err: io.err() };
}

function clientOf(cluster: Cluster): BatonClient {
  return createClient({ endpoints: cluster.endpoints(), deadlineMs: 20_000 });
}

it("timing: snapshot save from a loaded cluster, restore into a new three-node cluster, every key there", async () => {
  const old = await Cluster.start({ snapshotEntries: 200 });
  const client = clientOf(old);
  const expected = new Map<string, { value: string; revision: number }>();
  try {
    for (let round = 0; round < 2; round++) {
      await Promise.all(
        Array.from({ length: KEYS }, async (_, i) => {
          const value = `value-${i}-round-${round}`;
          const { revision } = await client.put(`key/${i}`, value);
          expected.set(`key/${i}`, { value, revision });
        }),
      );
    }
    for (let i = 0; i < KEYS; i += 10) {
      await client.delete(`key/${i}`);
      expected.delete(`key/${i}`);
    }
    // Writes keep going during the save: the snapshot holds at least everything above.
    let writing = true;
    const background = (async () => {
      for (let n = 0; writing; n++) await client.put(`during/${n % 50}`, `w${n}`);
    })();
    const file = join(old.root, "backup.snap");
    // Work folders of earlier saves: one whose process is gone (killed: no pid is ever
    // 4194304, Linux's largest pid_max) is removed, one whose process runs (pid 1) is not.
    for (const pid of [4194304, 1]) {
      mkdirSync(join(old.root, `.backup.snap.${pid}.partial`));
      writeFileSync(join(old.root, `.backup.snap.${pid}.partial`, "snapshot"), "half");
    }
    const saved = await baton(["snapshot", "save", file, "--endpoints", old.endpoints().join(",")]);
    writing = false;
    await background;
    expect(saved.err).toBe("");
    expect(saved.code).toBe(0);
    expect(saved.out).toMatch(
      /^saved .*backup\.snap: index \d+ .* term \d+, \d+ bytes of data, crc32 0x[0-9a-f]{8}, from http/,
    );
    expect(readdirSync(old.root).filter((name) => name.endsWith(".partial"))).toEqual([
      ".backup.snap.1.partial",
    ]);

    const fresh = await Cluster.start({ startIds: [] });
    for (const node of fresh.nodes) {
      const restored = await baton(["snapshot", "restore", file, "--data", node.dataDir]);
      expect(restored.err).toBe("");
      expect(restored.code).toBe(0);
    }
    // A directory written to while restore checked the file (a node started on it, then
    // stopped) is refused, and what the other process wrote is left as it is.
    const raced = mkdtempSync(join(tmpdir(), "baton-restore-race-"));
    try {
      const io = captureIo();
      const code = await restore(file, raced, io, async () => {
        writeFileSync(join(raced, "identity"), "another process's file");
      });
      expect(code).toBe(2);
      expect(io.err()).toMatch(/is no longer empty \(identity\): something wrote to it/);
      expect(readdirSync(raced).sort()).toEqual(["identity", "snapshots", "wal"]);
    } finally {
      rmSync(raced, { recursive: true, force: true });
    }
    // A damaged copy of the backup is refused as a damaged file, before anything is written
    // (not with a node's advice to wipe and rejoin).
    const damaged = mkdtempSync(join(tmpdir(), "baton-restore-damaged-"));
    try {
      const bytes = readFileSync(file);
      const at = Math.floor(bytes.length / 2);
      bytes[at] = bytes[at]! ^ 0xff;
      writeFileSync(join(damaged, "bad.snap"), bytes);
      const io = captureIo();
      const code = await restore(join(damaged, "bad.snap"), join(damaged, "data"), io);
      expect(code).toBe(1);
      expect(io.err()).toMatch(
        /bad\.snap is damaged at byte \d+: .*; nothing was written to .*data: restore another backup/,
      );
      expect(io.err()).not.toContain("--join");
      expect(readdirSync(damaged)).toEqual(["bad.snap"]);
    } finally {
      rmSync(damaged, { recursive: true, force: true });
    }
    for (const node of fresh.nodes) fresh.startNode(node.id);
    await fresh.waitForMaster();
    // Each restored directory came with an identity of its own: no node took its
    // directory for one written before identities existed.
    for (const node of fresh.nodes) expect(node.events("identity")).toEqual([]);
    const next = clientOf(fresh);
    try {
      for (const [key, { value, revision }] of expected) {
        const entry = await next.get(key);
        expect(entry?.text(), key).toBe(value);
        expect(entry?.revision, key).toBe(revision);
      }
      for (let i = 0; i < KEYS; i += 10) expect(await next.get(`key/${i}`)).toBeNull();
      const index = Number(/index (\d+)/.exec(saved.out)?.[1]);
      const { revision } = await next.put("after-restore", "yes");
      expect(revision).toBeGreaterThan(index);
    } finally {
      await next.close();
    }
  } finally {
    await client.close();
  }
}, 120_000);

it("timing: snapshot restore refuses a data directory that holds anything, and a file that is not a snapshot", async () => {
  const dir = mkdtempSync(join(tmpdir(), "baton-restore-"));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, "data"));
  writeFileSync(join(dir, "data", "hard-state"), "x");
  writeFileSync(join(dir, "not.snap"), "hello, this is not a snapshot file at all.......");
  const busy = await baton([
    "snapshot",
    "restore",
    join(dir, "not.snap"),
    "--data",
    join(dir, "data"),
  ]);
  expect(busy.code).toBe(2);
  expect(busy.err).toContain("is not empty");
  const bad = await baton([
    "snapshot",
    "restore",
    join(dir, "not.snap"),
    "--data",
    join(dir, "new"),
  ]);
  // A FILE that is no snapshot is bad usage, as `put --file` of an unreadable file is.
  expect(bad.code).toBe(2);
  expect(bad.err).toContain("is not a snapshot file");
  // A --data that is a file, not a directory: an error that names it, not a stack trace.
  const notADirectory = await baton([
    "snapshot",
    "restore",
    join(dir, "not.snap"),
    "--data",
    join(dir, "not.snap"),
  ]);
  expect(notADirectory.code).toBe(2);
  expect(notADirectory.err).toMatch(/--data .*not\.snap: .*ENOTDIR/);
});
