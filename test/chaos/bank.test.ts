/**
 * The campaign's bank on a one-node stand-in over the real HTTP API and state machine:
 * transfers run and every range read finds the books whole; books that do not add up are
 * reported.
 */

import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { LocalKvNode } from "../../harness/doubles/local-kv-node.js";
import { CampaignBank } from "../../src/chaos/bank.js";
import { Prng } from "../../src/core/prng.js";
import { createHttpServer, type HttpServer } from "../../src/http/server.js";
import { encodeCommand } from "../../src/kv/index.js";

const servers: HttpServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function serve(node: LocalKvNode): Promise<string> {
  const server = createHttpServer({ api: node, logger: pino({ level: "silent" }) });
  servers.push(server);
  return (await server.listen("127.0.0.1", 0)).url;
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
});
