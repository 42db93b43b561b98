/**
 * The fallback for machines where the campaign may not touch iptables: every node reaches
 * its peers through the campaign's fault-injecting TCP relay, and partitions cut the relay
 * instead. A short campaign of partitions only must keep every verdict and say that it used
 * the relay.
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCampaign } from "../../src/chaos/campaign.js";

const out = mkdtempSync(join(tmpdir(), "baton-chaos-report-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

describe("chaos", () => {
  it("timing: chaos: partitions through the TCP relay keep every verdict (isolate-master, split, one-way, flap; 20 s)", async () => {
    const result = await runCampaign({
      seed: 11,
      durationMs: 20_000,
      nodes: 3,
      clients: 4,
      nemeses: ["isolate-master", "split", "one-way", "flap"],
      method: "relay",
      staleReads: false,
      out: join(out, "relay"),
    });
    if (!result.ok) console.error(`${result.summary}\n`);
    expect(result.method).toBe("relay");
    expect(result.ok).toBe(true);
    expect(Object.values(result.totals.faults).reduce((a, b) => a + (b ?? 0), 0)).toBeGreaterThan(
      0,
    );
  }, 240_000);
});
