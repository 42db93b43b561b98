import { describe, expect, it } from "vitest";
import {
  advertisedHttpUrl,
  insecureExposure,
  isLoopbackHost,
  NodeConfigError,
  parseElectionMs,
  parseNodeConfig,
  parsePeers,
} from "./node-config.js";

const peers = parsePeers("1=127.0.0.1:7101,2=127.0.0.1:7102,3=[::1]:7103");

describe("node config", () => {
  it("config: peers parse from the --peers syntax, IPv6 included", () => {
    expect(peers).toEqual([
      { id: 1, address: "127.0.0.1:7101" },
      { id: 2, address: "127.0.0.1:7102" },
      { id: 3, address: "[::1]:7103" },
    ]);
    expect(() => parsePeers("1=a:1,x=b:2")).toThrow(
      /"x=b:2" is not of the form <id>=<host>:<port>/,
    );
  });

  it("config: --election-ms is <min>-<max>, or <min> alone for min to twice min", () => {
    expect(parseElectionMs("150-300")).toEqual({ min: 150, max: 300 });
    expect(parseElectionMs("400")).toEqual({ min: 400, max: 800 });
    for (const bad of ["", "-300", "150-", "1.5-3", "150 - 300", "a-b", "150-300-450"]) {
      expect(parseElectionMs(bad), bad).toBeNull();
    }
  });

  it("config: defaults follow docs/design.md, and listen defaults to this node's peer address", () => {
    const c = parseNodeConfig({ id: 2, peers });
    expect(c.listen).toBe("127.0.0.1:7102");
    expect([c.heartbeatMs, c.electionMsMin, c.electionMsMax]).toEqual([50, 300, 600]);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it("config: every bad field is reported at once", () => {
    let message = "";
    try {
      parseNodeConfig({
        id: 9,
        peers: [...peers, { id: 1, address: "nowhere" }],
        heartbeatMs: 0,
        electionMsMin: 500,
        electionMsMax: 400,
      });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/id 9 is not one of the peers/);
    expect(message).toMatch(/peer id 1 is listed twice/);
    expect(message).toMatch(/peer 1: bad address "nowhere"/);
    expect(message).toMatch(/heartbeatMs must be a positive number/);
    expect(message).toMatch(/electionMsMax must be at least electionMsMin/);
  });

  it("config: the error is a NodeConfigError (ERR_INVALID_INPUT, field config) with every problem, and an id outside the peers is said once", () => {
    let caught: unknown = null;
    try {
      parseNodeConfig({ id: 7, peers });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(NodeConfigError);
    expect(caught).toMatchObject({
      code: "ERR_INVALID_INPUT",
      field: "config",
      problems: ["id 7 is not one of the peers (1, 2, 3)"],
    });
  });

  it("config: from JavaScript, no list of peers and an id that is a string are NodeConfigErrors that say so", () => {
    const untyped = parseNodeConfig as (input: unknown) => unknown;
    // Before: a TypeError reading `find`, and "must be a positive integer (got 1)" for "1".
    for (const input of [{ id: 1 }, { id: 1, peers: "1=127.0.0.1:7101" }, null]) {
      expect(() => untyped(input)).toThrow(
        expect.objectContaining({
          problems: [
            "peers must be a list of { id, address }: every member of the cluster, this node included",
          ],
        }),
      );
    }
    expect(() => untyped({ id: "1", peers })).toThrow(
      expect.objectContaining({ problems: ['id must be a positive integer (got "1")'] }),
    );
  });

  it("config: a state-transfer chunk larger than a peer frame carries is refused", () => {
    expect(() => parseNodeConfig({ id: 1, peers, transferChunkBytes: 16 * 1024 * 1024 })).toThrow(
      /transferChunkBytes must be at most 8388608 \(8 MiB: a chunk travels in one peer frame; got 16777216\)/,
    );
    expect(parseNodeConfig({ id: 1, peers, transferChunkBytes: 8 * 1024 * 1024 }).id).toBe(1);
  });

  it("config: --join is refused for a single-node cluster, which has no peer to rejoin", () => {
    const alone = [{ id: 1, address: "127.0.0.1:7101" }];
    expect(() => parseNodeConfig({ id: 1, peers: alone, join: true })).toThrow(
      /join: a single-node cluster has no peer/,
    );
    expect(parseNodeConfig({ id: 1, peers: alone }).join).toBe(false);
    expect(parseNodeConfig({ id: 2, peers, join: true }).join).toBe(true);
  });
});

describe("node config: security", () => {
  const peers = parsePeers("1=10.0.0.1:7101,2=10.0.0.2:7101,3=10.0.0.3:7101");
  const secure = {
    tlsCa: "ca.crt",
    tlsCert: "node.crt",
    tlsKey: "node.key",
    httpTlsCert: "node.crt",
    httpTlsKey: "node.key",
    tokens: "tokens.json",
  };

  it("security: loopback addresses need no TLS or tokens (the demo's setup)", () => {
    const loopback = parsePeers("1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103");
    const config = parseNodeConfig({ id: 1, peers: loopback, http: "127.0.0.1:8101" });
    expect(insecureExposure(config)).toBeNull();
    expect(advertisedHttpUrl(config)).toBe("http://127.0.0.1:8101");
    expect(isLoopbackHost("localhost")).toBe(true);
    expect(isLoopbackHost("::1")).toBe(true);
    expect(isLoopbackHost("127.0.0.2")).toBe(true);
    expect(isLoopbackHost("0.0.0.0")).toBe(false);
  });

  it("security: a reachable address without TLS and tokens is refused, saying how to fix it", () => {
    const config = parseNodeConfig({ id: 2, peers, http: "10.0.0.2:8101" });
    const problem = insecureExposure(config);
    expect(problem).toMatch(/10\.0\.0\.2:7101 and 10\.0\.0\.2:8101/);
    expect(problem).toMatch(/--tls-ca.*--http-tls-cert.*--tokens/s);
    expect(problem).toMatch(/baton certs node --id 2 --ca \.\/pki --host 10\.0\.0\.2/);
    expect(problem).toMatch(/--insecure/);
    const partly = parseNodeConfig({
      id: 2,
      peers,
      http: "10.0.0.2:8101",
      ...secure,
      tokens: null,
    });
    expect(insecureExposure(partly)).toMatch(/API tokens/);
  });

  it("security: TLS with tokens, or --insecure, may use a reachable address", () => {
    const config = parseNodeConfig({ id: 2, peers, http: "10.0.0.2:8101", ...secure });
    expect(insecureExposure(config)).toBeNull();
    expect(advertisedHttpUrl(config)).toBe("https://10.0.0.2:8101");
    const insecure = parseNodeConfig({ id: 2, peers, http: "10.0.0.2:8101", insecure: true });
    expect(insecureExposure(insecure)).toBeNull();
  });

  it("security: the TLS files go together", () => {
    expect(() => parseNodeConfig({ id: 2, peers, tlsCa: "ca.crt" })).toThrow(/give all three/);
    expect(() => parseNodeConfig({ id: 2, peers, httpTlsCert: "node.crt" })).toThrow(/go together/);
  });

  it("config: a wildcard HTTP address is advertised only through advertiseHttp", () => {
    const wildcard = { id: 1, peers, http: "0.0.0.0:8101", insecure: true };
    expect(() => parseNodeConfig(wildcard)).toThrow(/http 0\.0\.0\.0:8101 is a wildcard address/);
    const c = parseNodeConfig({ ...wildcard, advertiseHttp: "10.0.0.1:8101" });
    expect(advertisedHttpUrl(c)).toBe("http://10.0.0.1:8101");
    expect(() => parseNodeConfig({ id: 1, peers, advertisePeer: "10.0.0.9:7101" })).toThrow(
      /advertisePeer 10\.0\.0\.9:7101 differs from node 1's address in peers/,
    );
  });
});
