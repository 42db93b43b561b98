import { pino } from "pino";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";
import { FakeKvNodeApi, memberStatus } from "../../harness/doubles/fake-node-api.js";
import { EventFeed } from "../../src/http/event-feed.js";
import { HttpMetrics } from "../../src/http/http-metrics.js";
import { replayAfter } from "../../src/http/routes/events-route.js";
import type { FaultInjector } from "../../src/http/routes/fault-routes.js";
import {
  createHttpServer,
  type HttpServer,
  type HttpServerOptions,
} from "../../src/http/server.js";
import type { MemberStatus } from "../../src/protocol/status.js";

const servers: HttpServer[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

/** The fault token the servers of these tests are given. */
const TOKEN = "0123456789abcdef0123456789abcdef";

function setup(options: Partial<HttpServerOptions> = {}) {
  const api = new FakeKvNodeApi(1);
  const logger = pino({ level: "silent" });
  const server = createHttpServer({ api, logger, faultToken: TOKEN, ...options });
  servers.push(server);
  return { api, app: server.app, server };
}

/** A fault injector that records what it was told. */
function recordingFaults(): FaultInjector & { readonly calls: string[] } {
  const calls: string[] = [];
  let partitioned = false;
  return {
    calls,
    kill: () => calls.push("kill"),
    pause: (ms) => calls.push(`pause ${ms}`),
    partition: () => {
      partitioned = true;
      calls.push("partition");
    },
    heal: () => {
      partitioned = false;
      calls.push("heal");
    },
    partitioned: () => partitioned,
  };
}

describe("http fault routes", () => {
  it("faults: without --allow-fault-injection every fault answers 403 ERR_FAULTS_DISABLED", async () => {
    const { app } = setup();
    const state = await app.inject({ method: "GET", url: "/v1/faults" });
    expect(state.json()).toEqual({ enabled: false, partitioned: false });
    for (const fault of ["kill", "pause", "partition", "heal"]) {
      const response = await app.inject({
        method: "POST",
        url: `/v1/faults/${fault}`,
        headers: { "x-baton-fault": TOKEN },
      });
      expect(response.statusCode).toBe(403);
      expect(response.json()).toMatchObject({ code: "ERR_FAULTS_DISABLED" });
      expect(response.json().error).toMatch(/--allow-fault-injection/);
    }
  });

  it("faults: partition and heal reach the injector and show in GET /v1/faults", async () => {
    const faults = recordingFaults();
    const { app } = setup({ faults });
    const headers = { "x-baton-fault": TOKEN };
    const cut = await app.inject({ method: "POST", url: "/v1/faults/partition", headers });
    expect(cut.statusCode).toBe(200);
    expect((await app.inject({ method: "GET", url: "/v1/faults" })).json()).toEqual({
      enabled: true,
      partitioned: true,
      token: TOKEN,
    });
    await app.inject({ method: "POST", url: "/v1/faults/heal", headers });
    expect(faults.calls).toEqual(["partition", "heal"]);
  });

  it("faults: a POST without X-Baton-Fault, or from a foreign page, is refused (400)", async () => {
    const faults = recordingFaults();
    const { app, api } = setup({ faults });
    api.members = [
      memberStatus(1, "http://127.0.0.1:8101"),
      memberStatus(2, "http://127.0.0.1:8102"),
    ];
    const bare = await app.inject({ method: "POST", url: "/v1/faults/partition" });
    expect(bare.statusCode).toBe(400);
    expect(bare.json()).toMatchObject({ code: "ERR_INVALID_INPUT", field: "x-baton-fault" });
    const foreign = await app.inject({
      method: "POST",
      url: "/v1/faults/partition",
      headers: { "x-baton-fault": TOKEN, origin: "https://example.com" },
    });
    expect(foreign.statusCode).toBe(400);
    expect(foreign.json()).toMatchObject({ field: "Origin" });
    const preflight = await app.inject({
      method: "OPTIONS",
      url: "/v1/faults/partition",
      headers: { origin: "https://example.com" },
    });
    // The same status as the request itself would get: any but 2xx fails a preflight.
    expect(preflight.statusCode).toBe(400);
    expect(preflight.json()).toMatchObject({ code: "ERR_INVALID_INPUT", field: "Origin" });
    expect(faults.calls).toEqual([]);

    // Another member's dashboard may: its preflight is allowed, then its POST.
    const sibling = { origin: "http://127.0.0.1:8102" };
    const allowed = await app.inject({
      method: "OPTIONS",
      url: "/v1/faults/partition",
      headers: sibling,
    });
    expect(allowed.statusCode).toBe(204);
    expect(allowed.headers["access-control-allow-origin"]).toBe("http://127.0.0.1:8102");
    expect(allowed.headers["access-control-allow-headers"]).toBe("x-baton-fault, authorization");
    const post = await app.inject({
      method: "POST",
      url: "/v1/faults/partition",
      headers: { ...sibling, "x-baton-fault": TOKEN },
    });
    expect(post.statusCode).toBe(200);
    expect(faults.calls).toEqual(["partition"]);
  });

  it("faults: pause checks ms (100 to 60000) and acts only after answering", async () => {
    const faults = recordingFaults();
    const { app } = setup({ faults });
    const headers = { "x-baton-fault": TOKEN };
    for (const ms of ["5", "1e3", "0x1f4", " 500", "500.0"]) {
      const bad = await app.inject({ method: "POST", url: `/v1/faults/pause?ms=${ms}`, headers });
      expect(bad.statusCode, ms).toBe(400);
      expect(bad.json(), ms).toMatchObject({ field: "ms" });
    }
    const ok = await app.inject({ method: "POST", url: "/v1/faults/pause?ms=1500", headers });
    expect(ok.statusCode).toBe(202);
    expect(ok.json()).toEqual({ fault: "pause", id: 1, ms: 1500 });
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(faults.calls).toEqual(["pause 1500"]);
  });
});

describe("http dashboard and events", () => {
  it("dashboard: GET / serves the page with a policy that allows only the cluster", async () => {
    const { app, api } = setup();
    api.members = [memberStatus(1, "http://127.0.0.1:8101"), memberStatus(2, null)];
    const page = await app.inject({ method: "GET", url: "/" });
    expect(page.statusCode).toBe(200);
    expect(page.headers["content-type"]).toMatch(/^text\/html/);
    expect(page.body).toContain("Kill master");
    const policy = String(page.headers["content-security-policy"]);
    expect(policy).toContain("default-src 'none'");
    expect(policy).toMatch(
      /connect-src 'self' http:\/\/127\.0\.0\.1:8101 http:\/\/127\.0\.0\.1:\*/,
    );
    const script = await app.inject({ method: "GET", url: "/dashboard/dashboard.js" });
    expect(script.headers["content-type"]).toMatch(/^text\/javascript/);
    const style = await app.inject({ method: "GET", url: "/dashboard/dashboard.css" });
    expect(style.statusCode).toBe(200);
  });

  it("status: /v1/status and /health may be read by another member's dashboard (CORS)", async () => {
    const { app } = setup();
    const status = await app.inject({ method: "GET", url: "/v1/status" });
    expect(status.headers["access-control-allow-origin"]).toBe("*");
    const kv = await app.inject({ method: "GET", url: "/v1/kv/a" });
    expect(kv.headers["access-control-allow-origin"]).toBeUndefined();
  });

  it("events: GET /v1/events streams kept events, then new ones, as server-sent events", async () => {
    const events = new EventFeed(1);
    events.publish({ type: "started", term: 0 });
    const { server } = setup({ events });
    const { url } = await server.listen("127.0.0.1", 0);
    const controller = new AbortController();
    const response = await fetch(`${url}/v1/events`, { signal: controller.signal });
    expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(response.headers.get("access-control-allow-origin")).toBe("*");
    const reader = response.body!.getReader();
    let text = "";
    const readUntil = async (needle: string) => {
      while (!text.includes(needle)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended before ${needle}`);
        text += Buffer.from(value).toString();
      }
    };
    await readUntil('"type":"started"');
    expect(text).toContain(`id: ${events.epoch}.1\n`);
    events.publish({
      type: "failover",
      term: 2,
      previousMaster: 3,
      durationMs: 180,
    });
    await readUntil('"type":"failover"');
    expect(text).toMatch(
      /data: \{"seq":2,"node":1,"at":\d+,"type":"failover","term":2,"previousMaster":3,"durationMs":180\}\n\n/,
    );
    controller.abort();
  });

  it("events: HEAD /v1/events answers the stream's headers at once and opens no stream", async () => {
    const { server } = setup({ events: new EventFeed(1) });
    const { url } = await server.listen("127.0.0.1", 0);
    const response = await fetch(`${url}/v1/events`, {
      method: "HEAD",
      signal: AbortSignal.timeout(2000),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
  });

  it("events: a reconnect replays after Last-Event-ID only from the same process", () => {
    expect(replayAfter("1700000000000.7", 1_700_000_000_000)).toBe(7);
    expect(replayAfter("1600000000000.7", 1_700_000_000_000)).toBe(0);
    expect(replayAfter("7", 1_700_000_000_000)).toBe(0);
    expect(replayAfter(undefined, 1_700_000_000_000)).toBe(0);
  });

  it("event feed: keeps the last 200 events, numbered, and drops a throwing subscriber", () => {
    let now = 1000;
    const feed = new EventFeed(2, () => now++);
    const seen: string[] = [];
    feed.subscribe(() => {
      throw new Error("broken");
    });
    feed.subscribe((item) => seen.push(item.type));
    for (let i = 0; i < 250; i++) feed.publish({ type: "started", term: i });
    expect(feed.subscriberCount).toBe(1);
    expect(seen).toHaveLength(250);
    const kept = feed.recentEvents();
    expect(kept).toHaveLength(200);
    expect(kept[0]).toMatchObject({ seq: 51, node: 2, term: 50 });
    expect(feed.recentEvents(249).map((e) => e.seq)).toEqual([250]);
  });
});

describe("http metrics sample", () => {
  it("metrics: a sample counts client requests per second and their percentiles", () => {
    let now = 0;
    const metrics = new HttpMetrics(new Registry(), () => now);
    const put = metrics.tally("PUT", "/v1/kv/*");
    const status = metrics.tally("GET", "/v1/status");
    for (let i = 1; i <= 100; i++) metrics.answered(put, i === 100 ? 503 : 200, i);
    metrics.answered(status, 200, 1);
    now = 2000;
    expect(metrics.takeSample()).toEqual({
      requestsPerSecond: 50,
      errorsPerSecond: 0.5,
      latencyMs: { p50: 51, p99: 100, max: 100 },
    });
    now = 3000;
    expect(metrics.takeSample()).toEqual({
      requestsPerSecond: 0,
      errorsPerSecond: 0,
      latencyMs: null,
    });
  });
});
