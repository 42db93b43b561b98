/**
 * A watch whose node refuses it: the refusal's body cut off or stalled after its status
 * (the watch reconnects, a lock waiting or held behind it carries on, and a stop is
 * honoured at once), and the wait a refusal asks for (`retryAfterMs`, Retry-After), which
 * paces the reconnect. Over the real HTTP API on a one-node stand-in, behind a front that
 * answers chosen watch requests its own way; the cap, over a hand-driven pool.
 */

import { createServer, type IncomingMessage, request, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { LocalKvNode } from "../../harness/doubles/local-kv-node.js";
import { type BatonClient, createClient, lock } from "../../src/client/index.js";
import type { ServerPool } from "../../src/client/server-pool.js";
import { type ClientCore, watchChanges } from "../../src/client/store-client.js";
import { createHttpServer } from "../../src/http/server.js";

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Answers the `n`th watch request (from 1) and returns true, or returns false to pass it on. */
type WatchAnswer = (n: number, response: ServerResponse) => boolean;

/**
 * A node over the real HTTP API, and a front to it that passes every request on except
 * the watch requests `answer` takes. `watches` counts the watch requests that reached the front.
 */
async function setup(answer: WatchAnswer) {
  const node = new LocalKvNode(1);
  const server = createHttpServer({ api: node, logger: pino({ level: "silent" }) });
  const { url } = await server.listen("127.0.0.1", 0);
  cleanups.push(() => server.close());
  const upstream = new URL(url);
  const seen = { watches: [] as number[] };
  const front = createServer((incoming: IncomingMessage, response: ServerResponse) => {
    if (incoming.url?.startsWith("/v1/watch") === true) {
      seen.watches.push(performance.now());
      if (answer(seen.watches.length, response)) return;
    }
    const out = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: incoming.method,
        path: incoming.url,
        headers: incoming.headers,
      },
      (answered) => {
        response.writeHead(answered.statusCode ?? 502, answered.headers);
        answered.pipe(response);
        response.on("close", () => answered.destroy());
      },
    );
    out.on("error", () => response.destroy());
    incoming.pipe(out);
  });
  await new Promise<void>((resolve) => front.listen(0, "127.0.0.1", resolve));
  cleanups.push(async () => {
    front.closeAllConnections();
    await new Promise((resolve) => front.close(resolve));
  });
  const frontUrl = `http://127.0.0.1:${(front.address() as AddressInfo).port}`;
  return { node, direct: () => client(url), fronted: () => client(frontUrl), seen };
}

function client(endpoint: string): BatonClient {
  const c = createClient({ endpoints: [endpoint], retryDelayMsMin: 1, retryDelayMsMax: 10 });
  cleanups.push(() => c.close());
  return c;
}

/** 503 ERR_BUSY's status and headers, and the start of its body: the rest never comes. */
function refuseHalfway(response: ServerResponse): void {
  response.writeHead(503, {
    "content-type": "application/json",
    "content-length": "200",
    "retry-after": "1",
  });
  response.write('{"error":"3904 watches are open on this node');
}

/** A refusal whose connection resets after its status, before its body is out. */
const resetFirst: WatchAnswer = (n, response) => {
  if (n !== 1) return false;
  refuseHalfway(response);
  // Long enough for the status to be read: the reset then comes while the body is read.
  setTimeout(() => response.socket?.destroy(), 100);
  return true;
};

/** Resolves once `condition` holds, checking every 10 ms; rejects after 2 s. */
async function until(condition: () => boolean): Promise<void> {
  for (let waitedMs = 0; !condition(); waitedMs += 10) {
    if (waitedMs >= 2000) throw new Error("the condition did not hold within 2 s");
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Resolves once `signal` aborts; rejects after `ms`. */
function lostWithin(signal: AbortSignal, ms: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) return resolve();
    const timeout = setTimeout(() => reject(new Error(`lost did not abort within ${ms} ms`)), ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timeout);
      resolve();
    });
  });
}

describe("watch: a refusal cut off or stalled", () => {
  it("watch: a refusal whose connection resets before its body is out is retried, not the end of the watch", async () => {
    const { direct, fronted, seen } = await setup(resetFirst);
    const { revision } = await direct().put("k/1", "1");
    const controller = new AbortController();
    const changes: string[] = [];
    for await (const change of fronted().watch("k/", {
      fromRevision: revision,
      signal: controller.signal,
    })) {
      changes.push(`${change.key}@${change.revision}`);
      controller.abort();
    }
    // Before, the socket's error ended the watch ("other side closed").
    expect(changes).toEqual([`k/1@${revision}`]);
    expect(seen.watches).toHaveLength(2);
  });

  it("watch: a lock waiter whose watch meets a refusal cut off waits on, and takes the lock once released", async () => {
    const { direct, fronted, seen } = await setup(resetFirst);
    const held = await lock(direct(), "locks/r", { ttlSeconds: 10 });
    const waiter = lock(fronted(), "locks/r");
    // Before, the waiter rejected with the socket's error: a blip, not an abort or a refusal
    // for good, the only ends a lock waiter has.
    await Promise.race([waiter, until(() => seen.watches.length >= 2)]);
    await held.release();
    const next = await waiter;
    expect(next.fencingToken).toBeGreaterThan(held.fencingToken);
    await next.release();
  });

  it("watch: a holder whose watch of its key meets a refusal cut off still loses the lock when the key is deleted", async () => {
    const { direct, fronted, seen } = await setup(resetFirst);
    const held = await lock(fronted(), "locks/d", { ttlSeconds: 10 });
    // The watch resumes from the lock's revision: the delete may come before it does.
    await until(() => seen.watches.length >= 1);
    await direct().delete("locks/d");
    // Before, the socket's error ended the holder's watch for good, silently: `lost` stayed.
    await lostWithin(held.lost, 2000);
    expect(String(held.lost.reason)).toContain('"locks/d" was deleted at revision');
    await held.release();
  });

  it("watch: stopping a watch ends it at once while a refusal's body stalls", async () => {
    const stalled: ServerResponse[] = [];
    const { fronted, seen } = await setup((_n, response) => {
      refuseHalfway(response);
      stalled.push(response);
      return true;
    });
    const controller = new AbortController();
    const watching = (async () => {
      for await (const _ of fronted().watch("k/", { signal: controller.signal }));
    })();
    await until(() => seen.watches.length === 1);
    // The body has started: the client is reading it.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const stoppedAt = performance.now();
    controller.abort();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error("the watch did not end within 2 s of its stop")),
        2000,
      );
    });
    try {
      // Before, the read was out of the stop's reach: it waited for the 40 s idle timeout.
      await Promise.race([watching, late]);
    } finally {
      clearTimeout(timer);
      for (const response of stalled) response.socket?.destroy();
    }
    expect(performance.now() - stoppedAt).toBeLessThan(1000);
    expect(seen.watches).toHaveLength(1);
  });
});

describe("watch: the wait a refusal asks for", () => {
  it("watch: a 503 ERR_BUSY's retryAfterMs paces the reconnect, not the watch's own 50 ms back-off", async () => {
    const { direct, fronted, seen } = await setup((n, response) => {
      if (n !== 1) return false;
      response.writeHead(503, { "content-type": "application/json", "retry-after": "1" });
      response.end(
        JSON.stringify({
          error: "every watch place is taken",
          code: "ERR_BUSY",
          retryAfterMs: 400,
        }),
      );
      return true;
    });
    const { revision } = await direct().put("k/1", "1");
    const controller = new AbortController();
    for await (const _ of fronted().watch("k/", {
      fromRevision: revision,
      signal: controller.signal,
    })) {
      controller.abort();
    }
    expect(seen.watches).toHaveLength(2);
    const [first = 0, second = 0] = seen.watches;
    // Before, the watch came back after 50 ms.
    expect(second - first).toBeGreaterThanOrEqual(380);
  });

  it("watch: a refusal's Retry-After paces the reconnect, capped at the client's retryAfterMsMax", async () => {
    const closing = new AbortController();
    const opens: number[] = [];
    const refusal = (headers: Record<string, string>, body: string) => ({
      ok: true,
      status: 503,
      headers,
      body: (async function* () {
        yield new TextEncoder().encode(body);
      })(),
      close: () => {},
    });
    const pool = {
      endpoints: ["http://a"],
      masterEndpoint: () => "http://a",
      next: () => "http://a",
      masterTerm: () => 1,
      onMasterLearned: () => () => {},
      noteFailure: () => {},
      openStream: async () => {
        opens.push(performance.now());
        // A header only (in seconds), then a wait far past the cap.
        if (opens.length === 1) return refusal({ "retry-after": "0.3" }, '{"code":"ERR_BUSY"}');
        if (opens.length === 2) return refusal({}, '{"code":"ERR_BUSY","retryAfterMs":60000}');
        closing.abort();
        return { ok: false, message: "This operation was aborted" };
      },
    };
    const core: ClientCore = {
      pool: pool as unknown as ServerPool,
      closing: closing.signal,
      send: async () => {
        throw new Error("not used");
      },
      nextIdempotencyKey: () => "k",
      retryAfterMsMax: 500,
    };
    const started = performance.now();
    for await (const _ of watchChanges(core, "k"));
    expect(opens).toHaveLength(3);
    const [first = 0, second = 0, third = 0] = opens;
    // Before, 50 ms and 100 ms: the watch's own back-off.
    expect(second - first).toBeGreaterThanOrEqual(280);
    expect(third - second).toBeGreaterThanOrEqual(480);
    expect(performance.now() - started).toBeLessThan(2000);
  });
});
