/**
 * Cluster identity with real processes: three empty nodes bootstrap together and end with
 * one cluster id; a node whose data directory was wiped and that is restarted with its
 * old command line (no --join) refuses to start, exits non-zero, says how to come back and
 * leaves the directory empty (so a second restart is refused too); a data directory of another cluster is refused by the members' handshakes, each
 * naming both cluster ids.
 *
 * Real time and processes, hence `timing:`. Every process is stopped by its PID and every
 * directory removed after the test, pass or fail (harness.ts).
 */

import { cpSync, existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Cluster, clusterIds, httpRequest } from "../../harness/cluster.js";
import { waitFor } from "../../harness/processes.js";
import { useClusterHarness } from "../../harness/vitest-hooks.js";
import { decodeIdentity, identityFileName } from "../../src/storage/identity-store.js";

useClusterHarness();

// An election timeout no event-loop stall of a loaded CI machine reaches: a test here checks
// that the cluster kept its master and term while a refused node came and went.
const TIMING = { electionMs: "1000-2000", heartbeatMs: 100 } as const;

/** Waits until every node shows the same cluster id and returns it. */
async function agreedClusterId(cluster: Cluster): Promise<string> {
  return waitFor(
    "one cluster id on every node",
    async () => {
      const ids = await clusterIds(cluster);
      const first = ids[0];
      return first != null && ids.every((id) => id === first) ? first : undefined;
    },
    20_000,
    100,
  );
}

/** Waits until every node's identity file holds `clusterId` (it is written after it is known). */
async function waitIdentityFiles(cluster: Cluster, clusterId: string): Promise<void> {
  await waitFor(
    `cluster id ${clusterId} in every identity file`,
    async () => {
      const held = cluster.nodes.map((n) => {
        const path = join(n.dataDir, identityFileName);
        return existsSync(path) ? decodeIdentity(readFileSync(path), path).clusterId : null;
      });
      return held.every((id) => id === clusterId) ? true : undefined;
    },
    20_000,
    100,
  );
}

/** Waits until the configuration lists every member with its own incarnation. */
async function waitBound(cluster: Cluster): Promise<void> {
  await waitFor(
    "every member's incarnation in the configuration",
    async () => {
      const answer = await httpRequest(`${cluster.node(1).url}/v1/status`, { timeoutMs: 1000 });
      const status = JSON.parse(answer.body.toString("utf8")) as {
        members: { incarnation?: number }[];
      };
      return status.members.every((m) => (m.incarnation ?? 0) > 0) ? true : undefined;
    },
    20_000,
    100,
  );
}

describe("identity", () => {
  it("timing: three empty nodes bootstrap together and agree on one cluster id", async () => {
    const cluster = await Cluster.start(TIMING);
    const id = await agreedClusterId(cluster);
    expect(id).toMatch(/^[0-9a-f]{28}$/);
    for (const node of cluster.nodes) {
      const opened = node.events("bootstrap").map((e) => String(e.msg));
      expect(opened.some((msg) => /bootstrapping a new cluster|formed without/.test(msg))).toBe(
        true,
      );
    }
  }, 60_000);

  it("timing: an empty data directory restarted with its old command line and no --join refuses to start, exits 1 and names `baton member replace`", async () => {
    const cluster = await Cluster.start(TIMING);
    const clusterId = await agreedClusterId(cluster);
    await waitBound(cluster);
    const master = await cluster.waitForMaster();
    const wiped = master.id === 3 ? 2 : 3;
    await cluster.kill(wiped);
    cluster.node(wiped).wipe();
    const since = performance.now();
    cluster.startNode(wiped);
    const refusal = await cluster
      .node(wiped)
      .waitForLog("the refusal", (l) => l.json?.event === "refused", 20_000, since);
    expect(String(refusal.json?.reason)).toContain(`cluster ${clusterId}`);
    expect(String(refusal.json?.reason)).toContain(`baton member replace ${wiped}`);
    expect(String(refusal.json?.reason)).toContain("--join");
    await cluster
      .node(wiped)
      .waitForLog("the exit", (l) => /exited \(code 1\)/.test(l.text), 20_000, since);
    // The refused start leaves the directory as empty as it found it, so that a supervisor's
    // restart (systemd's Restart=on-failure) meets the same refusal instead of running as a
    // member the cluster does not know.
    expect(readdirSync(cluster.node(wiped).dataDir)).toEqual([]);
    const again = performance.now();
    cluster.startNode(wiped);
    await cluster
      .node(wiped)
      .waitForLog("the second refusal", (l) => l.json?.event === "refused", 20_000, again);
    await cluster
      .node(wiped)
      .waitForLog("the second exit", (l) => /exited \(code 1\)/.test(l.text), 20_000, again);
    expect(readdirSync(cluster.node(wiped).dataDir)).toEqual([]);
    // It never took part: it cast no vote and the others kept their master.
    const roles = cluster.node(wiped).events("role", since);
    expect(roles.filter((e) => e.role !== "backup")).toEqual([]);
    const after = await cluster.waitForMaster();
    expect(after.term).toBe(master.term);
    // The way back works: replace it, start it with --join, promote it.
    await cluster.replace(wiped);
    expect(await agreedClusterId(cluster)).toBe(clusterId);
  }, 120_000);

  it("timing: a data directory of another cluster is refused by the members' handshakes, naming both cluster ids", async () => {
    const [a, b] = await Promise.all([Cluster.start(TIMING), Cluster.start(TIMING)]);
    const [idA, idB] = await Promise.all([agreedClusterId(a), agreedClusterId(b)]);
    expect(idA).not.toBe(idB);
    await Promise.all([waitIdentityFiles(a, idA), waitIdentityFiles(b, idB)]);
    // Node 3 of cluster A comes back with the data directory of cluster B's node 3.
    await Promise.all([a.kill(3), b.kill(3)]);
    rmSync(a.node(3).dataDir, { recursive: true, force: true });
    cpSync(b.node(3).dataDir, a.node(3).dataDir, { recursive: true });
    const since = performance.now();
    await a.restart(3);
    const refusal = await a
      .node(1)
      .waitForLog(
        "the handshake refused",
        (l) => /different clusters/.test(String(l.json?.reason ?? "")),
        20_000,
        since,
      );
    const reason = String(refusal.json?.reason);
    expect(reason).toContain(idA);
    expect(reason).toContain(idB);
    // Cluster A serves on without it.
    const master = await a.waitForMaster({ exclude: [3] });
    expect(master.id).not.toBe(3);
  }, 120_000);
});
