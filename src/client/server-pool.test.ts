/**
 * What the client believes about the master, from the statuses nodes give: the newest term
 * wins, also after a failed attempt made it forget the master it knew.
 */

import { afterEach, describe, expect, it } from "vitest";
import type { NodeStatus } from "./node-status.js";
import { ServerPool } from "./server-pool.js";

const pools: ServerPool[] = [];
afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.close()));
});

const A = "http://127.0.0.1:8101";
const B = "http://127.0.0.1:8102";
const C = "http://127.0.0.1:8103";

function status(id: number, role: NodeStatus["role"], term: number): NodeStatus {
  return {
    id,
    role,
    term,
    master: role === "master" ? id : null,
    commitIndex: 0,
    appliedIndex: 0,
    lastIndex: 0,
    members: [],
  } as unknown as NodeStatus;
}

describe("server pool", () => {
  it("pool: a master of an older term is not believed, also after the newer master's attempt failed", async () => {
    const pool = new ServerPool([A, B]);
    pools.push(pool);
    pool.learnFromStatus(A, status(1, "master", 5));
    expect(pool.masterEndpoint()).toBe(A);
    // The attempt at A failed: the master is forgotten, not the term it was learned in.
    pool.noteFailure(A);
    expect(pool.masterEndpoint()).toBeNull();
    // B, cut off since term 4, still believes it leads.
    pool.learnFromStatus(B, status(2, "master", 4));
    expect(pool.masterEndpoint()).toBeNull();
    pool.learnFromStatus(B, status(2, "master", 6));
    expect(pool.masterEndpoint()).toBe(B);
  });
  it("pool: a hint is held as term 0, so a status of the term it was learned in still replaces it", () => {
    const pool = new ServerPool([A, B, C]);
    pools.push(pool);
    pool.learnFromStatus(A, status(1, "master", 5));
    expect([pool.masterEndpoint(), pool.masterTerm()]).toEqual([A, 5]);
    // A hint has no term: it used to take the guess's, 5, as if it were as new as the guess,
    // and an attempt at the hinted node was then never abandoned for term 5's real master.
    pool.learnFromHint({ masterUrl: B });
    expect([pool.masterEndpoint(), pool.masterTerm()]).toEqual([B, 0]);
    pool.learnFromStatus(C, status(3, "master", 5));
    expect([pool.masterEndpoint(), pool.masterTerm()]).toEqual([C, 5]);
  });

  it("pool: with every endpoint https, a node's http URL (member or hint) is never used: the token would cross in clear", () => {
    const [sA, sB] = ["https://10.0.0.1:8101", "https://10.0.0.2:8102"];
    const pool = new ServerPool([sA, sB]);
    pools.push(pool);
    const members = (url: string) => [
      { id: 1, httpUrl: sA },
      { id: 2, httpUrl: sB },
      { id: 3, httpUrl: url },
    ];
    const backup = (url: string) =>
      ({ ...status(1, "backup", 5), master: 3, members: members(url) }) as unknown as NodeStatus;
    pool.learnFromStatus(sA, backup("http://203.0.113.9:8103"));
    expect(pool.masterEndpoint()).toBeNull();
    pool.learnFromHint({ masterUrl: "http://203.0.113.9:8103" });
    expect(pool.masterEndpoint()).toBeNull();
    // An https one is used, as is any URL when the endpoints themselves are http.
    pool.learnFromStatus(sA, backup("https://10.0.0.3:8103"));
    expect(pool.masterEndpoint()).toBe("https://10.0.0.3:8103");
    const plain = new ServerPool([A]);
    pools.push(plain);
    plain.learnFromHint({ masterUrl: B });
    expect(plain.masterEndpoint()).toBe(B);
  });

  it("pool: a request made after the pool closed was never sent, so a write in it cannot have been applied", async () => {
    const pool = new ServerPool([A]);
    await pool.close();
    const answer = await pool.request(A, {
      method: "PUT",
      path: "/v1/kv/k",
      headers: {},
      timeoutMs: 1000,
    });
    expect(answer).toMatchObject({ ok: false, kind: "refused" });
  });

  it("pool: a second close waits for the same closing", async () => {
    const pool = new ServerPool([A]);
    const first = pool.close();
    const second = pool.close();
    expect(second).toBe(first);
    await Promise.all([first, second]);
  });
});
