import { describe, expect, it } from "vitest";
import { parseNodeConfig, parsePeers } from "./node-config.js";

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

  it("config: --join is refused for a single-node cluster, which has no peer to rejoin", () => {
    const alone = [{ id: 1, address: "127.0.0.1:7101" }];
    expect(() => parseNodeConfig({ id: 1, peers: alone, join: true })).toThrow(
      /join: a single-node cluster has no peer/,
    );
    expect(parseNodeConfig({ id: 1, peers: alone }).join).toBe(false);
    expect(parseNodeConfig({ id: 2, peers, join: true }).join).toBe(true);
  });
});
