/**
 * The campaign's leases on a one-node stand-in over the real HTTP API and state machine,
 * with the master's lease ticks running: leases are read back before their TTL and are all
 * gone after it. Real time (a lease lives 3 s), hence the `timing:` name.
 */

import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { LocalKvNode } from "../../harness/doubles/local-kv-node.js";
import { CampaignLeases } from "../../src/chaos/leases.js";
import { createHttpServer } from "../../src/http/server.js";

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
});
