/**
 * The wrk load generator (bench/wrk-load.ts) sends exactly the requests the undici one
 * sends: run against a bare HTTP server that records what arrives, for Baton's API and for
 * etcd's JSON gateway, with the write share of the mix. Needs `wrk` (Debian's package;
 * scripts/ensure-system-deps.sh installs it before `npm test`).
 */

import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { LoadSpec } from "../../bench/load-generator.js";
import { runWrkLoad, wrkConnections } from "../../bench/wrk-load.js";

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly contentType: string | undefined;
  readonly body: string;
}

let server: Server | null = null;

afterEach(async () => {
  const s = server;
  server = null;
  if (s !== null) {
    s.closeAllConnections();
    await new Promise((done) => s.close(done));
  }
});

async function recordingServer(seen: Seen[]): Promise<string> {
  const s = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      seen.push({
        method: req.method ?? "",
        url: req.url ?? "",
        contentType: req.headers["content-type"],
        body: Buffer.concat(chunks).toString("utf8"),
      });
      res.end("{}");
    });
  });
  server = s;
  await new Promise<void>((done) => s.listen(0, "127.0.0.1", done));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

function spec(system: LoadSpec["system"], target: string, mix: LoadSpec["mix"]): LoadSpec {
  return {
    system,
    targets: [target],
    clients: 4,
    valueBytes: 10,
    mix,
    durationMs: 1000,
    warmupMs: 0,
    keyCount: 5,
    keyPrefix: "k",
    label: "test",
    generator: "wrk",
  };
}

const value = Buffer.from("abcdefghij");

describe("bench: wrk load generator", () => {
  it("sends Baton's writes: PUT /v1/kv/{key} with the value as the body, over every key", async () => {
    const seen: Seen[] = [];
    const result = await runWrkLoad(spec("baton", await recordingServer(seen), "write"), value, 0);
    expect(result.errors).toBe(0);
    expect(result.ops).toBeGreaterThan(50);
    expect(seen.length).toBeGreaterThanOrEqual(result.ops);
    for (const s of seen) {
      expect(s.method).toBe("PUT");
      expect(s.url).toMatch(/^\/v1\/kv\/k-[0-4]$/);
      expect(s.contentType).toBe("application/octet-stream");
      expect(s.body).toBe("abcdefghij");
    }
    expect(new Set(seen.map((s) => s.url)).size).toBe(5);
    expect(result.latencyMs.p50).toBeGreaterThan(0);
    expect(result.latencyMs.max).toBeGreaterThanOrEqual(result.latencyMs.p99 ?? 0);
  }, 20_000);

  it("sends etcd's writes and reads as its JSON gateway takes them, about one write in ten for 90/10", async () => {
    const seen: Seen[] = [];
    const result = await runWrkLoad(spec("etcd", await recordingServer(seen), "90/10"), value, 7);
    expect(result.errors).toBe(0);
    // The preloaded 7, and what wrk saw answered: all the server got but the requests of
    // the 4 connections still in flight when wrk stopped.
    expect(result.completedTotal).toBeLessThanOrEqual(7 + seen.length);
    expect(result.completedTotal).toBeGreaterThanOrEqual(7 + seen.length - 4);
    const puts = seen.filter((s) => s.url === "/v3/kv/put");
    const ranges = seen.filter((s) => s.url === "/v3/kv/range");
    expect(puts.length + ranges.length).toBe(seen.length);
    for (const s of puts) {
      const body = JSON.parse(s.body) as { key: string; value: string };
      expect(Buffer.from(body.key, "base64").toString()).toMatch(/^k-[0-4]$/);
      expect(Buffer.from(body.value, "base64")).toEqual(value);
    }
    for (const s of ranges) {
      const body = JSON.parse(s.body) as { key: string };
      expect(Object.keys(body)).toEqual(["key"]);
      expect(Buffer.from(body.key, "base64").toString()).toMatch(/^k-[0-4]$/);
    }
    const share = puts.length / seen.length;
    expect(share).toBeGreaterThan(0.05);
    expect(share).toBeLessThan(0.15);
  }, 20_000);

  it("counts the answers of every second when asked (--per-second), and they add up to the run's", async () => {
    const seen: Seen[] = [];
    const target = await recordingServer(seen);
    const result = await runWrkLoad(
      { ...spec("baton", target, "write"), durationMs: 2000, perSecond: true },
      value,
      0,
    );
    const perSecond = result.perSecond ?? [];
    expect(perSecond.length).toBeGreaterThanOrEqual(2);
    expect(perSecond.length).toBeLessThanOrEqual(3);
    expect(perSecond.every((n) => n > 0)).toBe(true);
    expect(perSecond.reduce((a, b) => a + b, 0)).toBe(result.ops);
    // Not asked: not counted (wrk then skips handing answers to Lua).
    const plain = await runWrkLoad(spec("baton", target, "write"), value, 0);
    expect(plain.perSecond).toBeUndefined();
  }, 20_000);

  it("gives each target the same number of connections, as wrk gives each thread", () => {
    expect(wrkConnections(64, 1)).toBe(64);
    expect(wrkConnections(64, 3)).toBe(63);
    expect(wrkConnections(2, 3)).toBe(3);
  });
});
