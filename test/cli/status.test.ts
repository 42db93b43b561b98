/**
 * `baton status` in-process against a fake cluster (table, JSON, colour, watch, exit
 * codes), and its judgement of health from hand-written node answers (stale masters, lag).
 */

import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { captureIo } from "../../harness/doubles/capture-io.js";
import { FakeCluster, refuseToken } from "../../harness/doubles/fake-cluster.js";
import { renderStatusTable, summarizeCluster } from "../../src/cli/commands/status.js";
import { main } from "../../src/cli/main.js";
import type { NodeStatus } from "../../src/client/index.js";
import { startUntrustedHttps } from "./untrusted-https.js";

const fakes: FakeCluster[] = [];

afterEach(async () => {
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

async function cluster(count: number, masterId: number | null): Promise<FakeCluster> {
  const fake = await FakeCluster.start(count, masterId);
  fakes.push(fake);
  return fake;
}

function status(id: number, overrides: Partial<NodeStatus> = {}): NodeStatus {
  return {
    id,
    role: "backup",
    term: 3,
    master: 1,
    commitIndex: 10,
    appliedIndex: 10,
    lastIndex: 10,
    members: [],
    ...overrides,
  };
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: the ANSI escape is the point.
const ANSI = /\x1b\[[0-9;]*m/;

describe("cli status: command", () => {
  it("cli status: prints one row per node and a healthy verdict (exit 0)", async () => {
    const fake = await cluster(3, 2);
    const io = captureIo();
    expect(await main(["status", "--endpoints", fake.urls.join(",")], io)).toBe(0);
    const lines = io.out().split("\n");
    expect(lines[0]).toMatch(
      /^ID\s+ENDPOINT\s+ROLE\s+TERM\s+MASTER\s+COMMIT\s+APPLIED\s+LAG\s+NOTE$/,
    );
    expect(lines[2]).toContain(fake.urls[1]);
    expect(lines[2]).toMatch(/ 2 {2}http:\S+ {2}master /);
    expect(io.out()).toContain("healthy: node 2 is master in term 1; 3 of 3 nodes reachable");
    expect(io.out()).not.toMatch(ANSI);
  });

  it("cli status: finds members that were not listed (one endpoint given)", async () => {
    const fake = await cluster(3, 1);
    const io = captureIo();
    expect(await main(["status", "--endpoints", fake.urls[0]!], io)).toBe(0);
    for (const url of fake.urls) expect(io.out()).toContain(url);
  });

  it("cli status: a member that answered is not asked again under the URL it advertises (one row, healthy)", async () => {
    // A node reached as 127.0.0.1 that advertises a URL not reachable from here (a DNS
    // name behind NAT, a tunnel): it showed twice, once as down, and the cluster degraded.
    const server = createServer((_request, response) => {
      response.setHeader("content-type", "application/json");
      response.end(
        JSON.stringify({
          id: 1,
          role: "master",
          term: 2,
          master: 1,
          commitIndex: 5,
          appliedIndex: 5,
          lastIndex: 5,
          members: [
            {
              id: 1,
              address: "10.9.9.9:7101",
              httpUrl: "http://10.9.9.9:8101",
              role: "master",
              connected: true,
              matchIndex: 5,
              lag: 0,
              lastContactMs: 0,
              incarnation: 0,
            },
          ],
        }),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const io = captureIo();
      expect(await main(["status", "--endpoints", url, "--timeout", "300"], io)).toBe(0);
      expect(io.out()).not.toContain("10.9.9.9");
      expect(io.out()).toContain("healthy: node 1 is master in term 2; 1 of 1 nodes reachable");
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("cli status: shows an unreachable node as such and exits 1 (degraded)", async () => {
    const fake = await cluster(3, 1);
    const urls = fake.urls;
    await fake.kill(3);
    const io = captureIo();
    expect(await main(["status", "--endpoints", urls.join(",")], io)).toBe(1);
    const row = io
      .out()
      .split("\n")
      .find((l) => l.includes(urls[2]!));
    expect(row).toMatch(/^ 3 {2}\S+ {2}unreachable /);
    expect(row).toContain("ECONNREFUSED");
    expect(io.out()).toContain("degraded: node 1 is master in term 1; 2 of 3 nodes reachable");
  });

  it("cli status: no master exits 1; no node reachable exits 3 with what to do", async () => {
    const fake = await cluster(2, null);
    const io = captureIo();
    expect(await main(["status", "--endpoints", fake.urls.join(",")], io)).toBe(1);
    expect(io.out()).toContain("no master: 2 of 2 nodes reachable");
    const down = captureIo();
    const args = ["status", "--endpoints", "127.0.0.1:1", "--timeout", "300"];
    expect(await main(args, down)).toBe(3);
    expect(down.out()).toContain("is the cluster running? start one with `baton demo`");
  });

  it("cli status: HTTPS nodes whose certificate is not trusted: the headline says to give --ca, not to start a cluster (exit 3)", async () => {
    const node = await startUntrustedHttps();
    try {
      const io = captureIo({ env: { BATON_ENDPOINTS: node.url } });
      expect(await main(["status"], io)).toBe(3);
      const headline = io.out().trimEnd().split("\n").at(-1);
      expect(headline).toMatch(
        /^unreachable: no node answered at https:\/\/127\.0\.0\.1:\d+; the node's certificate is not one this command trusts \(.*UNABLE_TO_VERIFY_LEAF_SIGNATURE.*\): give the cluster's CA certificate with --ca <file> \(or BATON_CA\)$/,
      );
    } finally {
      await node.close();
    }
  });

  it("cli status: a token every node refuses exits 4 and says so, not 'unreachable'", async () => {
    const fake = await cluster(2, 1);
    for (const node of fake.nodes) {
      node.intercept = refuseToken;
    }
    const io = captureIo();
    const args = ["status", "--endpoints", fake.urls.join(","), "--timeout", "300"];
    expect(await main(args, io)).toBe(4);
    expect(io.out()).toContain("denied: ");
    expect(io.out()).toContain("the token is not one this node knows");
    expect(io.out()).not.toContain("is the cluster running?");
  });

  it("cli status: the denied headline quotes the refusal, not a node that is down", async () => {
    const fake = await cluster(1, 1);
    fake.nodes[0]!.intercept = refuseToken;
    const io = captureIo();
    // The first endpoint is down; the second refuses the token.
    const args = ["status", "--endpoints", `127.0.0.1:1,${fake.urls[0]}`, "--timeout", "300"];
    expect(await main(args, io)).toBe(4);
    // Before, the headline quoted the first error of any kind: the down node's.
    expect(io.out()).toContain("denied: the token is not one this node knows");
  });

  it("cli status: --json prints the verdict, the master and every node's status", async () => {
    const fake = await cluster(3, 3);
    const io = captureIo();
    expect(await main(["status", "--json", "--endpoints", fake.urls.join(",")], io)).toBe(0);
    const json = JSON.parse(io.out());
    expect(json).toMatchObject({
      verdict: "healthy",
      healthy: true,
      master: { id: 3, endpoint: fake.urls[2], term: 1 },
    });
    expect(json.nodes).toHaveLength(3);
    expect(json.nodes[0]).toMatchObject({ endpoint: fake.urls[0], reachable: true, lag: 0 });
    expect(json.nodes[0].status).toMatchObject({ id: 1, role: "backup", master: 3 });
  });

  it("cli status: colours only on a terminal without NO_COLOR", async () => {
    const fake = await cluster(1, 1);
    const args = ["status", "--endpoints", fake.urls[0]!];
    const tty = captureIo({ tty: true });
    await main(args, tty);
    expect(tty.out()).toMatch(ANSI);
    const noColor = captureIo({ tty: true, env: { NO_COLOR: "1" } });
    await main(args, noColor);
    expect(noColor.out()).not.toMatch(ANSI);
  });

  it("cli status: --watch refreshes (--count 2, JSON lines)", async () => {
    const fake = await cluster(1, 1);
    const io = captureIo();
    const args = [
      "status",
      "--watch",
      "50",
      "--count",
      "2",
      "--json",
      "--endpoints",
      fake.urls[0]!,
    ];
    expect(await main(args, io)).toBe(0);
    const lines = io.out().trim().split("\n");
    expect(lines).toHaveLength(2);
    for (const line of lines) expect(JSON.parse(line).verdict).toBe("healthy");
    expect(fake.requestsTo("GET", "/v1/status")).toHaveLength(2);
  });

  it("cli status: a --watch or --timeout longer than a timer can wait is bad usage, not a tight loop", async () => {
    for (const args of [
      ["status", "--watch", "2147483648"],
      ["status", "--timeout", "2147483648"],
    ]) {
      const io = captureIo();
      expect(await main(args, io)).toBe(2);
      expect(io.err()).toContain("expected a whole number from");
    }
  });

  it("cli status: --help prints examples and exits 0", async () => {
    const io = captureIo();
    expect(await main(["status", "--help"], io)).toBe(0);
    expect(io.out()).toContain("baton status --watch");
  });
});

describe("cli status: judgement", () => {
  it("cli status: lag is the master's commit index minus the node's applied index", () => {
    const summary = summarizeCluster([
      {
        endpoint: "http://a",
        status: status(1, { role: "master", commitIndex: 50, appliedIndex: 49 }),
      },
      { endpoint: "http://b", status: status(2, { appliedIndex: 20 }) },
      { endpoint: "http://c", status: status(3, { appliedIndex: 60 }) },
    ]);
    expect(summary.nodes.map((n) => n.lag)).toEqual([1, 30, 0]);
    expect(summary.verdict).toBe("healthy");
  });

  it("cli status: a master in an older term is flagged stale, not believed", () => {
    const summary = summarizeCluster([
      { endpoint: "http://a", status: status(1, { role: "master", term: 2, master: 1 }) },
      { endpoint: "http://b", status: status(2, { role: "master", term: 3, master: 2 }) },
      { endpoint: "http://c", status: status(3, { term: 3, master: 2 }) },
    ]);
    expect(summary.master).toEqual({ id: 2, endpoint: "http://b", term: 3 });
    expect(summary.nodes[0]?.note).toBe("stale master (term 2 < 3)");
    const table = renderStatusTable(summary, false);
    expect(table).toContain("stale master");
  });

  it("cli status: a backup the master does not count (another incarnation, or not listed) is degraded", () => {
    const member = (id: number, incarnation: number) => ({
      id,
      address: `x:${id}`,
      httpUrl: `http://n${id}`,
      role: "backup" as const,
      connected: true,
      matchIndex: 10,
      lag: 0,
      lastContactMs: 5,
      incarnation,
    });
    const master = status(1, {
      role: "master",
      members: [member(1, 0), member(2, 0), member(3, 7)],
    });
    const summary = summarizeCluster([
      { endpoint: "http://n1", status: master },
      { endpoint: "http://n2", status: status(2, { incarnation: 4 }) },
      { endpoint: "http://n3", status: status(3, { incarnation: 9 }) },
      { endpoint: "http://n4", status: status(4, { incarnation: 2 }) },
    ]);
    expect(summary.verdict).toBe("degraded");
    // A listed 0 stands for any incarnation: node 2 counts.
    expect(summary.nodes[1]?.note).toBeNull();
    expect(summary.nodes[2]?.note).toBe(
      "master 1 lists incarnation 7, this node is 9: its votes and acknowledgements are dropped; bring it back with baton member replace 3, then --join",
    );
    expect(summary.nodes[3]?.note).toBe(
      "not a member in master 1's configuration: stop it, or add it (baton member add 4)",
    );
    expect(summary.headline).toBe(
      "degraded: node 1 is master in term 3; 4 of 4 nodes reachable; the master does not count nodes 3, 4 (see NOTE)",
    );
    const same = summarizeCluster([
      { endpoint: "http://n1", status: master },
      { endpoint: "http://n3", status: status(3, { incarnation: 7 }) },
    ]);
    expect(same.verdict).toBe("healthy");
  });

  it("cli status: an unreachable node takes its id from a member list that names its URL", () => {
    const members = [
      {
        id: 9,
        address: "x:1",
        httpUrl: "http://c/",
        role: "backup" as const,
        connected: false,
        matchIndex: null,
        lag: null,
        lastContactMs: null,
      },
    ];
    const summary = summarizeCluster([
      { endpoint: "http://a", status: status(1, { role: "master", members }) },
      { endpoint: "http://c", error: "did not answer: refused" },
    ]);
    expect(summary.nodes[1]).toMatchObject({ id: 9, status: null, lag: null });
    expect(summary.verdict).toBe("degraded");
  });
});
