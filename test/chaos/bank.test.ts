/**
 * The campaign's bank on a one-node stand-in over the real HTTP API and state machine:
 * transfers run and every range read finds the books whole; books that do not add up, a
 * read older than an acknowledged transfer, and a run that moved nothing, however short,
 * because its requests were refused as wrong or its transfers never held, are reported.
 */

import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { LocalKvNode } from "../../harness/doubles/local-kv-node.js";
import { CampaignBank } from "../../src/chaos/bank.js";
import { Prng } from "../../src/core/prng.js";
import { createHttpServer, type HttpServer } from "../../src/http/server.js";
import { encodeCommand } from "../../src/kv/index.js";
import { errorAnswer, type ProxiedAnswer, startAnswerProxy } from "./answer-proxy.js";

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
    expect(verdict.problems?.[0]).toMatch(/total \d+/);
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

  it("bank: a short run in which no transfer went through fails the verdict (every transfer refused by its comparison)", async () => {
    const node = new LocalKvNode(1);
    let refused = 0;
    const proxy = await startAnswerProxy(await serve(node), async (incoming, forward) => {
      // A transfer compares revisions; the opening transaction compares existence.
      if (incoming.url !== "/v1/txn" || !incoming.body.includes('"revision"')) return forward();
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
      expect.stringMatching(/^no transfer succeeded in \d+ s \(\d+ tried\): nothing was checked$/),
    ]);
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
