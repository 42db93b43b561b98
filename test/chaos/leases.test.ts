/**
 * The campaign's leases on a one-node stand-in over the real HTTP API and state machine,
 * with the master's lease ticks running: leases are read back before their TTL and are all
 * gone after it. Real time (a lease lives 3 s), hence the `timing:` name. A run whose
 * grants are all refused as bad requests checks nothing, and says so.
 */

import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { LocalKvNode } from "../../harness/doubles/local-kv-node.js";
import { CampaignLeases } from "../../src/chaos/leases.js";
import { createHttpServer } from "../../src/http/server.js";
import { errorAnswer, startAnswerProxy } from "./answer-proxy.js";

describe("chaos leases", () => {
  it("timing: leases: none ends early and every one ends", async () => {
    const node = new LocalKvNode(1);
    node.store.startLeaseTicker();
    const server = createHttpServer({ api: node, logger: pino({ level: "silent" }) });
    try {
      const leases = new CampaignLeases([(await server.listen("127.0.0.1", 0)).url]);
      leases.start();
      await new Promise((resolve) => setTimeout(resolve, 2800));
      await leases.stop();
      expect(leases.granted).toBeGreaterThan(0);
      expect(leases.checked).toBeGreaterThan(0);
      expect(leases.verdict()).toMatchObject({ ok: true });
    } finally {
      node.store.stopLeaseTicker();
      await server.close();
    }
  }, 30_000);

  it("leases: a run whose grants are all refused as bad requests fails the verdict (none checked, 400s)", async () => {
    const node = new LocalKvNode(1);
    const server = createHttpServer({ api: node, logger: pino({ level: "silent" }) });
    let refused = 0;
    const proxy = await startAnswerProxy(
      (await server.listen("127.0.0.1", 0)).url,
      async (incoming, forward) => {
        if (incoming.method !== "POST" || incoming.url !== "/v1/leases") return forward();
        refused++;
        return errorAnswer(400, "ERR_INVALID_INPUT", "ttlSeconds: not a number");
      },
    );
    try {
      const leases = new CampaignLeases([proxy.url], { exerciseMsMin: 0 });
      leases.start();
      const deadline = Date.now() + 5000;
      while (refused < 2 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // Without the final wait of a TTL: what matters is that nothing was checked.
      await leases.abandon();
      const verdict = leases.verdict();
      expect(verdict.ok).toBe(false);
      expect(verdict.problems).toHaveLength(2);
      expect(verdict.problems?.[0]).toMatch(
        /^\d+ requests answered ERR_INVALID_INPUT, which no fault explains: /,
      );
      expect(verdict.problems?.[1]).toMatch(/^no lease was read back in time in \d+ s/);
    } finally {
      await new Promise((done) => proxy.server.close(done));
      await server.close();
    }
  });
});
