/**
 * The dashboard in a real browser (Debian's Chromium, driven by playwright-core) against
 * nodes the test plays (played-cluster.ts), for what a live cluster makes hard to arrange
 * on cue: the page's first moments, a node that never answers, a member the master lost
 * while it still answers the page, samples that land late, a browser whose clock is off,
 * a state transfer abandoned when its receiver died, and fault requests a node refuses.
 *
 * Chromium must be installed at /usr/bin/chromium (`npm test`'s pretest installs it on
 * Debian as root). The browser and the played nodes are stopped after each test.
 */

import type { Page } from "playwright-core";
import { afterEach, describe, expect, it } from "vitest";
import {
  type Answer,
  type Handlers,
  json,
  member,
  openPage,
  PlayedNode,
  recordedTexts,
  recordTexts,
  statusBody,
  stopPlayed,
  waitFor,
} from "./played-cluster.js";

afterEach(async () => {
  await stopPlayed();
});

type Shape = (id: number, nodes: readonly PlayedNode[]) => Answer;

/** Three played nodes whose status `shape` gives (read at each request); node 1 serves the page. */
async function playCluster(
  shape: () => Shape,
  extra: (id: number) => Handlers = () => ({}),
): Promise<PlayedNode[]> {
  const nodes: PlayedNode[] = [];
  for (const id of [1, 2, 3]) {
    nodes.push(await PlayedNode.start({ status: () => shape()(id, nodes), ...extra(id) }));
  }
  return nodes;
}

/**
 * Every node answers, `master` is master and sees every backup within 20 ms and level
 * with it, but for the master's view of the members in `seen`.
 */
function cluster(master: number, seen: Record<number, Record<string, unknown>> = {}): Shape {
  return (id, nodes) =>
    json(
      statusBody(
        id,
        id === master ? "master" : "backup",
        master,
        nodes.map((node, i) =>
          member(
            i + 1,
            node,
            id === master
              ? { lastContactMs: 20, matchIndex: 100, lag: 0, lagBytes: 0, ...seen[i + 1] }
              : {},
          ),
        ),
      ),
    );
}

/** One-second samples of `node` taken at `times`, `rate` requests a second each. */
function samples(
  node: number,
  times: readonly number[],
  rate: (at: number) => number,
  latency: (at: number) => { p50: number; p99: number } = () => ({ p50: 2, p99: 5 }),
): unknown[] {
  return times.map((at) => {
    const requestsPerSecond = rate(at);
    return {
      type: "sample",
      node,
      at,
      requestsPerSecond,
      errorsPerSecond: 0,
      latencyMs: requestsPerSecond === 0 ? null : { ...latency(at), max: 30 },
    };
  });
}

/** The last 30 whole seconds before now, each at `phase` milliseconds into the second. */
function seconds(phase: number | ((k: number) => number)): number[] {
  const base = Math.floor(Date.now() / 1000) * 1000;
  const times: number[] = [];
  for (let k = 30; k >= 1; k--) {
    times.push(base - k * 1000 + (typeof phase === "number" ? phase : phase(k)));
  }
  return times;
}

/** The y of every point of a chart's line, in the order drawn, and how many pieces it has. */
async function line(page: Page, selector: string): Promise<{ ys: number[]; pieces: number }> {
  const d = (await page.locator(selector).getAttribute("d")) ?? "";
  const ys = [...d.matchAll(/[ML][\d.]+,([\d.]+)/g)].map((m) => Number(m[1]));
  return { ys, pieces: (d.match(/M/g) ?? []).length };
}

describe("dashboard in a browser, against played nodes", () => {
  it("dashboard: says it is connecting until every node has answered once, never 'No master' from the first answer alone", async () => {
    const nodes = await playCluster(() => cluster(2));
    const { page, errors } = await openPage(`${nodes[0]?.url}/`, (p) =>
      recordTexts(p, ["verdict"]),
    );
    await page.locator("#verdict").filter({ hasText: "Healthy" }).waitFor();
    const said = await recordedTexts(page, "verdict");
    expect(said.filter((text) => !text.startsWith("Connecting"))[0], said.join("\n")).toBe(
      "Healthy: node 2 is master in term 3; 3 of 3 nodes answer.",
    );
    expect(errors).toEqual([]);
  });

  it("dashboard: draws each node's answer as it comes, not after the slowest (a node that never answers)", async () => {
    const nodes = await playCluster(
      () => cluster(2),
      (id) => (id === 3 ? { status: () => "hang" } : {}),
    );
    const { page, errors } = await openPage(`${nodes[0]?.url}/`, (p) =>
      p.addInitScript(`{
        const seen = new Set();
        window.roles = [];
        new MutationObserver(() => {
          for (const tr of document.querySelectorAll("#members tbody tr")) {
            const key = tr.dataset.node + ":" + tr.dataset.role;
            if (seen.has(key)) continue;
            seen.add(key);
            window.roles.push({ node: tr.dataset.node, role: tr.dataset.role, t: performance.now() });
          }
        }).observe(document, { subtree: true, childList: true, attributes: true });
      }`),
    );
    await page.locator('#members tr[data-node="3"][data-role="unreachable"]').waitFor();
    const roles = (await page.evaluate("window.roles")) as {
      node: string;
      role: string;
      t: number;
    }[];
    const when = (node: string, role: string) =>
      roles.find((r) => r.node === node && r.role === role)?.t ?? Number.NaN;
    // Node 2 is drawn as master at once; node 3 is "connecting" until its poll times out.
    expect(when("3", "unreachable") - when("2", "master"), JSON.stringify(roles)).toBeGreaterThan(
      400,
    );
    expect(when("3", "connecting")).toBeLessThan(when("3", "unreachable"));
    expect(await page.locator("#verdict").textContent()).toContain(
      "Degraded: node 2 is master in term 3; 2 of 3 nodes answer",
    );
    expect(errors).toEqual([]);
  });

  it("dashboard: the verdict is not healthy while the master has lost a member that still answers the page, or one is far behind", async () => {
    let shape = cluster(1, {
      2: { lastContactMs: 10_400, connected: false, lag: 100, lagBytes: 6758 },
    });
    const nodes = await playCluster(() => shape);
    const { page, errors } = await openPage(`${nodes[0]?.url}/`);
    const verdict = page.locator("#verdict");
    await verdict.filter({ hasText: "3 of 3 nodes answer" }).waitFor();
    expect(await verdict.textContent()).toBe(
      // No running count in the verdict, a live region read out at each change; the
      // health cell has it.
      "Degraded: node 1 is master in term 3; 3 of 3 nodes answer; node 2 is cut off from the master.",
    );
    expect(await verdict.getAttribute("data-verdict")).toBe("degraded");
    // The table says the same of node 2.
    expect(await page.locator('#members tr[data-node="2"] .col-health').textContent()).toBe(
      "lost, 10.4 s ago",
    );
    shape = cluster(1, { 3: { lag: 5000, lagBytes: 330_000 } });
    await verdict.filter({ hasText: "node 3 is 5000 entries behind" }).waitFor();
    shape = cluster(1, { 3: { lag: 40, lagBytes: null } });
    await verdict.filter({ hasText: "node 3 is behind and needs a state transfer" }).waitFor();
    shape = cluster(1);
    await verdict
      .filter({ hasText: "Healthy: node 1 is master in term 3; 3 of 3 nodes answer." })
      .waitFor();
    expect(errors).toEqual([]);
  });

  it("dashboard: a node's sample that lands late in the next second neither empties its second nor doubles the next (requests chart)", async () => {
    const nodes = await playCluster(() => cluster(1));
    const [one, two] = nodes as [PlayedNode, PlayedNode];
    one.history.push(...samples(1, seconds(500), () => 10));
    // Node 2 samples late in the second, and one time in four just after the next begins.
    two.history.push(
      ...samples(
        2,
        seconds((k) => (k % 4 === 0 ? 1050 : 950)),
        () => 10,
      ),
    );
    const { page, errors } = await openPage(`${one.url}/`);
    // Both nodes' streams read (each one's samples alone make 10 requests a second).
    await page
      .locator("#chart-summary")
      .filter({ hasText: "Last second: 20 requests/s" })
      .waitFor();
    const rate = await line(page, "#rate-chart path.line-rate");
    expect(rate.ys.length).toBeGreaterThanOrEqual(29);
    expect(new Set(rate.ys).size, rate.ys.join(" ")).toBe(1);
    expect(rate.pieces).toBe(1);
    expect(await page.locator("#chart-summary").textContent()).toMatch(
      /^Last second: 20 requests\/s, 0 errors\/s;/,
    );
    expect(errors).toEqual([]);
  });

  it("dashboard: latency is labelled as the slowest node's, and a second without requests gets no point (not 0 ms)", async () => {
    const nodes = await playCluster(() => cluster(1));
    const [one, two] = nodes as [PlayedNode, PlayedNode];
    const times = seconds(500);
    const quiet = new Set(times.slice(10, 15));
    const rate = (at: number) => (quiet.has(at) ? 0 : 10);
    one.history.push(...samples(1, times, rate, () => ({ p50: 2, p99: 5 })));
    two.history.push(...samples(2, times, rate, () => ({ p50: 8, p99: 20 })));
    const { page, errors } = await openPage(`${one.url}/`);
    await page
      .locator("#chart-summary")
      .filter({ hasText: "Last second: 20 requests/s" })
      .waitFor();
    const bottom = 158; // the chart's 0 line: 180 high, 10 above and 22 below the plot
    for (const which of ["p50", "p99"]) {
      const drawn = await line(page, `#latency-chart path.line-${which}`);
      expect(drawn.ys, which).not.toContain(bottom);
      expect(drawn.pieces, which).toBe(2);
      expect(drawn.ys.length, which).toBe(25);
    }
    expect(await page.locator("#chart-summary").textContent()).toBe(
      "Last second: 20 requests/s, 0 errors/s; slowest node's median 8 ms, 99th percentile 20 ms.",
    );
    expect(await page.locator(".chart figcaption").nth(1).textContent()).toContain(
      "the slowest node's",
    );
    expect(errors).toEqual([]);
  });

  it("dashboard: the charts run on the nodes' clock, so a browser 90 s ahead or behind still shows them", async () => {
    const nodes = await playCluster(() => cluster(1));
    const [one] = nodes as [PlayedNode];
    const times = seconds(500);
    one.history.push(...samples(1, times, () => 20), {
      type: "failover",
      seq: 1,
      node: 1,
      at: (times[20] ?? 0) + 100,
      term: 3,
      previousMaster: 2,
      durationMs: 180,
    });
    for (const offsetMs of [90_000, -90_000]) {
      const { page, errors } = await openPage(`${one.url}/`, (p) =>
        p.addInitScript(`{
          const off = ${offsetMs};
          const RealDate = Date;
          const realNow = RealDate.now.bind(RealDate);
          class SkewedDate extends RealDate {
            constructor(...a) { if (a.length === 0) super(realNow() + off); else super(...a); }
            static now() { return realNow() + off; }
          }
          globalThis.Date = SkewedDate;
        }`),
      );
      const summary = page.locator("#chart-summary");
      await summary.filter({ hasText: "Last second: 20 requests/s" }).waitFor({ timeout: 10_000 });
      expect((await line(page, "#rate-chart path.line-rate")).ys.length).toBeGreaterThanOrEqual(29);
      expect(await page.locator("#rate-chart .failover-mark").count()).toBe(1);
      expect(errors).toEqual([]);
      await page.close();
    }
  });

  it("dashboard: a state transfer whose receiver died reads as abandoned at its last progress, its bar goes, a retry gets a line of its own, and retries that move nothing share one", async () => {
    const nodes = await playCluster(() => cluster(1, { 3: { lag: 900, lagBytes: null } }));
    const [one, , three] = nodes as [PlayedNode, PlayedNode, PlayedNode];
    const total = 77_489_766; // 73.9 MiB
    let seq = 0;
    const transfer = (node: PlayedNode, id: number, at: number, fields: Record<string, unknown>) =>
      node.publish({
        type: "transfer",
        seq: ++seq,
        node: id,
        at,
        peer: id === 1 ? 3 : 1,
        direction: id === 1 ? "sending" : "receiving",
        snapshotIndex: 1185,
        totalBytes: total,
        done: false,
        ...fields,
      });
    const { page, errors } = await openPage(`${one.url}/`);
    await page.locator("#verdict").filter({ hasText: "node 1 is master" }).waitFor();
    const started = Date.now() - 20_000;
    transfer(one, 1, started, { bytes: Math.ceil(total * 0.1) });
    transfer(one, 1, started + 9000, { bytes: Math.ceil(total * 0.58) });
    transfer(three, 3, started + 9100, { bytes: Math.ceil(total * 0.58) });
    const bar = page.locator('#members tr[data-node="3"] .col-transfer');
    await bar.filter({ hasText: "58% of 73.9 MiB" }).waitFor();

    await three.kill();
    const lines = page.locator('#timeline li[data-kind="transfer"]');
    await lines.filter({ hasText: "no longer reported" }).waitFor();
    transfer(one, 1, started + 12_000, { bytes: Math.ceil(total * 0.58), done: true });
    await lines.filter({ hasText: "abandoned" }).waitFor();
    await waitFor("the dead receiver's bar to go", async () =>
      (await bar.textContent()) === "–" ? true : undefined,
    );
    transfer(one, 1, started + 15_000, { bytes: Math.ceil(total * 0.05) });
    await lines.filter({ hasText: "5% of 73.9 MiB" }).waitFor();

    const texts = (await lines.allTextContents()).map((text) => text.replace(/^[\d:.]+/, ""));
    expect(texts).toEqual([
      "state transferNode 1 state transfer to node 3: 5% of 73.9 MiB (snapshot at index 1185)",
      "state transferNode 3 state transfer from node 1: no longer reported at 58% of 73.9 MiB, since node 3 stopped answering (snapshot at index 1185)",
      "state transferNode 1 state transfer to node 3 abandoned at 58% of 73.9 MiB (42.9 MiB moved; snapshot at index 1185)",
    ]);
    // The retry's line has its own time, after the first one's.
    const times = await page.locator('#timeline li[data-kind="transfer"] time').allTextContents();
    expect(times[0]).not.toBe(times[2]);

    // A master retries a dead receiver every few seconds: the attempts that move nothing
    // are counted on one line.
    transfer(one, 1, started + 16_000, { bytes: Math.ceil(total * 0.05), done: true });
    for (const at of [17_000, 18_000, 19_000]) {
      transfer(one, 1, started + at, { bytes: 0 });
      transfer(one, 1, started + at + 500, { bytes: 0, done: true });
    }
    await lines.filter({ hasText: "3 times" }).waitFor();
    const folded = (await lines.allTextContents()).map((text) => text.replace(/^[\d:.]+/, ""));
    expect(folded).toHaveLength(4);
    expect(folded[0]).toMatch(
      /^state transferNode 1 state transfer to node 3 abandoned at 0% of 73.9 MiB \(0 B moved; snapshot at index 1185\) \(3 times, last at [\d:.]+\)$/,
    );
    expect(folded[1]).toBe(
      "state transferNode 1 state transfer to node 3 abandoned at 5% of 73.9 MiB (3.7 MiB moved; snapshot at index 1185)",
    );
    expect(errors).toEqual([]);
  });

  it("dashboard: a transfer the page joined late is timed from when it began (its events say), not from the first one the page saw", async () => {
    const nodes = await playCluster(() => cluster(1));
    const [one] = nodes as [PlayedNode, PlayedNode, PlayedNode];
    const { page, errors } = await openPage(`${one.url}/`);
    await page.locator("#verdict").filter({ hasText: "node 1 is master" }).waitFor();
    const now = Date.now();
    const event = (seq: number, at: number, bytes: number, done: boolean) =>
      one.publish({
        type: "transfer",
        seq,
        node: 1,
        at,
        peer: 3,
        direction: "sending",
        snapshotIndex: 90,
        bytes,
        totalBytes: 1000,
        done,
        startedAt: now - 180_000,
      });
    event(1, now - 1000, 900, false);
    event(2, now, 1000, true);
    const line = page.locator('#timeline li[data-kind="transfer"]');
    await line.filter({ hasText: "completed" }).waitFor();
    expect(await line.textContent()).toContain("in 3 min");
    expect(errors).toEqual([]);
  });

  it("dashboard: a repeat of a line the timeline already let go of gets a line of its own, not a count no one sees", async () => {
    const nodes = await playCluster(() => cluster(1));
    const [one] = nodes as [PlayedNode, PlayedNode, PlayedNode];
    const { page, errors } = await openPage(`${one.url}/`);
    await page.locator("#verdict").filter({ hasText: "node 1 is master" }).waitFor();
    const at = Date.now() - 60_000;
    let seq = 0;
    const peerDown = (node: PlayedNode, id: number, t: number, peer: number) =>
      node.publish({
        type: "peer",
        seq: ++seq,
        node: id,
        at: t,
        peer,
        up: false,
        reason: "refused",
      });
    // Node 2's events, sent on node 1's stream: the page handles every stream alike.
    peerDown(one, 2, at, 3);
    // 200 newer lines of node 1 push node 2's line off the timeline (it keeps 200).
    for (let i = 1; i <= 200; i++) peerDown(one, 1, at + i, 1000 + i);
    peerDown(one, 2, at + 500, 3);
    const shown = page
      .locator("#timeline li")
      .filter({ hasText: "Node 2 lost its connection to node 3" });
    await shown.first().waitFor({ timeout: 10_000 });
    // Before, the repeat was counted on the removed line, and nothing showed.
    expect(await shown.count()).toBe(1);
    expect(errors).toEqual([]);
  });

  it("dashboard: a partitioned node that stops answering is shown unreachable, not still partitioned", async () => {
    const nodes = await playCluster(
      () => cluster(1),
      (id) => ({ faults: () => json({ enabled: true, partitioned: id === 3, token: `t${id}` }) }),
    );
    const { page, errors } = await openPage(`${nodes[0]?.url}/`);
    const badge = page.locator('#members tr[data-node="3"] .role');
    await badge.filter({ hasText: "backup (partitioned)" }).waitFor();
    await nodes[2]?.kill();
    await page.locator('#members tr[data-node="3"][data-role="unreachable"]').waitFor();
    expect(await badge.textContent()).toBe("unreachable");
    expect(errors).toEqual([]);
  });

  it("dashboard: a member the page's security policy does not list (added after it loaded) is said to need a reload", async () => {
    const nodes = await playCluster(
      () => cluster(1),
      (id) =>
        id === 1
          ? {
              // As node 1 served the page before node 3 joined: nodes 1 and 2 only.
              pagePolicy: () =>
                `default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' ${nodes[1]?.url}`,
            }
          : {},
    );
    const { page, errors } = await openPage(`${nodes[0]?.url}/`);
    const health = page.locator('#members tr[data-node="3"] .col-health');
    await health.filter({ hasText: "reload the page" }).waitFor();
    expect(await health.textContent()).toBe(
      "out of this page's reach (it joined after the page was opened): reload the page",
    );
    expect(await page.locator('#members tr[data-node="2"] .col-health').textContent()).toMatch(
      /^ok, /,
    );
    expect(errors).toEqual([]);
  });

  it("dashboard: an address that never answered is no longer asked once no node advertises it (a member that moved)", async () => {
    let oldAsked = 0;
    // Node 3's first address never answers; then it moves to one that does.
    const old = await PlayedNode.start({
      status: () => {
        oldAsked++;
        return "hang";
      },
    });
    let moved = false;
    const nodes: PlayedNode[] = [];
    const shape = (id: number): Answer =>
      json(
        statusBody(id, id === 1 ? "master" : "backup", 1, [
          member(1, nodes[0]!, id === 1 ? { lastContactMs: 0 } : {}),
          member(2, nodes[1]!, id === 1 ? { lastContactMs: 20 } : {}),
          member(3, moved ? nodes[2]! : old, id === 1 ? { lastContactMs: 20 } : {}),
        ]),
      );
    for (const id of [1, 2, 3]) nodes.push(await PlayedNode.start({ status: () => shape(id) }));
    const { page, errors } = await openPage(`${nodes[0]?.url}/`);
    await waitFor("the old address asked", async () => (oldAsked > 0 ? true : undefined));
    moved = true;
    await page
      .locator('#members tr[data-node="3"] .col-health')
      .filter({ hasText: /^ok/ })
      .waitFor();
    // A poll already under way may still end; after that, none.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const settled = oldAsked;
    await new Promise((resolve) => setTimeout(resolve, 3000));
    expect(oldAsked).toBe(settled);
    expect(errors).toEqual([]);
  });

  it("dashboard: a node that refuses the page's token still answers: no line says it stopped answering", async () => {
    let refuse = false;
    const healthy = cluster(1);
    const nodes = await playCluster(
      () => (id, all) =>
        refuse
          ? { status: 401, body: { error: "no token", code: "ERR_UNAUTHENTICATED" } }
          : healthy(id, all),
    );
    const { page, errors } = await openPage(`${nodes[0]?.url}/`);
    await page.locator("#verdict").filter({ hasText: "Healthy" }).waitFor();
    // The tokens change under the page: every node now asks for one.
    refuse = true;
    await page.locator("#token-form").waitFor({ state: "visible" });
    await page.waitForTimeout(1500);
    expect(await page.locator('#timeline li[data-kind="down"]').count()).toBe(0);
    expect(errors).toEqual([]);
  });

  it("dashboard: a fault the node refuses, or that gets no answer, is never reported as done", async () => {
    const nodes = await playCluster(
      () => cluster(2),
      (id) => ({
        // Node 2 does not give this page its fault token: it takes no faults from it.
        faults: () =>
          json({ enabled: true, partitioned: false, ...(id === 2 ? {} : { token: `t${id}` }) }),
        // As a refused CORS pre-check looks to the page: no answer it may read.
        fault: () => "reset",
      }),
    );
    const { page, errors } = await openPage(`${nodes[0]?.url}/`);
    const message = page.locator("#fault-message");
    /** What the page says once it is done with the request it was sending. */
    const outcome = (before: string) =>
      waitFor("the outcome of the fault request", async () => {
        const text = (await message.textContent()) ?? "";
        return text !== before && !/^Sending|waiting for/.test(text) ? text : undefined;
      });
    await page.locator("#verdict").filter({ hasText: "Healthy" }).waitFor();
    // Node 2, the master, takes no faults from this page: its buttons are off, and so is
    // Kill master (it was on, and a click only said the master refused).
    const two = page.locator('#members tr[data-node="2"]');
    await two.locator(".fault-note").filter({ hasText: "refuses faults from this page" }).waitFor();
    expect(await page.getByRole("button", { name: "Kill master" }).isDisabled()).toBe(true);

    await page.locator('#members tr[data-node="3"] button[data-fault="kill"]').click();
    const three = await outcome("");
    expect(three).toMatch(/^Node 3 refused kill: /);
    expect(three).toContain("the node still answers, so nothing was done");
    expect(await two.locator('button[data-fault="kill"]').isDisabled()).toBe(true);
    expect(errors).toEqual([]);
  });
});
