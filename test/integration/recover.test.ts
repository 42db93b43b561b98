/**
 * Recovery from the loss of a majority with real processes: three nodes under writes,
 * two SIGKILLed and their data directories wiped, the survivor recovered by force
 * (`baton recover … --force-new-cluster`, after its dry run) and started alone. Every
 * write acknowledged before the loss is read back from it, new writes succeed, one of the
 * lost nodes that comes back with its old data directory is refused and disturbs nothing,
 * and the two lost machines come back as members (`member add`, `start --join`,
 * `member promote`).
 *
 * The survivor is the master of the moment: every acknowledged write is in its log, so
 * none may be missing. Real time and processes, hence `timing:`. Every process is stopped
 * by its PID and every directory removed after the test, pass or fail (harness.ts).
 */

import { cpSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Cluster, clientFor, promoteWhenCaughtUp } from "../../harness/cluster.js";
import { captureIo } from "../../harness/doubles/capture-io.js";
import { runScript, sleep, waitFor } from "../../harness/processes.js";
import {
  readThroughClient,
  SteadyRateWriter,
  verifyWrites,
  writeThroughClient,
} from "../../harness/steady-writer.js";
import { useClusterHarness } from "../../harness/vitest-hooks.js";
import { main } from "../../src/cli/main.js";
import { createClient } from "../../src/client/index.js";

useClusterHarness();

const TIMING = { electionMs: "300-600", heartbeatMs: 50 } as const;

/** `baton recover` as an operator runs it, its own process: exit code and output. */
async function recover(args: readonly string[]): Promise<{ code: number | null; output: string }> {
  const { code, output } = await runScript("src/cli/main.ts", ["recover", ...args]);
  return { code, output };
}

/** `baton recover` in this process (the same command, without a second start-up). */
async function recoverHere(args: readonly string[]): Promise<{ code: number; output: string }> {
  const io = captureIo();
  const code = await main(["recover", ...args], io);
  return { code, output: io.out() + io.err() };
}

describe("recover", () => {
  it("timing: after two of three nodes are lost, the survivor recovered by force keeps every acknowledged write, takes new ones, refuses a lost node's old data and grows back to three", async () => {
    const cluster = await Cluster.start(TIMING);
    const client = clientFor(cluster);
    // Writes give up after 3 s: once the majority is gone they cannot commit.
    const writerClient = createClient({
      endpoints: cluster.endpoints(),
      deadlineMs: 3000,
      attemptTimeoutMs: 1000,
    });
    try {
      const before = await cluster.waitForMaster();
      const survivor = cluster.node(before.id);
      const lost = cluster.nodes.filter((n) => n.id !== survivor.id).map((n) => n.id);
      const writer = new SteadyRateWriter(writeThroughClient(writerClient), {
        intervalMs: 20,
        keyPrefix: "recover-",
      });
      writer.start();
      await sleep(1500);
      await Promise.all(lost.map((id) => cluster.kill(id)));
      await sleep(300);
      await writer.stop();
      await cluster.kill(survivor.id);
      // One lost machine's disk is kept aside (it comes back later); both are wiped.
      const oldData = join(cluster.root, `n${lost[0]}-old`);
      cpSync(cluster.node(lost[0]!).dataDir, oldData, { recursive: true });
      for (const id of lost) cluster.node(id).wipe();

      const dry = await recoverHere(["--id", String(survivor.id), "--data", survivor.dataDir]);
      expect(dry.code).toBe(0);
      expect(dry.output).toContain(`node ${survivor.id}, member incarnation`);
      expect(dry.output).toContain("dry run: the configuration was not changed");
      expect(dry.output).toContain("risk:");
      const done = await recover([
        ...["--id", String(survivor.id), "--data", survivor.dataDir],
        "--force-new-cluster",
      ]);
      expect(done.code).toBe(0);
      expect(done.output).toMatch(/wrote: config entry \d+ in term \d+, committed/);

      cluster.startNode(survivor.id);
      const alone = await cluster.waitForMaster({ among: [survivor.id], timeoutMs: 20_000 });
      expect(alone.id).toBe(survivor.id);
      expect((await client.members()).map((m) => [m.id, m.voter])).toEqual([[survivor.id, true]]);
      const verified = await verifyWrites(writer.records, readThroughClient(client));
      expect(verified.acknowledged).toBeGreaterThan(20);
      expect(verified.lost).toEqual([]);
      expect(verified.duplicated).toEqual([]);
      expect((await client.put("after-recovery", "1")).revision).toBeGreaterThan(0);
      // The running node's directory is refused (checked while the lost node comes back).
      const busy = recoverHere(["--id", String(survivor.id), "--data", survivor.dataDir]);

      // The lost machine comes back with its old data directory and old command line.
      const old = cluster.node(lost[0]!);
      rmSync(old.dataDir, { recursive: true, force: true });
      cpSync(oldData, old.dataDir, { recursive: true });
      const since = performance.now();
      cluster.startNode(old.id);
      const refusal = await old.waitForLog(
        "the new cluster's refusal",
        (l) => /not a member/.test(String(l.json?.reason ?? "")),
        20_000,
        since,
      );
      expect(String(refusal.json?.reason)).toContain(`node ${old.id}`);
      // It disturbs nothing: same master, same term, and writes go on.
      for (let i = 0; i < 10; i++) await client.put(`while-old-${i}`, "1");
      await sleep(1500);
      const still = await cluster.waitForMaster({ among: [survivor.id] });
      expect([still.id, still.term]).toEqual([alone.id, alone.term]);
      expect((await old.status(1000))?.role).not.toBe("master");
      expect(await busy).toMatchObject({ code: 2 });
      expect((await busy).output).toContain("is held by a running process");
      await old.kill();
      old.wipe();

      // The lost machines come back as new members: added as learners one after the
      // other (each change committed before the next), started, promoted once caught up.
      for (const id of lost) {
        const node = cluster.node(id);
        await client.addMember({ id, peerAddress: node.peerAddress, httpUrl: node.url });
        cluster.startNode(id, ["--join", survivor.url]);
      }
      for (const id of lost) await promoteWhenCaughtUp(client, id, 30_000);
      const members = await client.members();
      expect(members.map((m) => [m.id, m.voter])).toEqual([
        [1, true],
        [2, true],
        [3, true],
      ]);
      for (const id of lost) await cluster.waitCaughtUp(id, 20_000);
      await cluster.waitForMaster();
      const again = await verifyWrites(writer.records, readThroughClient(client));
      expect(again.lost).toEqual([]);
      await waitFor(
        "the new members to serve a stale read of a write made after the recovery",
        async () => {
          const answers = await Promise.all(lost.map((id) => cluster.node(id).status(1000)));
          return answers.every((s) => s !== null && s.appliedIndex >= alone.commitIndex)
            ? true
            : undefined;
        },
        20_000,
      );
    } finally {
      await writerClient.close();
      await client.close();
    }
  }, 120_000);
});
