/**
 * The campaign's operator replacing a member through a fake master whose member list shows
 * the removal late (a node that answered before applying it): the replace must add the
 * member back, not take the stale listing for the re-added member. And the membership
 * verdict: a switchover refused as a wrong request fails it, one refused as a target that
 * cannot take over yet does not.
 */

import { afterEach, describe, expect, it } from "vitest";
import { FakeCluster } from "../../harness/doubles/fake-cluster.js";
import type { Verdict } from "../../src/chaos/checks.js";
import { CampaignMembers, checkMembership } from "../../src/chaos/members.js";
import type { FaultWindow } from "../../src/chaos/nemesis.js";

const fakes: FakeCluster[] = [];
afterEach(async () => {
  for (const fake of fakes.splice(0)) await fake.close();
});

describe("chaos: member replace", () => {
  it("members: a removal the list shows late is waited for, then the member is added back once", async () => {
    const fake = await FakeCluster.start(1, 1);
    fakes.push(fake);
    const member = (id: number, voter: boolean) => ({
      id,
      voter,
      peerAddress: `127.0.0.1:${7100 + id}`,
      httpUrl: `http://127.0.0.1:${8100 + id}`,
    });
    let members = [member(1, true), member(2, true), member(3, true)];
    let staleListings = 0;
    const calls: string[] = [];
    fake.node(1).intercept = (request, reply) => {
      const url = request.url.split("?")[0];
      if (request.method === "GET" && url === "/v1/members") {
        // The two listings after the removal still show member 3.
        const shown = staleListings > 0 ? [...members, member(3, true)] : members;
        if (staleListings > 0) staleListings--;
        reply.send({ members: shown });
        return true;
      }
      if (request.method === "DELETE" && url === "/v1/members/3") {
        calls.push("remove 3");
        members = members.filter((m) => m.id !== 3);
        staleListings = 2;
        reply.send({ members });
        return true;
      }
      if (request.method === "POST" && url === "/v1/members") {
        // (The fake's fallback route does not parse bodies: the add is member 3's by the test.)
        calls.push("add");
        members = [...members, member(3, false)];
        reply.send({ members });
        return true;
      }
      return false;
    };
    const operator = new CampaignMembers(fake.urls);
    try {
      await operator.replace(3, "http://127.0.0.1:8103");
      expect(calls).toEqual(["remove 3", "add"]);
      expect(members.find((m) => m.id === 3)?.voter).toBe(false);
    } finally {
      await operator.close();
    }
  });

  it("membership: a switchover or membership change refused as a wrong request fails the verdict; a refusal the faults explain does not", async () => {
    const fake = await FakeCluster.start(1, 1);
    fakes.push(fake);
    let wrong = true;
    fake.node(1).intercept = (request, reply) => {
      const url = request.url.split("?")[0];
      if (request.method === "POST" && url === "/v1/switchover") {
        const error = wrong
          ? { code: "ERR_INVALID_INPUT", error: "to: not a member" }
          : { code: "ERR_CONFLICT", error: "n2 cannot take over: not caught up" };
        reply.code(wrong ? 400 : 409).send(error);
        return true;
      }
      return false;
    };
    const switchover = (detail: string): FaultWindow => ({
      kind: "switchover",
      start: 0,
      end: 1,
      nodes: [1, 2],
      detail,
      unfinished: detail,
    });
    const run = async (): Promise<Verdict> => {
      const operator = new CampaignMembers(fake.urls);
      try {
        const windows: FaultWindow[] = [];
        for (let i = 0; i < 2; i++) {
          const outcome = await operator.switchover(2);
          expect(outcome.ok).toBe(false);
          if (!outcome.ok) windows.push(switchover(`not done (${outcome.error})`));
        }
        return checkMembership(windows, [], operator.errors);
      } finally {
        await operator.close();
      }
    };
    const refusedAsWrong = await run();
    expect(refusedAsWrong.ok).toBe(false);
    expect(refusedAsWrong.detail).toBe(
      "the operator's requests were answered as wrong 2 times; 0 replaced and promoted, 0 of 2 switchovers done",
    );
    expect(refusedAsWrong.problems).toEqual([
      expect.stringMatching(/^2 requests answered ERR_INVALID_INPUT, which no fault explains: /),
    ]);
    // A target that cannot take over yet is the operator's to retry.
    wrong = false;
    expect(await run()).toEqual({
      ok: true,
      detail: "0 replaced and promoted, 0 of 2 switchovers done",
    });
  });
});
