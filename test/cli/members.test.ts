/**
 * `baton member replace` checks what it is given before it removes anything: a refused
 * add after the removal would leave the node out of the cluster. `baton member wait`
 * follows what a (fake) master says of a member's lag.
 */

import type { FastifyRequest } from "fastify";
import { afterEach, describe, expect, it } from "vitest";
import { captureIo } from "../../harness/doubles/capture-io.js";
import { FakeCluster, refuseToken } from "../../harness/doubles/fake-cluster.js";
import { main } from "../../src/cli/main.js";
import { describeError } from "../../src/http/error-status.js";
import { readAddBody } from "../../src/http/routes/member-routes.js";
import {
  ConflictError,
  InvalidInputError,
  SwitchoverFailedError,
} from "../../src/shared/errors.js";
import { startUntrustedHttps } from "./untrusted-https.js";

async function run(args: string[]) {
  const io = captureIo();
  const code = await main(args, io);
  return { code, out: io.out(), err: io.err() };
}

describe("member replace", () => {
  // An endpoint nothing listens on: a command that asked the cluster would exit 3.
  const endpoints = ["--endpoints", "http://127.0.0.1:1", "--timeout", "200"];

  it("member replace: a bad id, peer address or HTTP URL is bad usage (exit 2), before any request", async () => {
    const id = await run(["member", "replace", "abc", ...endpoints]);
    expect(id).toMatchObject({
      code: 2,
      err: 'baton member replace: "abc" is not a member id (a whole number from 1 to 4294967295)\n',
    });
    // Number() took 0x2 for node 2 and 1e0 for node 1; add, promote and remove asked the
    // cluster before finding a bad id.
    for (const command of ["add", "promote", "remove", "wait", "replace"]) {
      for (const text of ["0x2", "1e0", "0", "abc", "4294967296"]) {
        const needed =
          command === "add"
            ? ["--peer-address", "10.0.0.9:7101", "--http-url", "http://10.0.0.9:8101"]
            : [];
        const r = await run(["member", command, text, ...needed, ...endpoints]);
        expect(r.code, `${command} ${text}`).toBe(2);
        expect(r.err).toContain(`${JSON.stringify(text)} is not a member id`);
      }
    }
    const url = await run(["member", "replace", "2", "--http-url", "10.0.0.9:8101", ...endpoints]);
    expect(url.code).toBe(2);
    expect(url.err).toBe(
      "baton member replace: --http-url 10.0.0.9:8101: give http://host:port or https://host:port\n",
    );
    const peer = await run(["member", "replace", "2", "--peer-address", "10.0.0.9", ...endpoints]);
    expect(peer.code).toBe(2);
    expect(peer.err).toMatch(/--peer-address 10\.0\.0\.9: give host:port/);
    const underscore = await run([
      "member",
      "replace",
      "2",
      "--peer-address",
      "node_2:7101",
      ...endpoints,
    ]);
    expect(underscore.code).toBe(2);
    // A bracketed IPv6 address passes the check (the cluster is then asked: nothing listens).
    const ipv6 = await run([
      "member",
      "replace",
      "2",
      "--peer-address",
      "[::1]:7101",
      ...endpoints,
    ]);
    expect(ipv6.code).toBe(3);
  });

  it("member replace: a node that is not a member is only added, and the output says so", async () => {
    const fake = await FakeCluster.start(1, 1);
    try {
      const added: string[] = [];
      fake.node(1).intercept = (request, reply) => {
        if (request.url !== "/v1/members" && !request.url.startsWith("/v1/members/")) return false;
        if (request.method === "GET") {
          reply.send({
            members: [
              { id: 1, voter: true, peerAddress: "127.0.0.1:7101", httpUrl: fake.node(1).url },
            ],
          });
          return true;
        }
        added.push(`${request.method} ${request.url}`);
        reply.send({
          members: [
            { id: 1, voter: true, peerAddress: "127.0.0.1:7101", httpUrl: fake.node(1).url },
            { id: 3, voter: false, peerAddress: "10.0.0.3:7101", httpUrl: "http://10.0.0.3:8101" },
          ],
        });
        return true;
      };
      const r = await run([
        "member",
        "replace",
        "3",
        "--peer-address",
        "10.0.0.3:7101",
        "--http-url",
        "http://10.0.0.3:8101",
        "--endpoints",
        fake.node(1).url,
      ]);
      expect(r.code).toBe(0);
      // Nothing was removed: only the add was sent.
      expect(added).toEqual(["POST /v1/members"]);
      expect(r.out.split("\n")[0]).toBe(
        "node 3 was not a member, so nothing was removed; added it as a learner; start it with an empty data directory: baton start --id 3 --listen 10.0.0.3:7101 --http 10.0.0.3:8101 --data <empty dir> --join <url of a member>; then: baton member promote 3",
      );
    } finally {
      await fake.close();
    }
  });
});

describe("member wait", () => {
  it("member wait: a node whose certificate is not trusted stops at once with what to do (exit 3), not 'no master reachable yet' until --timeout", async () => {
    const node = await startUntrustedHttps();
    try {
      const { url } = node;
      const started = Date.now();
      const r = await run(["member", "wait", "2", "--endpoints", url, "--timeout", "20000"]);
      expect(r.code).toBe(3);
      expect(r.err).not.toContain("no master reachable yet");
      expect(r.err).toMatch(
        /^baton member wait: no node answered at https:\/\/127\.0\.0\.1:\d+: the node's certificate is not one this command trusts \(.*UNABLE_TO_VERIFY_LEAF_SIGNATURE.*\): give the cluster's CA certificate with --ca <file> \(or BATON_CA\)\n$/,
      );
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await node.close();
    }
  }, 30_000);

  it("member wait: while nothing listens it keeps waiting, and says no node answered and what to do", async () => {
    const r = await run([
      "member",
      "wait",
      "2",
      "--endpoints",
      "http://127.0.0.1:1",
      "--timeout",
      "1500",
    ]);
    expect(r.code).toBe(3);
    const why =
      "no node answered at http://127.0.0.1:1: is the cluster running? start one with `baton demo`, or point --endpoints (or BATON_ENDPOINTS) at it";
    expect(r.err).toBe(
      `node 2: ${why}\nbaton member wait: node 2 has not caught up within 1500 ms: ${why}\n`,
    );
  }, 20_000);

  it("member wait: a token every node refuses exits 4 at once, not 'no master' after --timeout", async () => {
    const fake = await FakeCluster.start(2, 1);
    try {
      for (const node of fake.nodes) node.intercept = refuseToken;
      const started = Date.now();
      const r = await run([
        "member",
        "wait",
        "2",
        "--endpoints",
        fake.urls.join(","),
        "--timeout",
        "20000",
      ]);
      expect(r.code).toBe(4);
      expect(r.err).toContain("the token is not one this node knows");
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await fake.close();
    }
  });

  let fake: FakeCluster | null = null;
  afterEach(async () => {
    await fake?.close();
    fake = null;
  });

  /** A master (node 1) whose status says node 2 is `lags[i]` behind at its i-th status. */
  async function masterWithLags(lags: readonly (number | "gone")[]): Promise<FakeCluster> {
    const cluster = await FakeCluster.start(2, 1);
    let asked = 0;
    cluster.node(1).intercept = (request, reply) => {
      if (!request.url.startsWith("/v1/status")) return false;
      const lag = lags[Math.min(asked++, lags.length - 1)]!;
      reply.send({
        id: 1,
        role: "master",
        term: 4,
        master: 1,
        commitIndex: 1000,
        appliedIndex: 1000,
        lastIndex: 1000,
        members: [
          {
            id: 1,
            address: "127.0.0.1:7101",
            httpUrl: cluster.node(1).url,
            role: "master",
            connected: true,
            matchIndex: null,
            lag: null,
            lastContactMs: null,
          },
          {
            id: 2,
            address: "127.0.0.1:7102",
            httpUrl: null,
            role: "backup",
            connected: lag !== "gone",
            matchIndex: lag === "gone" ? null : 1000 - lag,
            lag: lag === "gone" ? null : lag,
            lastContactMs: 5,
          },
        ],
      });
      return true;
    };
    return cluster;
  }

  it("member add: says how to start the new member, with a secure cluster's certificate and token settings for an https URL", async () => {
    fake = await FakeCluster.start(1, 1);
    fake.node(1).intercept = (request, reply) => {
      if (request.method !== "POST" || request.url !== "/v1/members") return false;
      reply.send({
        members: [{ id: 4, voter: false, peerAddress: "10.0.0.4:7101", httpUrl: null }],
      });
      return true;
    };
    const add = (url: string) =>
      run([
        "member",
        "add",
        "4",
        "--peer-address",
        "10.0.0.4:7101",
        "--http-url",
        url,
        "--endpoints",
        fake!.node(1).url,
      ]);
    const plain = await add("http://10.0.0.4:8101");
    expect(plain.code).toBe(0);
    expect(plain.out.split("\n")[0]).toBe(
      "node 4 added as a learner; start it with: baton start --id 4 --listen 10.0.0.4:7101 --http 10.0.0.4:8101 --data <empty dir> --join <url of a member>",
    );
    const secure = await add("https://10.0.0.4:8101");
    expect(secure.out.split("\n")[0]).toBe(
      "node 4 added as a learner; start it with: baton start --id 4 --listen 10.0.0.4:7101 --http 10.0.0.4:8101 --data <empty dir> --tls-ca <ca.crt> --tls-cert <node.crt> --tls-key <node.key> --http-tls-cert <node.crt> --http-tls-key <node.key> --tokens <tokens.json> --join <https url of a member> --token-file <admin token>",
    );
  });

  it("member wait: says how far behind the member is while it waits, and exits 0 once within --lag", async () => {
    fake = await masterWithLags(["gone", 5000, 5000, 300, 10]);
    const r = await run([
      "member",
      "wait",
      "2",
      "--endpoints",
      fake.node(1).url,
      "--timeout",
      "20000",
    ]);
    expect(r.code).toBe(0);
    expect(r.out).toBe("node 2 has caught up (10 behind, master node 1, term 4)\n");
    // One line per change, not per poll.
    expect(r.err).toBe(
      [
        "node 2: not connected to the master (node 1)",
        "node 2: 5000 entries behind the master (node 1)",
        "node 2: 300 entries behind the master (node 1)",
        "",
      ].join("\n"),
    );
  }, 30_000);

  it("member wait: not caught up within --timeout exits 3 saying where it stands; not a member exits 1; the master itself at once", async () => {
    fake = await masterWithLags([5000]);
    const url = fake.node(1).url;
    const late = await run([
      "member",
      "wait",
      "2",
      "--lag",
      "0",
      "--quiet",
      "--endpoints",
      url,
      "--timeout",
      "1200",
    ]);
    expect(late.code).toBe(3);
    expect(late.err).toBe(
      "baton member wait: node 2 has not caught up within 1200 ms: 5000 entries behind the master (node 1)\n",
    );
    const stranger = await run(["member", "wait", "9", "--endpoints", url]);
    expect(stranger.code).toBe(1);
    expect(stranger.err).toContain(
      "node 9 is not a member of the cluster (master node 1 lists 1, 2)",
    );
    const master = await run(["member", "wait", "1", "--endpoints", url]);
    expect(master).toMatchObject({
      code: 0,
      out: "node 1 has caught up (it is the master, master node 1, term 4)\n",
    });
    const bad = await run(["member", "wait", "x", "--endpoints", url]);
    expect(bad).toMatchObject({
      code: 2,
      err: 'baton member wait: "x" is not a member id (a whole number from 1 to 4294967295)\n',
    });
  }, 30_000);
});

/**
 * What a node answers a change or a switchover with names the fields of its JSON request
 * (`peerAddress`, `to`) and gives the HTTP API's advice; the CLI says it in the terms of
 * the command line: the flag or argument given, and `baton` commands. A refusal of a
 * well-formed request (a node already a member, or not one) is exit 1, as the help says.
 */
describe("member changes and switchover: the node's answers in the command's terms", () => {
  let cluster: FakeCluster | null = null;
  afterEach(async () => {
    await cluster?.close();
    cluster = null;
  });

  /** A master that answers every change and switchover as the node does, with `refusal`. */
  async function masterRefusing(refusal: (request: FastifyRequest) => Error): Promise<string> {
    cluster = await FakeCluster.start(1, 1);
    cluster.node(1).intercept = (request, reply) => {
      if (request.method === "GET") return false;
      let error: Error;
      try {
        // The node's own check of an add's body, then the refusal.
        if (request.url === "/v1/members") readAddBody(request.body);
        error = refusal(request);
      } catch (thrown) {
        error = thrown as Error;
      }
      const answer = describeError(error);
      reply.code(answer.status).send(answer.body);
      return true;
    };
    return cluster.node(1).url;
  }

  it("member add: a malformed --peer-address or --http-url is named by its flag (exit 2)", async () => {
    const url = await masterRefusing(() => new Error("not reached"));
    const add = (peer: string, http: string) =>
      run(["member", "add", "7", "--peer-address", peer, "--http-url", http, "--endpoints", url]);
    const peer = await add("nope", "http://10.0.0.7:8101");
    expect(peer.code).toBe(2);
    expect(peer.err).toMatch(
      /^baton: invalid input: --peer-address nope: expected "<host>:<port>" \("\[<IPv6>\]:<port>"\), the new node's --listen: .+; correct --peer-address and run the command again\n$/,
    );
    const http = await add("10.0.0.7:7101", "ftp://x");
    expect(http).toMatchObject({
      code: 2,
      err: `baton: invalid input: --http-url ftp://x: expected "http://<host>:<port>" or "https://<host>:<port>", the new node's --http; correct --http-url and run the command again\n`,
    });
  });

  it("member add, promote, remove and switchover: a node already a member, or not one, is a refusal (exit 1) naming the flag or argument", async () => {
    const url = await masterRefusing((request) =>
      request.url === "/v1/members"
        ? new InvalidInputError("body", "node 2 is already a member: pick another id")
        : request.url === "/v1/switchover"
          ? new InvalidInputError("to", "node 9 is not a member of this cluster")
          : new InvalidInputError("id", "node 9 is not a member"),
    );
    const added = await run([
      "member",
      "add",
      "2",
      "--peer-address",
      "10.0.0.2:7101",
      "--http-url",
      "http://10.0.0.2:8101",
      "--endpoints",
      url,
    ]);
    expect(added).toMatchObject({
      code: 1,
      err: "baton: node 2 is already a member: pick another id; nothing was changed; `baton member list` shows the members\n",
    });
    for (const command of ["promote", "remove"]) {
      const r = await run(["member", command, "9", "--endpoints", url]);
      expect(r, command).toMatchObject({
        code: 1,
        err: "baton: node 9 is not a member; nothing was changed; give a member's id as the ID argument (`baton member list` shows them)\n",
      });
    }
    const switched = await run(["switchover", "--to", "9", "--endpoints", url]);
    expect(switched).toMatchObject({
      code: 1,
      err: "baton: node 9 is not a member of this cluster; nothing was changed; give --to a member's id (`baton member list` shows them)\n",
    });
  });

  it("switchover: a failed one says what to do with the command, not the HTTP API's Retry-After (exit 1)", async () => {
    const url = await masterRefusing(
      () => new SwitchoverFailedError("node 2 did not take over within 1500 ms"),
    );
    const r = await run(["switchover", "--to", "2", "--timeout", "1000", "--endpoints", url]);
    expect(r.code).toBe(1);
    expect(r.err).not.toMatch(/Retry-After|GET \/v1/);
    expect(r.err).toMatch(
      /^baton: switchover to node 2 did not take place .+; last error: .+: node 2 did not take over within 1500 ms\); the master serves on; check with `baton status` that the chosen backup is up and caught up, then run the command again\n$/,
    );
  });

  it("member promote: a conflict says to check `baton status`, not the HTTP API (exit 1)", async () => {
    const url = await masterRefusing(
      () =>
        new ConflictError(
          "node 4 has not answered this master yet: start it (baton start --id 4 … --join <url of a member>) and wait until it has caught up",
        ),
    );
    const r = await run(["member", "promote", "4", "--endpoints", url]);
    expect(r).toMatchObject({
      code: 1,
      err: "baton: node 4 has not answered this master yet: start it (baton start --id 4 … --join <url of a member>) and wait until it has caught up; nothing was changed; check `baton status` and act on what it shows\n",
    });
  });
});
