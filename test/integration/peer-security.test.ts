/**
 * The peer port of a secure cluster, attacked by hand while a client writes through the
 * library: three `baton start` nodes with mutual TLS on 127.0.0.1, and a test process that
 * dials a node's peer port itself, speaking the frame protocol.
 *
 * - Refused at the handshake, the node still serving: a certificate from another CA, an
 *   expired certificate from the cluster CA, and a member's valid certificate used to
 *   claim another member's id.
 * - Let in (a member's own key, as a compromised machine would have it) but breaking the
 *   protocol: an `append` in the master's own term (a second master), an acknowledgement
 *   past the end of the master's log, and a vote request from the far future. Each closes
 *   that link and is counted; no node exits; every write acknowledged is there afterwards,
 *   once, and the write load sees no failed request.
 * - A certificate rotation under that load: every node gets a new key and certificate
 *   from the same CA and a SIGHUP, one after the other; no request fails and the nodes
 *   talk with the new certificates.
 *
 * Real time and processes, hence `timing:`. Every process is stopped by its PID and every
 * directory removed after the test, pass or fail (harness/vitest-hooks.ts).
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { describe, expect, it } from "vitest";
import { ClusterNode } from "../../harness/cluster.js";
import { batonCommand, freePorts, makeTempDir, sleep, waitFor } from "../../harness/processes.js";
import {
  readThroughClient,
  SteadyRateWriter,
  verifyWrites,
  writeThroughClient,
} from "../../harness/steady-writer.js";
import { useClusterHarness } from "../../harness/vitest-hooks.js";
import { type IssuedPair, issueCa, issueNodeCert } from "../../src/cli/commands/cert-issuer.js";
import { type BatonClient, createClient } from "../../src/client/index.js";
import {
  decodePayload,
  defaultFrameCodecLimits,
  encodeFrame,
  FRAME_HEADER_BYTES,
} from "../../src/transport/frame-codec.js";
import { type Frame, PROTOCOL_MAGIC, PROTOCOL_VERSION } from "../../src/transport/frame-schema.js";

useClusterHarness();

const LAUNCHER = batonCommand("source");
const IDS = [1, 2, 3] as const;
const DAY_MS = 86_400_000;

interface Pki {
  readonly dir: string;
  readonly ca: IssuedPair;
}

/** Writes `pair` (and the CA) as `<dir>/<name>/{ca.crt,node.crt,node.key}`. */
function writePair(pki: Pki, name: string, pair: IssuedPair): void {
  mkdirSync(join(pki.dir, name), { recursive: true });
  writeFileSync(join(pki.dir, name, "ca.crt"), pki.ca.certPem);
  writeFileSync(join(pki.dir, name, "node.crt"), pair.certPem);
  writeFileSync(join(pki.dir, name, "node.key"), pair.keyPem, { mode: 0o600 });
}

function nodeCert(pki: Pki, memberId: number, validity: { notAfter?: Date } = {}) {
  return issueNodeCert(pki.ca, {
    memberId,
    hosts: ["127.0.0.1", "localhost"],
    clusterId: null,
    validDays: 1,
    ...(validity.notAfter === undefined
      ? {}
      : { notBefore: new Date(validity.notAfter.getTime() - DAY_MS), notAfter: validity.notAfter }),
  });
}

function startArgs(pki: Pki, node: ClusterNode, peers: string): string[] {
  const d = join(pki.dir, `node${node.id}`);
  return [
    ...["--id", String(node.id), "--listen", node.peerAddress, "--http", node.httpAddress],
    ...["--peers", peers, "--data", node.dataDir, "--election-ms", "300-600"],
    ...["--tls-ca", join(d, "ca.crt"), "--tls-cert", join(d, "node.crt")],
    ...["--tls-key", join(d, "node.key"), "--http-tls-cert", join(d, "node.crt")],
    ...["--http-tls-key", join(d, "node.key")],
  ];
}

/** What became of a connection the test made to a peer port. */
interface Session {
  /** The acceptor's answer to the hello, or null when it closed first. */
  readonly answer: Frame | null;
  /** The TLS handshake failed (the node refused the certificate). */
  readonly tlsError: string | null;
  /** The node closed the connection (after the frames sent after the hello, if any). */
  readonly closedByNode: boolean;
}

/**
 * Dials `address` with `pair`'s certificate, says hello as `fromId`, and after a hello_ok
 * sends `after` one by one. Resolves once the node closed the connection, or `waitMs` after
 * the last frame if it did not.
 */
function peerSession(
  address: string,
  pki: Pki,
  pair: IssuedPair,
  hello: { fromId: number; toId: number },
  after: readonly Frame[] = [],
  waitMs = 2000,
): Promise<Session> {
  const [host, port] = address.split(":") as [string, string];
  const limits = defaultFrameCodecLimits();
  const encode = (frame: Frame): Buffer => {
    const encoded = encodeFrame(frame, limits);
    if (!encoded.ok) throw new Error("frame too large");
    return encoded.bytes;
  };
  return new Promise((resolve) => {
    let answer: Frame | null = null;
    let tlsError: string | null = null;
    let buffered = Buffer.alloc(0);
    let timer: NodeJS.Timeout | undefined;
    const socket = tlsConnect({
      host,
      port: Number(port),
      ca: pki.ca.certPem,
      cert: pair.certPem,
      key: pair.keyPem,
      checkServerIdentity: () => undefined,
    });
    const finish = (closedByNode: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ answer, tlsError, closedByNode });
    };
    socket.once("secureConnect", () => {
      socket.write(
        encode({
          type: "hello",
          magic: PROTOCOL_MAGIC,
          protocolVersion: PROTOCOL_VERSION,
          clusterId: "baton",
          clusterUid: "",
          fromId: hello.fromId,
          toId: hello.toId,
          incarnation: 1 + Math.floor(Math.random() * 2 ** 40),
          memberIncarnation: 0,
          peerAddress: "",
          advertise: { httpUrl: null },
        }),
      );
    });
    socket.on("data", (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (answer === null && buffered.length >= FRAME_HEADER_BYTES) {
        const length = buffered.readUInt32BE(0);
        if (buffered.length < FRAME_HEADER_BYTES + length) return;
        const decoded = decodePayload(
          buffered.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length),
        );
        buffered = buffered.subarray(FRAME_HEADER_BYTES + length);
        answer = decoded.ok ? decoded.frame : null;
        if (answer?.type === "hello_ok") {
          void (async () => {
            for (const frame of after) {
              if (socket.destroyed) return;
              socket.write(encode(frame));
              await sleep(50);
            }
            timer = setTimeout(() => finish(false), waitMs);
          })();
        }
      }
    });
    socket.on("error", (error: NodeJS.ErrnoException) => {
      if (answer === null) tlsError = error.code ?? error.message;
    });
    socket.on("close", () => finish(true));
  });
}

describe("peer security", () => {
  it("timing: refused certificates and rule-breaking peers leave every node serving, nothing lost; a certificate rotation under load fails no request", async () => {
    const root = makeTempDir("baton-peer-security-");
    const ports = await freePorts(2 * IDS.length);
    const pki: Pki = { dir: join(root, "pki"), ca: await issueCa({ validDays: 2 }) };
    const certs = new Map<number, IssuedPair>();
    for (const id of IDS) {
      const pair = await nodeCert(pki, id);
      certs.set(id, pair);
      writePair(pki, `node${id}`, pair);
    }
    const nodes = IDS.map((id, i) => {
      const dataDir = join(root, `n${id}`);
      mkdirSync(dataDir, { recursive: true });
      return new ClusterNode({
        id,
        host: "127.0.0.1",
        ports: { peer: ports[2 * i]!, http: ports[2 * i + 1]! },
        dataDir,
        command: LAUNCHER.command,
        env: { ...process.env, NO_COLOR: "1" },
        uid: undefined,
        logFile: null,
        scheme: "https",
      });
    });
    const peers = nodes.map((n) => `${n.id}=${n.peerAddress}`).join(",");
    for (const node of nodes)
      node.start([...LAUNCHER.args, "start", ...startArgs(pki, node, peers)]);
    const urls = nodes.map((n) => `https://${n.httpAddress}`);
    const client: BatonClient = createClient({
      endpoints: urls,
      ca: pki.ca.certPem,
      deadlineMs: 20_000,
      attemptTimeoutMs: 1000,
    });
    const writer = new SteadyRateWriter(writeThroughClient(client), {
      intervalMs: 10,
      keyPrefix: `peer-security-${Date.now()}`,
    });
    try {
      const masterId = async (): Promise<{ id: number; term: number; lastIndex: number }> =>
        waitFor(
          "an agreed master",
          async () => {
            for (const url of urls) {
              const s = await client.status(url).catch(() => null);
              if (s?.role === "master") return { id: s.id, term: s.term, lastIndex: s.lastIndex };
            }
            return undefined;
          },
          30_000,
          100,
        );
      writer.start();
      await writer.waitForAckIssuedAfter(performance.now(), 30_000);
      const master = await masterId();
      const backup = IDS.find((id) => id !== master.id)!;
      const masterNode = nodes[master.id - 1]!;

      // 1. Refused at the handshake.
      const otherCa = await issueCa({ validDays: 1, commonName: "not the cluster's CA" });
      const foreign = await issueNodeCert(otherCa, {
        memberId: backup,
        hosts: ["127.0.0.1"],
        clusterId: null,
        validDays: 1,
      });
      const expired = await nodeCert(pki, backup, { notAfter: new Date(Date.now() - 3_600_000) });
      const third = IDS.find((id) => id !== master.id && id !== backup)!;
      for (const [what, pair, reason] of [
        ["a certificate from another CA", foreign, /not signed by this cluster's CA/],
        ["an expired certificate", expired, /expired/i],
        ["another member's valid certificate", certs.get(third)!, new RegExp(`member ${third}`)],
      ] as const) {
        const session = await peerSession(masterNode.peerAddress, pki, pair, {
          fromId: backup,
          toId: master.id,
        });
        expect(session.answer?.type, what).toBe("hello_error");
        const answer = session.answer as { reason?: string } | null;
        expect(answer?.reason, what).toMatch(reason);
        expect(session.closedByNode, what).toBe(true);
      }

      // 2. Let in with a member's own key, then breaking the protocol.
      // Each from a member of its own, so that each gets a warning line of its own.
      const rulesBroken: [string, number, Frame][] = [
        [
          "a second master in the master's term",
          backup,
          {
            type: "append",
            incarnation: 0,
            from: backup,
            to: master.id,
            term: master.term,
            prevIndex: 0,
            prevTerm: 0,
            entries: [],
            commitIndex: 0,
          } as Frame,
        ],
        [
          "an acknowledgement past the end of the log",
          third,
          {
            type: "append_response",
            incarnation: 0,
            from: third,
            to: master.id,
            term: master.term,
            success: true,
            index: master.lastIndex + 1_000_000,
            hintIndex: 0,
            hintTerm: 0,
          } as Frame,
        ],
      ];
      for (const [what, from, frame] of rulesBroken) {
        // The real member redials at once when its link is taken and the newest handshake
        // wins, so it holds still while its key is misused; a dial of its that was already
        // in flight can still win the race, and then the forger simply tries again.
        const real = nodes[from - 1]!;
        const kind = frame.type;
        let closedFor: string | undefined;
        for (let attempt = 1; attempt <= 5 && closedFor === undefined; attempt++) {
          const since = performance.now();
          real.signal("SIGSTOP");
          await sleep(100);
          const session = await peerSession(
            masterNode.peerAddress,
            pki,
            certs.get(from)!,
            { fromId: from, toId: master.id },
            [frame],
          ).finally(() => real.signal("SIGCONT"));
          expect(session.answer?.type, what).toBe("hello_ok");
          closedFor = masterNode.log
            .filter((l) => l.at >= since && l.json?.reason === "protocol_rule")
            .map((l) => String(l.json?.detail))
            .find((detail) => detail.startsWith(`${kind}:`));
          if (closedFor !== undefined) {
            expect(session.closedByNode, `${what}: the node closes that link`).toBe(true);
          }
        }
        expect(closedFor, `${what}: the master logs why it closed the link`).toBeDefined();
      }
      // Every node still runs, and the master is still the master of its term.
      await sleep(500);
      for (const node of nodes) expect(node.state, `node ${node.id}`).toBe("running");
      const stillMaster = await masterId();
      expect(stillMaster.id).toBe(master.id);

      // 3. A certificate rotation: new keys from the same CA, one node after the other.
      const rotatedAt = performance.now();
      for (const id of IDS) {
        writePair(pki, `node${id}`, await nodeCert(pki, id));
        nodes[id - 1]!.signal("SIGHUP");
        await sleep(300);
      }
      await writer.waitForAckIssuedAfter(performance.now(), 10_000);
      for (const node of nodes) {
        await node.waitForLog(
          "certificates reloaded",
          (line) => line.json?.event === "reloaded",
          10_000,
          rotatedAt,
        );
      }

      await writer.stop();
      const counts = writer.counts();
      expect(
        counts.error,
        JSON.stringify(writer.records.filter((r) => r.outcome?.kind === "error").slice(0, 3)),
      ).toBe(0);
      const verified = await verifyWrites(writer.records, readThroughClient(client));
      expect(verified.lost).toEqual([]);
      expect(verified.duplicated).toEqual([]);
      for (const node of nodes) expect(node.state, `node ${node.id}`).toBe("running");
      console.log(
        `peer attacks refused or closed, rotation done: ${counts.ok + counts.existed} writes acknowledged, 0 failed, 0 lost`,
      );
    } finally {
      await writer.stop();
      await client.close();
      await Promise.all(nodes.map((n) => n.kill()));
    }
  }, 120_000);
});
