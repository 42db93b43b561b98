/**
 * The campaign's bank on a one-node stand-in over the real HTTP API and state machine:
 * transfers run and every range read finds the books whole; books that do not add up, a
 * read older than an acknowledged transfer, an account that does not hold what the transfer
 * acknowledged at its revision wrote, a refusal by the comparison that no transfer of
 * unknown outcome explains, and a run that moved nothing, however short, because its
 * requests were refused as wrong or its transfers never held, are reported.
 */

import { pino } from "pino";
import { request } from "undici";
import { afterEach, describe, expect, it } from "vitest";
import { LocalKvNode } from "../../harness/doubles/local-kv-node.js";
import { type BankRecord, CampaignBank } from "../../src/chaos/bank.js";
import { CampaignWatch, checkWatch } from "../../src/chaos/watch-check.js";
import { Prng } from "../../src/core/prng.js";
import { createHttpServer, type HttpServer } from "../../src/http/server.js";
import { encodeCommand } from "../../src/kv/index.js";
import {
  errorAnswer,
  type ProxiedAnswer,
  type ProxiedRequest,
  startAnswerProxy,
} from "./answer-proxy.js";

const servers: HttpServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

const proxies: { close(done: () => void): void }[] = [];

afterEach(async () => {
  await Promise.all(proxies.splice(0).map((p) => new Promise<void>((done) => p.close(done))));
});

async function serve(node: LocalKvNode): Promise<string> {
  const server = createHttpServer({ api: node, logger: pino({ level: "silent" }) });
  servers.push(server);
  return (await server.listen("127.0.0.1", 0)).url;
}

/** A transfer compares revisions; the opening transaction compares existence. */
function isTransfer(incoming: ProxiedRequest): boolean {
  return incoming.url === "/v1/txn" && incoming.body.includes('"revision"');
}

const REFUSED_UNEXPLAINED =
  /^transfer of \d+ from bank\/a\d@\d+ to bank\/a\d@\d+ refused by its comparison \(at revision \d+\), though no transfer of unknown outcome could have changed either account$/;

async function until(condition: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("chaos bank", () => {
  it("bank: transfers keep the total, and every read finds it", async () => {
    const node = new LocalKvNode(1);
    const bank = new CampaignBank([await serve(node)], new Prng(1));
    bank.start();
    await new Promise((resolve) => setTimeout(resolve, 300));
    await bank.stop();
    expect(bank.transfers).toBeGreaterThan(0);
    expect(bank.verdict()).toMatchObject({ ok: true });
    // Each transaction sent is recorded for the watch verdict: the opening first, then one a
    // transfer, each answered here, at a revision of its own.
    const { records } = bank;
    expect(records[0]).toMatchObject({ id: 1, outcome: "ok", revision: 1 });
    expect(records[0]!.puts).toHaveLength(5);
    expect(records.filter((r) => r.outcome === "ok")).toHaveLength(bank.transfers + 1);
    expect(records.filter((r) => r.outcome === "refused")).toHaveLength(bank.conflicts);
    for (const record of records.slice(1)) expect(record.puts).toHaveLength(2);
    for (const record of records) {
      expect(record.completedAt).toBeGreaterThanOrEqual(record.invokedAt);
    }
  });

  it("bank: two banks' transactions, applied and refused, each compared what a watch of the node shows at its revision", async () => {
    const node = new LocalKvNode(1);
    const url = await serve(node);
    const watch = new CampaignWatch([url]);
    watch.start();
    // Two loops on the same accounts: the second's opening is refused (they exist), and
    // each refuses transfers the other's moved.
    const banks = [new CampaignBank([url], new Prng(3)), new CampaignBank([url], new Prng(4))];
    for (const bank of banks) bank.start();
    await until(
      () => banks.every((bank) => bank.transfers > 0) && banks.some((b) => b.conflicts > 1),
    );
    await Promise.all(banks.map((bank) => bank.stop()));
    // One numbering for the two loops' records, as one bank's would be.
    const bank: BankRecord[] = banks.flatMap((b, i) =>
      b.records.map((record) => ({ ...record, id: record.id + i * 1_000_000 })),
    );
    const refused = bank.filter((record) => record.outcome === "refused");
    expect(refused.length).toBeGreaterThan(1);
    for (const record of refused) expect(record.refusedAt).toBeGreaterThan(0);
    for (const record of bank) expect(record.compare).toHaveLength(record.puts.length);
    const target = Math.max(...bank.map((record) => record.revision ?? 0));
    // One put after the last transaction, so that the watch has passed every refusal's revision.
    const last = node.apply(
      encodeCommand({ type: "put", key: "after", value: new TextEncoder().encode("x") }),
    );
    if (!last.ok) throw new Error(`put after failed: ${last.code}`);
    await watch.stop(last.revision, 5000);
    const history = [
      {
        id: 1,
        client: 1,
        key: "after",
        kind: "write" as const,
        value: "x",
        revision: last.revision,
        nodes: [1],
        invokedAt: 0,
        completedAt: 1,
        outcome: "ok" as const,
      },
    ];
    const records = { bank, leases: [], leasesEndedBy: null };
    const verdict = checkWatch(history, watch.changes, watch.endedBy, target, watch.gaps, records);
    expect(verdict, verdict.problems?.join("\n")).toMatchObject({ ok: true });
    // A refusal said to have come where its comparison held is caught: the first refused
    // transfer claimed at the revision its accounts were last moved to what it compared.
    const transfer = refused.find((record) => "revision" in record.compare[0]!)!;
    const held = Math.max(
      ...transfer.compare.map((part) => ("revision" in part ? part.revision : 0)),
    );
    const lied = bank.map((record) =>
      record === transfer ? { ...record, refusedAt: held } : record,
    );
    const caught = checkWatch(history, watch.changes, watch.endedBy, target, watch.gaps, {
      ...records,
      bank: lied,
    });
    expect(caught.problems).toEqual([
      expect.stringMatching(
        new RegExp(
          `^bank transaction ${transfer.id} was refused at revision ${held}, but its comparison held there`,
        ),
      ),
    ]);
  });

  it("bank: books that do not add up fail the verdict", async () => {
    const node = new LocalKvNode(1);
    const bank = new CampaignBank([await serve(node)], new Prng(2));
    bank.start();
    await new Promise((resolve) => setTimeout(resolve, 100));
    // Money from nowhere, outside any transaction.
    node.apply(
      encodeCommand({ type: "put", key: "bank/a0", value: new TextEncoder().encode("999") }),
    );
    await bank.stop();
    const verdict = bank.verdict();
    expect(verdict.ok).toBe(false);
    // A transfer under way when the account changed may be refused by its comparison too,
    // which nothing the bank did explains: a problem of its own, listed first.
    expect(
      verdict.problems?.some((p) => /total \d+/.test(p)),
      verdict.problems?.join("\n"),
    ).toBe(true);
  });

  it("bank: a read older than a transfer the bank was told succeeded fails the verdict (a stale page replayed)", async () => {
    const node = new LocalKvNode(1);
    let first: ProxiedAnswer | null = null;
    let replay: "armed" | "done" | null = null;
    const proxy = await startAnswerProxy(await serve(node), async (incoming, forward) => {
      const isRange = incoming.method === "GET" && incoming.url.startsWith("/v1/kv?");
      if (isRange && replay === "armed" && first !== null) {
        replay = "done";
        return first;
      }
      const answer = await forward();
      const json = JSON.parse(answer.body === "" ? "null" : answer.body) as {
        items?: unknown[];
        succeeded?: boolean;
      } | null;
      if (isRange && first === null && json?.items?.length === 5) first = answer;
      // A transfer compares revisions; the opening transaction compares existence.
      const transfer = incoming.url === "/v1/txn" && incoming.body.includes('"revision"');
      if (transfer && json?.succeeded === true && replay === null) replay = "armed";
      return answer;
    });
    proxies.push(proxy.server);
    const bank = new CampaignBank([proxy.url], new Prng(3));
    bank.start();
    await until(() => replay === "done");
    await bank.stop();
    const verdict = bank.verdict();
    expect(verdict.ok).toBe(false);
    expect(verdict.problems?.[0]).toMatch(
      /^a read at revision \d+, after revision \d+ was read or acknowledged: the reads went back$/,
    );
    expect(verdict.problems?.[1]).toMatch(/older than the transaction acknowledged at revision/);
  });

  it("bank: a run whose transactions are all refused as bad requests fails the verdict (no transfer, 400s)", async () => {
    const node = new LocalKvNode(1);
    let refused = 0;
    const proxy = await startAnswerProxy(await serve(node), async (incoming, forward) => {
      if (incoming.url !== "/v1/txn") return forward();
      refused++;
      return errorAnswer(400, "ERR_INVALID_INPUT", "compare: not a comparison");
    });
    proxies.push(proxy.server);
    const bank = new CampaignBank([proxy.url], new Prng(4));
    bank.start();
    await until(() => refused >= 2);
    await bank.stop();
    const verdict = bank.verdict();
    expect(verdict.ok).toBe(false);
    expect(verdict.problems).toHaveLength(2);
    expect(verdict.problems?.[0]).toMatch(
      /^\d+ requests answered ERR_INVALID_INPUT, which no fault explains: /,
    );
    expect(verdict.problems?.[1]).toMatch(
      /^no transfer succeeded in \d+ s \(the books never opened in \d+ attempts\): nothing was checked$/,
    );
  });

  it("bank: a short run in which no transfer went through fails the verdict (every transfer refused by its comparison, which nothing of unknown outcome explains)", async () => {
    const node = new LocalKvNode(1);
    let refused = 0;
    const proxy = await startAnswerProxy(await serve(node), async (incoming, forward) => {
      if (!isTransfer(incoming)) return forward();
      refused++;
      const headers = { "content-type": "application/json; charset=utf-8" };
      return { status: 200, headers, body: JSON.stringify({ succeeded: false, revision: 5 }) };
    });
    proxies.push(proxy.server);
    const bank = new CampaignBank([proxy.url], new Prng(5));
    bank.start();
    await until(() => refused >= 3);
    await bank.stop();
    const verdict = bank.verdict();
    expect(bank.conflicts).toBeGreaterThanOrEqual(3);
    expect(verdict.ok).toBe(false);
    expect(verdict.problems).toEqual([
      ...Array.from({ length: bank.conflicts }, () => expect.stringMatching(REFUSED_UNEXPLAINED)),
      expect.stringMatching(/^no transfer succeeded in \d+ s \(\d+ tried\): nothing was checked$/),
    ]);
    expect(verdict.detail).toMatch(
      new RegExp(
        `^${bank.conflicts + 1} problems; .* ${bank.conflicts} refused by their comparison`,
      ),
    );
  });

  it("bank: a transfer applied but answered as refused by its comparison fails the verdict (no transfer of unknown outcome explains it)", async () => {
    const node = new LocalKvNode(1);
    let transfers = 0;
    // Every third transfer is applied and answered succeeded:false, as a retry that ran the
    // transaction again instead of replaying its idempotency record would answer.
    const proxy = await startAnswerProxy(await serve(node), async (incoming, forward) => {
      const answer = await forward();
      if (!isTransfer(incoming) || ++transfers % 3 !== 0) return answer;
      const json = JSON.parse(answer.body) as { succeeded?: boolean };
      if (json.succeeded !== true) return answer;
      return { ...answer, body: JSON.stringify({ ...json, succeeded: false }) };
    });
    proxies.push(proxy.server);
    const bank = new CampaignBank([proxy.url], new Prng(7));
    bank.start();
    await until(() => transfers >= 6);
    await bank.stop();
    const verdict = bank.verdict();
    expect(bank.transfers).toBeGreaterThan(0);
    expect(verdict.ok).toBe(false);
    expect(verdict.problems?.length).toBe(bank.conflicts);
    expect(verdict.problems?.[0]).toMatch(REFUSED_UNEXPLAINED);
  });

  it("bank: a refusal after a transfer of unknown outcome that was applied late is no problem", async () => {
    const node = new LocalKvNode(1);
    const target = await serve(node);
    // The first transfer is held and answered ERR_TIMEOUT until the client gives up; it is
    // applied once the next read has been answered, so the transfer after it, made from that
    // read, is refused by its comparison when it shares an account with the held one.
    let held: string | null = null;
    let phase: "before" | "holding" | "applied" = "before";
    const proxy = await startAnswerProxy(target, async (incoming, forward) => {
      if (isTransfer(incoming) && phase !== "applied") {
        phase = "holding";
        held = incoming.body;
        return errorAnswer(503, "ERR_TIMEOUT", "the write may or may not have taken effect");
      }
      const answer = await forward();
      if (phase === "holding" && incoming.url.startsWith("/v1/kv?") && held !== null) {
        const late = await request(`${target}/v1/txn`, {
          method: "POST",
          headers: { "content-type": "application/json", "idempotency-key": "held-transfer" },
          body: held,
        });
        expect(JSON.parse(await late.body.text())).toMatchObject({ succeeded: true });
        phase = "applied";
      }
      return answer;
    });
    proxies.push(proxy.server);
    const bank = new CampaignBank([proxy.url], new Prng(8), { deadlineMs: 500 });
    bank.start();
    await until(() => bank.conflicts > 0 || bank.transfers >= 3);
    await bank.stop();
    expect(bank.conflicts).toBe(1);
    expect(bank.verdict()).toMatchObject({ ok: true });
  });

  it("bank: an acknowledged transfer that wrote other values than it was sent fails the verdict (the two amounts swapped)", async () => {
    const node = new LocalKvNode(1);
    const target = await serve(node);
    let swapped = 0;
    const proxy = await startAnswerProxy(target, async (incoming, forward) => {
      if (!isTransfer(incoming)) return forward();
      // The node writes what the client did not send: totals stay 500, revisions are right.
      const body = JSON.parse(incoming.body) as { success: { put: { value: string } }[] };
      const [a, b] = body.success;
      [a!.put.value, b!.put.value] = [b!.put.value, a!.put.value];
      swapped++;
      return forward(JSON.stringify(body));
    });
    proxies.push(proxy.server);
    const bank = new CampaignBank([proxy.url], new Prng(9));
    bank.start();
    await until(() => swapped >= 3);
    await bank.stop();
    const verdict = bank.verdict();
    expect(verdict.ok).toBe(false);
    expect(verdict.problems?.[0]).toMatch(
      /^at revision \d+: bank\/a\d=\d+@(\d+), but the transaction acknowledged at revision \1 wrote \d+$/,
    );
  });

  it("bank: a run judged before its first round ended is too short to check, and says so", async () => {
    const bank = new CampaignBank([await serve(new LocalKvNode(1))], new Prng(6));
    bank.start();
    expect(bank.verdict()).toMatchObject({
      ok: true,
      detail: expect.stringMatching(/^too short to check the books: /),
    });
    await bank.stop();
    expect(bank.verdict()).toMatchObject({ ok: true });
  });
});
