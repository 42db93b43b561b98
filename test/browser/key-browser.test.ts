/**
 * The dashboard's key browser in a real browser (Debian's Chromium, driven by
 * playwright-core) against a node the test plays: every request the page makes is
 * answered by a route handler, so the test decides what a listing and a watch answer, and
 * when. That reaches what a live cluster makes hard to arrange: a watch refused with 410
 * because the node compacted the changes since the list was read, and a listing that
 * arrives after the user has asked for another prefix.
 *
 * Chromium must be installed at /usr/bin/chromium, as for dashboard.test.ts (`npm test`'s
 * pretest installs it on Debian as root). The browser is closed after each test, pass or
 * fail; nothing else is started.
 */

import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Page, type Route } from "playwright-core";
import { afterEach, describe, expect, it } from "vitest";

const PUBLIC = join(
  resolve(dirname(fileURLToPath(import.meta.url)), "..", ".."),
  "src",
  "dashboard",
  "public",
);
const CHROMIUM = "/usr/bin/chromium";
/** An origin no network serves: every request is answered by the test's routes. */
const ORIGIN = "http://baton.test";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
};

let browser: Browser | null = null;

afterEach(async () => {
  await browser?.close();
  browser = null;
});

interface Item {
  readonly key: string;
  readonly value: string;
  readonly revision: number;
}

/** What the played node answers; each handler may hold its answer back. */
interface PlayedNode {
  kv(query: URLSearchParams): Promise<{ status: number; body: unknown }>;
  watch(query: URLSearchParams): Promise<{ status: number; body: string; type: string }>;
}

/** The page, with every request it makes answered by `node` (the rest of the API: 503). */
async function openPage(node: PlayedNode): Promise<{ page: Page; errors: string[] }> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM}: apt-get install -y chromium`);
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    // Root (CI containers) cannot use Chromium's sandbox.
    args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
  });
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await page.route("**/*", async (route: Route) => {
    const url = new URL(route.request().url());
    if (url.origin !== ORIGIN) return route.abort();
    if (url.pathname === "/") return serveFile(route, "index.html");
    if (url.pathname.startsWith("/dashboard/")) {
      return serveFile(route, url.pathname.slice("/dashboard/".length));
    }
    if (url.pathname === "/v1/kv") {
      const answer = await node.kv(url.searchParams);
      return route.fulfill({ status: answer.status, json: answer.body }).catch(() => {});
    }
    if (url.pathname === "/v1/watch") {
      const answer = await node.watch(url.searchParams);
      return route
        .fulfill({ status: answer.status, body: answer.body, contentType: answer.type })
        .catch(() => {});
    }
    // Status, events, faults: a node with no cluster behind it (the members panel says so).
    return route.fulfill({
      status: 503,
      json: { error: "played by the test", code: "ERR_NO_MASTER" },
    });
  });
  await page.goto(`${ORIGIN}/`);
  return { page, errors };
}

function serveFile(route: Route, name: string): Promise<void> {
  if (!/^[a-z-]+\.(html|js|css)$/.test(name)) return route.fulfill({ status: 404 });
  const type = TYPES[name.slice(name.lastIndexOf("."))]!;
  return route.fulfill({ status: 200, body: readFileSync(join(PUBLIC, name)), contentType: type });
}

/** A listing of `items` read at `revision`, all on one page. */
function listing(revision: number, items: readonly Item[]) {
  return { status: 200, body: { revision, items, next: null } };
}

/** A watch stream holding `changes`; a long retry keeps the page from reconnecting. */
function stream(changes: readonly Item[]) {
  const events = changes.map(
    (c) => `id: ${c.revision}.1\ndata: ${JSON.stringify({ type: "put", ...c })}\n\n`,
  );
  return {
    status: 200,
    body: `retry: 600000\n: watching\n\n${events.join("")}`,
    type: "text/event-stream; charset=utf-8",
  };
}

/** The rows of the key table: key, value, revision. */
function rows(page: Page): Promise<string[][]> {
  return page
    .locator("#keys-body tr")
    .evaluateAll((trs) =>
      trs.map((tr) => [...tr.children].map((cell) => (cell.textContent ?? "").trim())),
    );
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((done) => setTimeout(done, 50));
  }
}

describe("dashboard key browser in a browser", () => {
  it("dashboard: a watch refused with 410 (the changes since the list were compacted) reads the list again and watches from the new revision", async () => {
    const kvQueries: string[] = [];
    const watchQueries: string[] = [];
    const { page, errors } = await openPage({
      kv: async (query) => {
        kvQueries.push(query.toString());
        return kvQueries.length === 1
          ? listing(5, [{ key: "a", value: "old", revision: 3 }])
          : listing(50, [
              { key: "a", value: "new", revision: 40 },
              { key: "b", value: "2", revision: 45 },
            ]);
      },
      watch: async (query) => {
        watchQueries.push(query.get("fromRevision") ?? "");
        if (watchQueries.length === 1) {
          return {
            status: 410,
            type: "application/json",
            body: JSON.stringify({
              error: "revision 6 is compacted: watch from 30 or later",
              code: "ERR_COMPACTED",
              field: "fromRevision",
            }),
          };
        }
        return stream([{ key: "c", value: "3", revision: 52 }]);
      },
    });
    const shown = await waitFor("the list read again, and the change after it", async () => {
      const table = await rows(page);
      return table.length === 3 ? table : undefined;
    });
    expect(shown).toEqual([
      ["a", "new", "40"],
      ["b", "2", "45"],
      ["c", "3", "52"],
    ]);
    // Each watch starts just after the revision its list was read at.
    expect(watchQueries).toEqual(["6", "51"]);
    expect(kvQueries).toHaveLength(2);
    expect(await page.locator("#keys-status").textContent()).toBe(
      "3 keys shown, live at revision 52",
    );
    expect(errors).toEqual([]);
  });

  it("dashboard: a listing that arrives after the user asked for another prefix is dropped, and its watch never starts", async () => {
    let releaseFirst: () => void = () => {};
    const firstHeld = new Promise<void>((done) => {
      releaseFirst = done;
    });
    const watched: string[] = [];
    const { page, errors } = await openPage({
      kv: async (query) => {
        const prefix = query.get("prefix") ?? "";
        if (prefix === "") {
          // The page's first listing (every key) is slow to come.
          await firstHeld;
          return listing(9, [
            { key: "x", value: "1", revision: 8 },
            { key: "y", value: "2", revision: 9 },
          ]);
        }
        return listing(10, [{ key: "b1", value: "v", revision: 10 }]);
      },
      watch: async (query) => {
        watched.push(query.get("prefix") ?? "");
        return stream([]);
      },
    });
    await page.locator("#keys-prefix").fill("b");
    await page.locator("#keys-form button[type=submit]").click();
    await waitFor("the listing of prefix b", async () =>
      (await rows(page)).length === 1 ? true : undefined,
    );
    releaseFirst();
    // Give the late listing time to arrive and (wrongly) be shown.
    await page.waitForTimeout(500);
    expect(await rows(page)).toEqual([["b1", "v", "10"]]);
    expect(watched).toEqual(["b"]);
    expect(await page.locator("#keys-status").textContent()).toBe(
      "1 keys shown, read at revision 10",
    );
    expect(errors).toEqual([]);
  });
});
