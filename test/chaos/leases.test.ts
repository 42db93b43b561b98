/**
 * The campaign's leases on a one-node stand-in over the real HTTP API and state machine,
 * with the master's lease ticks running: leases are read back before their TTL and are all
 * gone after it, and a lease that ends a little early is caught. Real time (a lease lives
 * 3 s), hence the `timing:` names. A run whose grants are all refused as bad requests, or
 * whose reads all come back too late, checks nothing, and says so, however short it was.
 */

import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { LocalKvNode } from "../../harness/doubles/local-kv-node.js";
import { CampaignLeases } from "../../src/chaos/leases.js";
import { createHttpServer } from "../../src/http/server.js";
import { encodeCommand } from "../../src/kv/index.js";
import { errorAnswer, startAnswerProxy } from "./answer-proxy.js";

async function until(condition: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition() && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

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
      // Each lease is recorded for the watch verdict with the revision its key was attached
      // at, and the final read that found every one ended names a revision after them all.
      expect(leases.records).toHaveLength(leases.granted);
      const attached = leases.records.map((r) => r.revision ?? 0);
      expect(Math.min(...attached)).toBeGreaterThan(0);
      expect(leases.endedBy).toBeGreaterThan(Math.max(...attached));
      expect(leases.verdict()).toMatchObject({
        ok: true,
        detail: expect.stringMatching(
          /last read in time started before the deadline: median \d+ ms/,
        ),
      });
    } finally {
      node.store.stopLeaseTicker();
      await server.close();
    }
  }, 40_000);

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
      const leases = new CampaignLeases([proxy.url]);
      leases.start();
      await until(() => refused >= 2, 5000);
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

  it("timing: leases: a lease that ends 200 ms before its TTL fails the verdict (revoked 2.8 s after its grant arrived)", async () => {
    const node = new LocalKvNode(1);
    node.store.startLeaseTicker();
    const server = createHttpServer({ api: node, logger: pino({ level: "silent" }) });
    const revokes: NodeJS.Timeout[] = [];
    const proxy = await startAnswerProxy(
      (await server.listen("127.0.0.1", 0)).url,
      async (incoming, forward) => {
        const arrivedAt = performance.now();
        const answer = await forward();
        if (incoming.method !== "POST" || incoming.url !== "/v1/leases") return answer;
        const { id } = JSON.parse(answer.body) as { id: number };
        const revokeAt = arrivedAt + 2800 - performance.now();
        revokes.push(
          setTimeout(() => node.apply(encodeCommand({ type: "lease_revoke", id })), revokeAt),
        );
        return answer;
      },
    );
    try {
      const leases = new CampaignLeases([proxy.url]);
      leases.start();
      // Every key is gone for the last 200 ms of its TTL; the first lease's reads are timed
      // from one read's latency only, so a loaded machine may need a round or two more.
      await until(() => leases.problems.length > 0 || leases.granted >= 5, 20_000);
      await leases.abandon();
      const verdict = leases.verdict();
      expect(verdict.ok).toBe(false);
      expect(verdict.problems?.[0]).toMatch(
        /^lease\/\d \(lease \d+\) was gone at least \d+ ms early$/,
      );
    } finally {
      for (const timer of revokes) clearTimeout(timer);
      node.store.stopLeaseTicker();
      await new Promise((done) => proxy.server.close(done));
      await server.close();
    }
  }, 40_000);

  it("timing: leases: a short run whose reads all come back after the deadline fails the verdict (none checked, one round of 3 s)", async () => {
    const node = new LocalKvNode(1);
    node.store.startLeaseTicker();
    const server = createHttpServer({ api: node, logger: pino({ level: "silent" }) });
    const proxy = await startAnswerProxy(
      (await server.listen("127.0.0.1", 0)).url,
      async (incoming, forward) => {
        const answer = await forward();
        // Later than the first read's 700 ms before the deadline: no read says anything.
        if (incoming.method === "GET" && incoming.url.startsWith("/v1/kv/lease")) {
          await new Promise((resolve) => setTimeout(resolve, 800));
        }
        return answer;
      },
    );
    try {
      const leases = new CampaignLeases([proxy.url]);
      leases.start();
      // The second grant: the first round has ended, its one read too late.
      await until(() => leases.granted >= 2, 10_000);
      await leases.abandon();
      const verdict = leases.verdict();
      expect(verdict.ok).toBe(false);
      expect(verdict.problems).toEqual([
        expect.stringMatching(
          /^no lease was read back in time in \d+ s \(1 round ended\): nothing was checked$/,
        ),
      ]);
    } finally {
      node.store.stopLeaseTicker();
      await new Promise((done) => proxy.server.close(done));
      await server.close();
    }
  }, 40_000);

  it("timing: leases: the margin reported is from the start of the last read in time to the deadline, not from its completion (reads answered 400 ms late)", async () => {
    const node = new LocalKvNode(1);
    node.store.startLeaseTicker();
    const server = createHttpServer({ api: node, logger: pino({ level: "silent" }) });
    let grantedAt: number | null = null;
    const reads: { startedAt: number; completedAt: number }[] = [];
    const proxy = await startAnswerProxy(
      (await server.listen("127.0.0.1", 0)).url,
      async (incoming, forward) => {
        const arrivedAt = performance.now();
        if (incoming.method === "POST" && incoming.url === "/v1/leases") grantedAt ??= arrivedAt;
        const answer = await forward();
        if (incoming.method === "GET" && incoming.url.startsWith("/v1/kv/lease%2F1")) {
          await new Promise((resolve) => setTimeout(resolve, 400));
          reads.push({ startedAt: arrivedAt, completedAt: performance.now() });
        }
        return answer;
      },
    );
    try {
      const leases = new CampaignLeases([proxy.url]);
      leases.start();
      await until(() => leases.checked >= 1, 10_000);
      await leases.abandon();
      expect(leases.checked).toBeGreaterThanOrEqual(1);
      // The first lease's: its deadline is its grant's sending plus 3 s, and a read completed
      // in time 1 ms before it.
      const deadline = grantedAt! + 3000;
      const inTime = reads.filter((read) => read.completedAt <= deadline - 1);
      expect(inTime.length).toBeGreaterThan(0);
      const latestStart = Math.max(...inTime.map((read) => read.startedAt));
      // Sent a little before it arrived, answered a little after; 400 ms apart otherwise.
      expect(Math.abs(leases.margins[0]! - (deadline - latestStart))).toBeLessThan(100);
      expect(leases.verdict().detail).toMatch(
        /last read in time started before the deadline: median \d+ ms, closest \d+ ms, widest \d+ ms/,
      );
    } finally {
      node.store.stopLeaseTicker();
      await new Promise((done) => proxy.server.close(done));
      await server.close();
    }
  }, 40_000);

  it("leases: a run judged before its first round ended is too short to check, and says so", async () => {
    const leases = new CampaignLeases(["http://127.0.0.1:1"]);
    leases.start();
    expect(leases.verdict()).toMatchObject({
      ok: true,
      detail: expect.stringMatching(/^too short to check a lease: /),
    });
    await leases.abandon();
  });
});
