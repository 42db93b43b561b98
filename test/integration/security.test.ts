/**
 * A secure cluster of real processes: three `baton start` nodes on 127.0.0.1 with mutual
 * TLS between them, HTTPS and API tokens, as docs/security.md sets one up. Through the
 * client library a readwrite token writes, a read token is refused 403 on PUT and no token
 * 401; `baton snapshot save` over HTTPS needs an admin token; a fourth process with a certificate from another CA, claiming to be a member,
 * cannot join: the nodes log and count the refusal and keep serving; a token added to the
 * tokens file works after SIGHUP, without a restart.
 *
 * Real time and processes, hence `timing:`. Every process is stopped by its PID and every
 * directory removed after the test, pass or fail (harness.ts).
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Agent, request } from "undici";
import { describe, expect, it } from "vitest";
import { ClusterNode } from "../../harness/cluster.js";
import { captureIo } from "../../harness/doubles/capture-io.js";
import {
  batonCommand,
  freePorts,
  makeTempDir,
  type StatusView,
  waitFor,
} from "../../harness/processes.js";
import { useClusterHarness } from "../../harness/vitest-hooks.js";
import { type IssuedPair, issueCa, issueNodeCert } from "../../src/cli/commands/cert-issuer.js";
import { main } from "../../src/cli/main.js";
import { createClient } from "../../src/client/index.js";
import { formatTokensFile, hashToken, newToken } from "../../src/http/tokens.js";

useClusterHarness();

interface Pki {
  readonly dir: string;
  readonly caFile: string;
  readonly ca: string;
  readonly tokens: { readonly read: string; readonly readwrite: string; readonly admin: string };
}

/** The CA, one certificate per node (and a stranger's from another CA), and a tokens file. */
async function makePki(root: string, ids: readonly number[]): Promise<Pki> {
  const dir = join(root, "pki");
  const ca = await issueCa({ validDays: 1 });
  const write = (name: string, pair: IssuedPair, trusted = ca.certPem): void => {
    mkdirSync(join(dir, name), { recursive: true });
    writeFileSync(join(dir, name, "ca.crt"), trusted);
    writeFileSync(join(dir, name, "node.crt"), pair.certPem);
    writeFileSync(join(dir, name, "node.key"), pair.keyPem, { mode: 0o600 });
  };
  for (const id of ids) {
    const hosts = ["127.0.0.1", "localhost"];
    write(
      `node${id}`,
      await issueNodeCert(ca, { memberId: id, hosts, clusterId: null, validDays: 1 }),
    );
  }
  // The stranger trusts the real CA (so it would accept the members) but its own
  // certificate comes from a CA of its own, which it trusts too (a node starts only with a
  // certificate its --tls-ca vouches for).
  const otherCa = await issueCa({ validDays: 1, commonName: "not the cluster's CA" });
  const stranger = await issueNodeCert(otherCa, {
    memberId: 2,
    hosts: ["127.0.0.1"],
    clusterId: null,
    validDays: 1,
  });
  write("stranger", stranger, ca.certPem + otherCa.certPem);
  const tokens = { read: newToken(), readwrite: newToken(), admin: newToken() };
  const records = (["read", "readwrite", "admin"] as const).map((role) => ({
    name: `${role}-user`,
    role,
    sha256: hashToken(tokens[role]),
  }));
  writeFileSync(join(dir, "tokens.json"), formatTokensFile(records), { mode: 0o600 });
  return { dir, caFile: join(dir, "node1", "ca.crt"), ca: ca.certPem, tokens };
}

const LAUNCHER = batonCommand("source");

/** A node of this test's own secure cluster, which the harness cannot poll (HTTPS, tokens). */
function secureNode(id: number, peer: number, http: number, dataDir: string): ClusterNode {
  mkdirSync(dataDir, { recursive: true });
  return new ClusterNode({
    id,
    host: "127.0.0.1",
    ports: { peer, http },
    dataDir,
    command: LAUNCHER.command,
    env: { ...process.env, NO_COLOR: "1" },
    uid: undefined,
    logFile: null,
    scheme: "https",
  });
}

/** Starts `node` with `baton start` and `args`. */
function spawn(node: ClusterNode, args: readonly string[]): void {
  node.start([...LAUNCHER.args, "start", ...args]);
}

/** The `baton start` security flags for the certificate directory `name`. */
function securityArgs(pki: Pki, name: string): string[] {
  const d = join(pki.dir, name);
  return [
    ...["--tls-ca", join(d, "ca.crt"), "--tls-cert", join(d, "node.crt")],
    ...["--tls-key", join(d, "node.key"), "--http-tls-cert", join(d, "node.crt")],
    ...["--http-tls-key", join(d, "node.key"), "--tokens", join(pki.dir, "tokens.json")],
  ];
}

describe("security", () => {
  it("timing: a cluster with peer mTLS, HTTPS and tokens serves writers, refuses the rest, keeps a stranger out and reloads tokens on SIGHUP", async () => {
    const root = makeTempDir("baton-secure-");
    const ids = [1, 2, 3];
    const ports = await freePorts(2 * ids.length + 2);
    const nodes = ids.map((id, i) =>
      secureNode(id, ports[2 * i]!, ports[2 * i + 1]!, join(root, `n${id}`)),
    );
    const peers = nodes.map((n) => `${n.id}=${n.peerAddress}`).join(",");
    const pki = await makePki(root, ids);
    for (const node of nodes) {
      spawn(node, [
        ...["--id", String(node.id), "--listen", node.peerAddress, "--http", node.httpAddress],
        ...["--peers", peers, "--data", node.dataDir, "--election-ms", "300-600"],
        ...securityArgs(pki, `node${node.id}`),
      ]);
    }
    const urls = nodes.map((n) => `https://${n.httpAddress}`);
    const agent = new Agent({ connect: { ca: pki.ca } });
    const get = async (url: string, token: string | null) => {
      const headers: Record<string, string> =
        token === null ? {} : { authorization: `Bearer ${token}` };
      const answer = await request(url, {
        dispatcher: agent,
        headers,
        signal: AbortSignal.timeout(1000),
      });
      return { status: answer.statusCode, body: await answer.body.text() };
    };
    const statuses = async (): Promise<StatusView[]> =>
      Promise.all(
        urls.map(async (url) => JSON.parse((await get(`${url}/v1/status`, pki.tokens.read)).body)),
      );
    try {
      const master = await waitFor(
        "a master agreed by the three secure nodes",
        async () => {
          const all = await statuses();
          const masters = all.filter((s) => s.role === "master");
          if (masters.length !== 1) return undefined;
          const agreed = all.every(
            (s) => s.term === masters[0]!.term && s.master === masters[0]!.id,
          );
          return agreed ? masters[0] : undefined;
        },
        30_000,
        100,
      );

      // The nodes advertise their https:// URLs to each other, so the client finds the master.
      const writer = createClient({ endpoints: urls, ca: pki.ca, token: pki.tokens.readwrite });
      const reader = createClient({ endpoints: urls, ca: pki.ca, token: pki.tokens.read });
      const anonymous = createClient({ endpoints: urls, ca: pki.ca });
      try {
        for (let i = 0; i < 20; i++) await writer.put(`secure-${i}`, `v${i}`);
        expect((await reader.get("secure-19"))?.text()).toBe("v19");
        await expect(reader.put("secure-0", "x")).rejects.toMatchObject({ code: "ERR_FORBIDDEN" });
        await expect(anonymous.put("secure-0", "x")).rejects.toMatchObject({
          code: "ERR_UNAUTHENTICATED",
        });
        await expect(anonymous.get("secure-0")).rejects.toMatchObject({
          code: "ERR_UNAUTHENTICATED",
        });
        expect((await get(`${urls[0]}/health`, null)).status).toBe(200);
      } finally {
        await Promise.all([writer.close(), reader.close(), anonymous.close()]);
      }

      // A backup over HTTPS takes an admin token; a readwrite one is refused (exit 4).
      const backup = join(root, "backup.snap");
      const save = async (token: string) => {
        const io = captureIo();
        const args = [
          "snapshot",
          "save",
          backup,
          "--endpoints",
          urls.join(","),
          "--ca",
          pki.caFile,
        ];
        const code = await main([...args, "--token", token], io);
        return { code, out: io.out(), err: io.err() };
      };
      expect(await save(pki.tokens.readwrite)).toMatchObject({ code: 4, out: "" });
      const saved = await save(pki.tokens.admin);
      expect(saved.err).toBe("");
      expect(saved.out).toMatch(/^saved .*backup\.snap: index \d+ .* from https:\/\//);

      // A stranger claims to be node 2 with a certificate from another CA.
      const stranger = secureNode(2, ports[6]!, ports[7]!, join(root, "stranger"));
      const strangerPeers = peers.replace(nodes[1]!.peerAddress, stranger.peerAddress);
      const since = performance.now();
      spawn(stranger, [
        ...["--id", "2", "--listen", stranger.peerAddress, "--http", stranger.httpAddress],
        ...["--peers", strangerPeers, "--data", stranger.dataDir],
        ...securityArgs(pki, "stranger"),
      ]);
      const refusal = await nodes[0]!.waitForLog(
        "the stranger's handshake refused",
        (line) =>
          line.json?.msg === "refusing handshake" &&
          /not signed by this cluster's CA/.test(String(line.json.reason)),
        15_000,
        since,
      );
      expect(refusal.json).toMatchObject({ peer: 2, component: "transport" });
      const metrics = await get(`${urls[0]}/metrics`, pki.tokens.read);
      const counted = /^baton_peer_protocol_errors_total (\d+)/m.exec(metrics.body);
      expect(Number(counted?.[1])).toBeGreaterThanOrEqual(1);

      // The cluster serves on, with the same master and the real node 2 still a member.
      const after = await statuses();
      expect(after.every((s) => s.term === master.term && s.master === master.id)).toBe(true);
      const check = createClient({ endpoints: urls, ca: pki.ca, token: pki.tokens.readwrite });
      try {
        await check.put("after-stranger", "ok");
        expect((await check.get("after-stranger"))?.text()).toBe("ok");
      } finally {
        await check.close();
      }
      await stranger.kill();
    } finally {
      await agent.close();
    }
  }, 120_000);

  it("timing: --join <https://…> learns a new member's identity and the cluster's name over HTTPS with an admin token (the cluster CA from --tls-ca); a read token or another cluster name is refused and the node does not start", async () => {
    const root = makeTempDir("baton-secure-join-");
    const ids = [1, 2, 3, 4];
    const ports = await freePorts(2 * ids.length);
    const nodes = ids.map((id, i) =>
      secureNode(id, ports[2 * i]!, ports[2 * i + 1]!, join(root, `n${id}`)),
    );
    const pki = await makePki(root, ids);
    const [first, , , fourth] = nodes as [ClusterNode, ClusterNode, ClusterNode, ClusterNode];
    const peers = nodes
      .slice(0, 3)
      .map((n) => `${n.id}=${n.peerAddress}`)
      .join(",");
    for (const node of nodes.slice(0, 3)) {
      spawn(node, [
        ...["--id", String(node.id), "--listen", node.peerAddress, "--http", node.httpAddress],
        ...["--peers", peers, "--data", node.dataDir, "--election-ms", "300-600"],
        ...["--cluster-id", "orders"],
        ...securityArgs(pki, `node${node.id}`),
      ]);
    }
    const urls = nodes.slice(0, 3).map((n) => `https://${n.httpAddress}`);
    const admin = createClient({ endpoints: urls, ca: pki.ca, token: pki.tokens.admin });
    try {
      await waitFor(
        "the secure cluster's cluster id",
        async () => {
          const status = await admin.status(urls[0]!).catch(() => null);
          return status?.clusterId ?? undefined;
        },
        30_000,
        200,
      );
      await admin.addMember({
        id: 4,
        peerAddress: fourth.peerAddress,
        httpUrl: `https://${fourth.httpAddress}`,
      });
      const joinArgs = (token: string[]) => [
        ...["--id", "4", "--listen", fourth.peerAddress, "--http", fourth.httpAddress],
        ...["--data", fourth.dataDir, "--join", urls[0]!, ...token],
        ...securityArgs(pki, "node4"),
      ];
      // A read token may not learn a member's incarnation: the node says so and exits 1.
      const since = performance.now();
      spawn(fourth, joinArgs(["--token", pki.tokens.read]));
      await fourth.waitForLog("the refusal", (l) => /needs admin/.test(l.text), 15_000, since);
      await fourth.waitForLog("the exit", (l) => /exited \(code 1\)/.test(l.text), 15_000, since);
      // With an admin token from a file, but set to another cluster's name: refused before
      // anything is written, naming both.
      const tokenFile = join(root, "admin.token");
      writeFileSync(tokenFile, `${pki.tokens.admin}\n`, { mode: 0o600 });
      const mismatch = performance.now();
      spawn(fourth, [...joinArgs(["--token-file", tokenFile]), "--cluster-id", "other"]);
      await fourth.waitForLog(
        "the name refused",
        (l) => /the cluster is named "orders", but this node is set to "other"/.test(l.text),
        15_000,
        mismatch,
      );
      await fourth.waitForLog(
        "the exit",
        (l) => /exited \(code 1\)/.test(l.text),
        15_000,
        mismatch,
      );
      // Naming none, it takes the cluster's name, joins, catches up and is promoted.
      spawn(fourth, joinArgs(["--token-file", tokenFile]));
      const members = await waitFor(
        "node 4 promoted",
        async () => admin.promoteMember(4).catch(() => undefined),
        30_000,
        200,
      );
      expect(members.find((m) => m.id === 4)?.voter).toBe(true);
      const ids4 = await Promise.all(
        [...urls, `https://${fourth.httpAddress}`].map(
          async (url) => (await admin.status(url)).clusterId,
        ),
      );
      expect(new Set(ids4).size).toBe(1);
      expect(ids4[0]).toMatch(/^[0-9a-f]{28}$/);
      expect(first.events("refused")).toEqual([]);
    } finally {
      await admin.close();
    }
  }, 120_000);
});
