/**
 * The store's quota on a real cluster: three `baton start` processes with `--quota-keys`
 * and `--quota-bytes`. The master proposes the quota through the log; the store fills to
 * it, a write past it is answered 507 by the master and by a backup alike, the quota holds
 * across a fail-over (it is replicated state, not the new master's guess), and deletes
 * make room again.
 *
 * Real time and real processes, hence `timing:` names; every process is stopped and every
 * directory removed after each test (harness/vitest-hooks.ts).
 */

import { describe, expect, it } from "vitest";
import { Cluster, type ClusterNode, httpRequest } from "../../harness/cluster.js";
import { waitFor } from "../../harness/processes.js";
import { useClusterHarness } from "../../harness/vitest-hooks.js";

useClusterHarness();

async function put(node: ClusterNode, key: string, value: string): Promise<number> {
  const response = await httpRequest(`${node.url}/v1/kv/${key}`, {
    method: "PUT",
    body: value,
    timeoutMs: 5000,
  });
  return response.status;
}

async function metric(node: ClusterNode, name: string): Promise<number | undefined> {
  const response = await httpRequest(`${node.url}/metrics`);
  const line = response.body
    .toString("utf8")
    .split("\n")
    .find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.split(" ")[1]);
}

describe("quota", () => {
  it("timing: a cluster fills to its quota, refuses past it on every node and across a fail-over, and recovers after deletes", async () => {
    const cluster = await Cluster.start({
      electionMs: "300-600",
      heartbeatMs: 50,
      extraArgs: ["--quota-keys", "4", "--quota-bytes", "400"],
    });
    const master = cluster.node((await cluster.waitForMaster()).id);
    const backup = cluster.nodes.find((n) => n.id !== master.id)!;
    for (const node of cluster.nodes) {
      await waitFor(
        "the replicated quota",
        async () => ((await metric(node, "baton_kv_quota_keys")) === 4 ? true : undefined),
        5000,
      );
    }
    for (const key of ["k1", "k2", "k3", "k4"]) expect(await put(master, key, "v")).toBe(200);
    const refused = await httpRequest(`${master.url}/v1/kv/k5`, { method: "PUT", body: "v" });
    expect(refused.status).toBe(507);
    expect(JSON.parse(refused.body.toString())).toMatchObject({
      code: "ERR_QUOTA_EXCEEDED",
      quota: "keys",
      limit: 4,
    });
    expect(await put(backup, "k5", "v")).toBe(507);
    expect(await put(master, "k1", "x".repeat(390))).toBe(507);
    expect(await put(master, "k1", "x".repeat(500))).toBe(413);

    await cluster.kill(master.id);
    const next = cluster.node((await cluster.waitForMaster({ exclude: [master.id] })).id);
    expect(await put(next, "k5", "v")).toBe(507);
    const deleted = await httpRequest(`${next.url}/v1/kv/k1`, { method: "DELETE" });
    expect(deleted.status).toBe(200);
    expect(await put(next, "k5", "v")).toBe(200);
    expect(await metric(next, "baton_kv_keys")).toBe(4);
    const prefix = await httpRequest(`${next.url}/v1/kv?prefix=k`, { method: "DELETE" });
    expect(prefix.status).toBe(200);
    expect(await put(next, "big", "x".repeat(380))).toBe(200);
    expect(await metric(next, "baton_kv_bytes")).toBe(383);
  });
});
