/**
 * Web sessions on a real cluster: an express application with express-session and the
 * Baton session store (src/client/session-store.ts), three `baton start` processes behind
 * it. A logged-in user keeps the session while the master is killed with SIGKILL, and a
 * session expires on time (its bucket's lease ends by log time, and the master's ticks move
 * log time while nobody writes). Also a watch that follows the store across the same
 * fail-over.
 *
 * Real time and real processes, hence `timing:` names; every process is stopped and every
 * directory removed after each test (harness/vitest-hooks.ts).
 */

import type { AddressInfo } from "node:net";
import express from "express";
import session from "express-session";
import { describe, expect, it } from "vitest";
import { Cluster, clientFor } from "../../harness/cluster.js";
import { sleep } from "../../harness/processes.js";
import { useClusterHarness } from "../../harness/vitest-hooks.js";
import type { BatonClient, WatchChange } from "../../src/client/index.js";
import { createSessionStore } from "../../src/client/session-store.js";

useClusterHarness();

const TIMING = { electionMs: "300-600", heartbeatMs: 50 } as const;

declare module "express-session" {
  interface SessionData {
    user?: string;
    visits?: number;
  }
}

/** An express app with a login route and a page that counts the user's visits. */
async function startApp(client: BatonClient, maxAgeMs: number) {
  const app = express();
  // express-session's types call Store abstract; the class itself is constructible.
  const Store = session.Store as unknown as new () => session.Store;
  const store = createSessionStore(Store, { client, prefix: "sess/" });
  app.use(
    session({
      store,
      secret: "test secret",
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: maxAgeMs },
    }),
  );
  app.post("/login", (req, res) => {
    req.session.user = "alice";
    req.session.visits = 0;
    res.json({ ok: true });
  });
  app.get("/me", (req, res) => {
    if (req.session.user === undefined) {
      res.status(401).json({ user: null });
      return;
    }
    req.session.visits = (req.session.visits ?? 0) + 1;
    res.json({ user: req.session.user, visits: req.session.visits });
  });
  const server = await new Promise<ReturnType<typeof app.listen>>((resolve) => {
    const listening = app.listen(0, "127.0.0.1", () => resolve(listening));
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, store, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

async function login(url: string): Promise<string> {
  const response = await fetch(`${url}/login`, { method: "POST" });
  expect(response.status).toBe(200);
  // express-session sends the headers before the store has saved the session, and the rest
  // of the body after: only the whole answer says the session is stored.
  expect(await response.json()).toEqual({ ok: true });
  const cookie = response.headers.get("set-cookie");
  expect(cookie).not.toBeNull();
  return cookie!.split(";")[0]!;
}

async function me(url: string, cookie: string): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${url}/me`, { headers: { cookie } });
  return { status: response.status, body: await response.json() };
}

describe("session store", () => {
  it("timing: a logged-in user keeps the session while the master is killed (SIGKILL)", async () => {
    const cluster = await Cluster.start(TIMING);
    const client = clientFor(cluster);
    const app = await startApp(client, 60_000);
    try {
      const cookie = await login(app.url);
      expect(await me(app.url, cookie)).toEqual({
        status: 200,
        body: { user: "alice", visits: 1 },
      });
      const master = await cluster.waitForMaster();
      await cluster.kill(master.id);
      // The very next request finds the session on the new master.
      expect(await me(app.url, cookie)).toEqual({
        status: 200,
        body: { user: "alice", visits: 2 },
      });
      await cluster.waitForMaster({ exclude: [master.id], minTerm: master.term + 1 });
      expect(await me(app.url, cookie)).toEqual({
        status: 200,
        body: { user: "alice", visits: 3 },
      });
    } finally {
      await app.close();
      await client.close();
    }
  }, 60_000);

  it("timing: a session expires on time (its key goes within W + 2 s of the cookie's expiry, W = 1 s)", async () => {
    const cluster = await Cluster.start(TIMING);
    const client = clientFor(cluster);
    const app = await startApp(client, 2000);
    try {
      const cookie = await login(app.url);
      const loggedInAt = performance.now();
      expect((await me(app.url, cookie)).status).toBe(200);
      expect(await lengthOf(app.store)).toBe(1);
      // The visit re-saved the session with the time left on the cookie; wait that out. Its
      // key is on the lease of a 1-second bucket (a 2 s time to live), granted for a second
      // more than the bucket: gone at most 1 s + 2 s after the expiry, plus log-time ticks.
      while ((await client.range("sess/")).items.length > 0) {
        expect(performance.now() - loggedInAt).toBeLessThan(2000 + 3000 + 500);
        await sleep(100);
      }
      expect(performance.now() - loggedInAt).toBeGreaterThan(1000);
      expect((await me(app.url, cookie)).status).toBe(401);
    } finally {
      await app.close();
      await client.close();
    }
  }, 60_000);

  it("timing: a watch sees every change once, in order, across a master kill", async () => {
    const cluster = await Cluster.start(TIMING);
    const writer = clientFor(cluster);
    const watcher = clientFor(cluster);
    const controller = new AbortController();
    const seen: WatchChange[] = [];
    const count = 60;
    const following = (async () => {
      for await (const change of watcher.watch("w/", {
        fromRevision: 1,
        signal: controller.signal,
      })) {
        seen.push(change);
        if (seen.length === count) controller.abort();
      }
    })();
    try {
      for (let i = 0; i < count; i++) {
        await writer.put(`w/${i}`, String(i));
        if (i === count / 2) {
          const master = await cluster.waitForMaster();
          await cluster.kill(master.id);
        }
      }
      await following;
      expect(seen.map((c) => c.key)).toEqual(Array.from({ length: count }, (_, i) => `w/${i}`));
      const revisions = seen.map((c) => c.revision);
      expect([...revisions].sort((a, b) => a - b)).toEqual(revisions);
    } finally {
      controller.abort();
      await writer.close();
      await watcher.close();
    }
  }, 60_000);
});

function lengthOf(store: { length(cb: (error?: unknown, n?: number) => void): void }) {
  return new Promise<number | undefined>((resolve, reject) =>
    store.length((error, n) => (error ? reject(error) : resolve(n))),
  );
}
