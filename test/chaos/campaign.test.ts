/**
 * The fault campaign as CI runs it: real `baton start` processes, clients hammering them,
 * and every kind of fault (kills, pauses, partitions, wiped and replaced members,
 * switchovers, rolling restarts), for about two minutes; every verdict must hold.
 * runCampaign removes its processes, partition rules and data directories itself, whether
 * it passes or throws; the report folder is removed here.
 */

import { describe, expect, it } from "vitest";
import { useCampaigns } from "../../harness/campaigns.js";
import { HOST_NEMESES, NEMESES } from "../../src/chaos/nemesis.js";

const runCampaign = useCampaigns();

describe("chaos", () => {
  it("timing: chaos: a campaign with every loopback fault keeps every verdict (3 nodes, 100 s of faults)", async () => {
    const seed = Number(process.env.BATON_CHAOS_SEED ?? Date.now() % 1_000_000);
    const result = await runCampaign("campaign", {
      seed,
      durationMs: 100_000,
      clients: 5,
      // Every fault that loopback can make (host-down needs hosts of their own: short-campaigns.test.ts).
      nemeses: NEMESES.filter((k) => !HOST_NEMESES.includes(k)),
    });
    if (!result.ok) console.error(`${result.summary}\n`);
    expect(result.verdicts).toMatchObject({
      linearizable: { ok: true },
      noLostWrites: { ok: true },
      exactlyOnce: { ok: true },
      converged: { ok: true },
      live: { ok: true },
      noCrashes: { ok: true },
      watched: { ok: true },
      atomic: { ok: true },
      leases: { ok: true },
      membership: { ok: true },
      faults: { ok: true },
      noErrors: { ok: true },
    });
    expect(Object.keys(result.totals.faults).length).toBeGreaterThanOrEqual(4);
  }, 300_000);
});
