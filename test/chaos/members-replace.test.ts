/**
 * The campaign's operator replacing a member through a fake master whose member list shows
 * the removal late (a node that answered before applying it): the replace must add the
 * member back, not take the stale listing for the re-added member.
 */

import { afterEach, describe, expect, it } from "vitest";
import { FakeCluster } from "../../harness/doubles/fake-cluster.js";
import { CampaignMembers } from "../../src/chaos/members.js";

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
});
