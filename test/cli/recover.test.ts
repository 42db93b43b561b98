/**
 * `baton recover` in-process on data directories written by the storage itself: what the
 * dry run prints and that it writes nothing, what `--force-new-cluster` prints, and the
 * exit codes of a refusal and of bad usage. The rewrite itself is tested beside it
 * (src/server/force-new-cluster.test.ts); real processes in test/integration/recover.test.ts.
 */

import { appendFileSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { captureIo } from "../../harness/doubles/capture-io.js";
import { CLUSTER_ID, writeMemberDataDir } from "../../harness/doubles/member-data-dir.js";
import { main } from "../../src/cli/main.js";
import { nodeFileSystem } from "../../src/storage/file-system.js";
import { IdentityStore } from "../../src/storage/identity-store.js";

const root = mkdtempSync(join(tmpdir(), "baton-recover-cli-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function run(args: string[]) {
  const io = captureIo();
  const code = await main(args, io);
  return { code, out: io.out(), err: io.err() };
}

describe("recover", () => {
  it("recover: the dry run prints the survivor, the plan and the risk, and writes nothing (exit 0)", async () => {
    const dir = join(root, "dry");
    await writeMemberDataDir(dir);
    const segments = readdirSync(join(dir, "wal"));
    const r = await run(["recover", "--id", "1", "--data", dir]);
    expect(r.code).toBe(0);
    expect(r.err).toBe("");
    expect(r.out).toContain(
      `data directory ${dir}: node 1, member incarnation 11, cluster ${CLUSTER_ID}`,
    );
    expect(r.out).toContain("  log: last index 9 (term 2), snapshot at index 0, current term 3");
    expect(r.out).toContain("would write: config entry 10 in term 4, committed: 1 voter");
    expect(r.out).toContain("  removed from the configuration: node 2 (incarnation 22), node 3");
    expect(r.out).toContain("entries 8..9 are past the commit index on disk");
    expect(r.out).toContain("risk:\n");
    expect(r.out).toContain(
      `dry run: the configuration was not changed. To do it: baton recover --id 1 --data ${dir} --force-new-cluster`,
    );
    expect(readdirSync(join(dir, "wal"))).toEqual(segments);
    const again = await run(["recover", "--id", "1", "--data", dir]);
    expect(again.out).toBe(r.out);
  });

  it("recover: --force-new-cluster writes and says how to grow back; run again, it has nothing to do", async () => {
    const dir = join(root, "force");
    await writeMemberDataDir(dir);
    const r = await run(["recover", "--id", "1", "--data", dir, "--force-new-cluster"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("wrote: config entry 10 in term 4, committed: 1 voter");
    expect(r.out).toContain(
      "  baton member add 2 --peer-address 127.0.0.1:7102 --http-url http://127.0.0.1:8102 --endpoints http://127.0.0.1:8101",
    );
    const again = await run(["recover", "--id", "1", "--data", dir, "--force-new-cluster"]);
    expect(again.code).toBe(0);
    expect(again.out).toContain(
      "node 1 is already the only voter: nothing to recover; start it with its usual baton start command",
    );
  });

  it('recover: what opening the directory repaired is printed, not hidden behind "not changed"', async () => {
    const dir = join(root, "torn");
    await writeMemberDataDir(dir);
    const last = readdirSync(join(dir, "wal")).sort().at(-1)!;
    appendFileSync(join(dir, "wal", last), Buffer.from([0x01, 0x02, 0x03]));
    const r = await run(["recover", "--id", "1", "--data", dir]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/ {2}storage recovery on opening it: .*torn/);
    expect(r.out).toContain(
      "dry run: the configuration was not changed (opening the directory repaired its storage, as listed above)",
    );
  });

  it("recover: the members left out are recorded as removed, as a committed removal records them", async () => {
    const dir = join(root, "removed");
    await writeMemberDataDir(dir);
    expect((await run(["recover", "--id", "1", "--data", dir, "--force-new-cluster"])).code).toBe(
      0,
    );
    const identity = (await IdentityStore.open(dir, nodeFileSystem)).identity();
    expect(identity?.removed?.map((m) => m.id).sort()).toEqual([2, 3]);
  });

  it("recover: a refusal exits 2 with a sentence naming the directory; a bad --id exits 2", async () => {
    const dir = join(root, "other");
    await writeMemberDataDir(dir, { incarnation: 33 });
    const r = await run(["recover", "--id", "1", "--data", dir]);
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    expect(r.err).toBe(
      `baton recover: --data ${dir} is node 3's data directory (member incarnation 33), not node 1's: give --id 3\n`,
    );
    const bad = await run(["recover", "--id", "x", "--data", dir]);
    expect(bad.code).toBe(2);
    expect(bad.err).toBe("baton recover: --id x is not a positive integer\n");
  });
});
