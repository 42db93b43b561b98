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
});
