/**
 * The dashboard's key browser in a real browser (Debian's Chromium, driven by
 * playwright-core) against nodes the test plays (played-cluster.ts): every request the
 * page makes is answered by the test, so it decides what a listing and a watch answer, and
 * when. That reaches what a live cluster makes hard to arrange: a watch refused with 410
 * because the node compacted the changes since the list was read, a listing that arrives
 * after the user has asked for another prefix, the page's own node dying under a live
 * watch, and keys that would show as something else.
 *
 * Chromium must be installed at /usr/bin/chromium, as for dashboard.test.ts (`npm test`'s
 * pretest installs it on Debian as root). The browser and the played nodes are stopped
 * after each test, pass or fail.
 */

import type { Page } from "playwright-core";
import { afterEach, describe, expect, it } from "vitest";
import {
  type Answer,
  type Handlers,
  json,
  member,
  openPage as openBrowserPage,
  PlayedNode,
  recordTexts,
  statusBody,
  stopPlayed,
  waitFor,
} from "./played-cluster.js";

afterEach(async () => {
  await stopPlayed();
});

interface Item {
  readonly key: string;
  readonly value: string;
  readonly revision: number;
}

/** The page, served by a played node that answers the listing and the watch as `node` says. */
async function openPage(node: Handlers): Promise<{ page: Page; errors: string[] }> {
  const played = await PlayedNode.start(node);
  return openBrowserPage(`${played.url}/`);
}

/** A listing of `items` read at `revision`, all on one page. */
function listing(revision: number, items: readonly Item[]): Answer {
  return json({ revision, items, next: null });
}

/** A watch stream holding `changes`, left open as a node's is. */
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

  it("dashboard: a hidden tab lets its streams go, and takes the watch up again where it left off when shown", async () => {
    const watchQueries: string[] = [];
    const { page, errors } = await openPage({
      kv: async () => listing(5, [{ key: "a", value: "1", revision: 3 }]),
      watch: async (query) => {
        watchQueries.push(query.get("fromRevision") ?? "");
        return stream(watchQueries.length === 1 ? [{ key: "b", value: "2", revision: 7 }] : []);
      },
    });
    await waitFor("the watch's change shown", async () =>
      (await rows(page)).length === 2 ? true : undefined,
    );
    // Run in the page, as text: the tests are typed for Node.js, which has no document.
    const setHidden = (hidden: boolean) =>
      page.evaluate(
        `Object.defineProperty(document, "hidden", { configurable: true, get: () => ${hidden} });
         document.dispatchEvent(new Event("visibilitychange"));`,
      );
    // Hidden: every stream is let go (a few open tabs took all six connections a browser
    // allows per node), and none is opened again while hidden.
    await setHidden(true);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(watchQueries).toHaveLength(1);
    await setHidden(false);
    await waitFor("the watch taken up again", async () =>
      watchQueries.length >= 2 ? true : undefined,
    );
    expect(await rows(page)).toEqual([
      ["a", "1", "3"],
      ["b", "2", "7"],
    ]);
    expect(errors).toEqual([]);
  });

  it("dashboard: a listing the node refuses for the moment (503) is read again, not left on the error", async () => {
    let lists = 0;
    const { page, errors } = await openPage({
      kv: async () => {
        lists++;
        return lists === 1
          ? {
              status: 503,
              type: "application/json",
              body: JSON.stringify({ error: "no master yet; retry", code: "ERR_NO_MASTER" }),
            }
          : listing(5, [{ key: "a", value: "1", revision: 3 }]);
      },
      watch: async () => stream([]),
    });
    await waitFor("the listing read again", async () =>
      (await rows(page)).length === 1 ? true : undefined,
    );
    expect(lists).toBe(2);
    expect(await page.locator("#keys-status").textContent()).toContain("1 keys shown");
    expect(errors.filter((e) => !e.includes("503"))).toEqual([]);
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

  it("dashboard: when the page's node dies under a live watch, the key browser says so, watches on a member that answers from the next revision, and goes back to the page's node when it returns", async () => {
    const watched: string[] = [];
    const nodes: PlayedNode[] = [];
    const status = (id: number) => () =>
      json(
        statusBody(id, id === 2 ? "master" : "backup", 2, [
          member(1, nodes[0] as PlayedNode),
          member(2, nodes[1] as PlayedNode),
        ]),
      );
    let changes: Item[] = [{ key: "a2", value: "x", revision: 11 }];
    const watch = (id: number) => async (query: URLSearchParams) => {
      watched.push(`${id}@${query.get("fromRevision") ?? ""}`);
      return stream(changes);
    };
    nodes.push(
      await PlayedNode.start({
        status: status(1),
        kv: async () => listing(10, [{ key: "a", value: "1", revision: 10 }]),
        watch: watch(1),
      }),
      await PlayedNode.start({ status: status(2), watch: watch(2) }),
    );
    const [first, second] = nodes as [PlayedNode, PlayedNode];
    const { page, errors } = await openBrowserPage(`${first.url}/`, (p) =>
      recordTexts(p, ["keys-status"]),
    );
    const status1 = page.locator("#keys-status");
    await status1.filter({ hasText: "2 keys shown, live at revision 11" }).waitFor();
    changes = [{ key: "b", value: "2", revision: 12 }];
    await first.kill();
    // Said at once; then, once the members table finds the page's node silent, the watch
    // goes on at the member that answers, from the revision after the last one shown.
    await status1.filter({ hasText: "not connected to live updates" }).waitFor();
    const lost = (await status1.textContent()) ?? "";
    expect(lost).toMatch(
      /^2 keys shown as of revision 11; not connected to live updates \(this page's node, 127\.0\.0\.1:\d+: .+\): retrying…/,
    );
    const host2 = second.url.replace(/^http:\/\//, "");
    await status1
      .filter({ hasText: `3 keys shown, live at revision 12 (from member ${host2}` })
      .waitFor();
    expect(watched.at(-1)).toBe("2@12");
    // The page's node comes back: the key browser watches there again, from the next revision.
    changes = [{ key: "c", value: "3", revision: 13 }];
    await first.revive();
    await status1.filter({ hasText: /^4 keys shown, live at revision 13$/ }).waitFor();
    expect(watched.at(-1)).toBe("1@13");
    expect(watched.filter((w) => w.startsWith("2@"))).toEqual(["2@12"]);
    expect(await rows(page)).toEqual([
      ["a", "1", "10"],
      ["a2", "x", "11"],
      ["b", "2", "12"],
      ["c", "3", "13"],
    ]);
    expect(errors).toEqual([]);
  });

  it("dashboard: a watch cut inside a revision that changed several keys resumes inside it (Last-Event-ID), not after it", async () => {
    const resumedWith: (string | null)[] = [];
    const event = (id: string, c: Item) =>
      `id: ${id}\ndata: ${JSON.stringify({ type: "put", ...c })}\n\n`;
    const { page, errors } = await openPage({
      kv: async () => listing(10, [{ key: "a", value: "1", revision: 10 }]),
      watch: async (_query, lastEventId) => {
        resumedWith.push(lastEventId);
        if (resumedWith.length === 1) {
          // A transaction at revision 11 changed x, y and z: the stream ends after y.
          return {
            status: 200,
            type: "text/event-stream; charset=utf-8",
            body: `retry: 600000\n: watching\n\n${event("11.1", { key: "x", value: "1", revision: 11 })}${event("11.2", { key: "y", value: "1", revision: 11 })}`,
            end: true,
          };
        }
        return stream(lastEventId === "11.2" ? [{ key: "z", value: "1", revision: 11 }] : []);
      },
    });
    await page.locator("#keys-body tr[data-key=z]").waitFor();
    expect(resumedWith).toEqual([null, "11.2"]);
    expect((await rows(page)).map(([key]) => key)).toEqual(["a", "x", "y", "z"]);
    expect(errors).toEqual([]);
  });

  it("dashboard: a key made before the last key read is shown even when the last row was deleted", async () => {
    const many = Array.from({ length: 100 }, (_, i) => ({
      key: `k${String(i).padStart(3, "0")}`,
      value: "v",
      revision: 10,
    }));
    const { page, errors } = await openPage({
      kv: async () => json({ revision: 10, items: many, next: "more" }),
      watch: async () => ({
        status: 200,
        type: "text/event-stream; charset=utf-8",
        // k099 goes, then k0985 (between k098 and k099) is made.
        body: `retry: 600000\n: watching\n\nid: 11.1\ndata: ${JSON.stringify({ type: "delete", key: "k099", revision: 11 })}\n\nid: 12.1\ndata: ${JSON.stringify({ type: "put", key: "k0985", value: "new", revision: 12 })}\n\n`,
      }),
    });
    await page.locator("#keys-body tr[data-key=k0985]").waitFor();
    expect(await page.locator("#keys-body tr[data-key=k099]").count()).toBe(0);
    expect(errors).toEqual([]);
  });

  it("dashboard: keys the watch makes never grow the table past the pages read; the rows left out come with More keys", async () => {
    const key = (i: number) => `k${String(i).padStart(3, "0")}`;
    const first = Array.from({ length: 99 }, (_, i) => ({ key: key(i), value: "v", revision: 10 }));
    const put = (k: string, revision: number) =>
      `id: ${revision}.1\ndata: ${JSON.stringify({ type: "put", key: k, value: "new", revision })}\n\n`;
    const afters: (string | null)[] = [];
    const { page, errors } = await openPage({
      kv: async (query) => {
        afters.push(query.get("after"));
        if (query.get("after") === null) return json({ revision: 10, items: first, next: null });
        return json({
          revision: 14,
          items: [
            { key: "k098", value: "v", revision: 10 },
            { key: "k200", value: "new", revision: 12 },
          ],
          next: null,
        });
      },
      // One key among the rows (the 100th row), one past them, one more among them.
      watch: async () => ({
        status: 200,
        type: "text/event-stream; charset=utf-8",
        body: `retry: 600000\n: watching\n\n${put("k050x", 11)}${put("k200", 12)}${put("k0505", 13)}`,
      }),
    });
    await page.locator("#keys-body tr[data-key=k0505]").waitFor();
    const shown = (await rows(page)).map(([k]) => k);
    expect(shown).toHaveLength(100);
    expect(shown.slice(-3)).toEqual(["k095", "k096", "k097"]);
    expect(shown).toContain("k050x");
    expect(await page.locator("#keys-more").isVisible()).toBe(true);
    await page.locator("#keys-more").click();
    await page.locator("#keys-body tr[data-key=k200]").waitFor();
    // The page after the last row kept: "k097" in base64url, as the node makes a next.
    expect(afters).toEqual([null, Buffer.from("k097").toString("base64url")]);
    const all = (await rows(page)).map(([k]) => k);
    expect(all).toHaveLength(102);
    expect(all.slice(-3)).toEqual(["k097", "k098", "k200"]);
    expect(await page.locator("#keys-more").isVisible()).toBe(false);
    expect(errors).toEqual([]);
  });

  it("dashboard: a long key or value wraps in its cell, and the Value and Revision columns stay in view", async () => {
    const { page, errors } = await openPage({
      kv: async () =>
        listing(7, [
          { key: `zz/${"L".repeat(3000)}`, value: "long key", revision: 5 },
          { key: "zz/longvalue", value: "V".repeat(5000), revision: 7 },
        ]),
      watch: async () => stream([]),
    });
    await waitFor("two rows", async () => ((await rows(page)).length === 2 ? true : undefined));
    const layout = await page.locator(".keys-panel .table-scroll").evaluate((scroll) => {
      const box = scroll.getBoundingClientRect();
      const inView = (selector: string) =>
        Array.from(scroll.querySelectorAll(selector), (cell) => {
          const r = (cell as typeof scroll).getBoundingClientRect();
          return r.left >= box.left && r.right <= box.right + 1;
        });
      return {
        overflow: scroll.scrollWidth - scroll.clientWidth,
        values: inView("tbody td:nth-child(2)"),
        revisions: inView("tbody td:nth-child(3)"),
      };
    });
    expect(layout).toEqual({ overflow: 0, values: [true, true], revisions: [true, true] });
    expect(errors).toEqual([]);
  });

  it("dashboard: a right-to-left override or a zero-width space in a key or value is shown as an escape", async () => {
    const { page, errors } = await openPage({
      kv: async () =>
        listing(3, [
          { key: "zz/rtl \u202etxt.exe", value: "rtl", revision: 1 },
          { key: "zz/\u200b zero width", value: "zw\u200b", revision: 2 },
          { key: "zz/plain", value: "plain", revision: 3 },
        ]),
      watch: async () => stream([]),
    });
    const shown = await waitFor("three rows", async () => {
      const table = await rows(page);
      return table.length === 3 ? table : undefined;
    });
    // In the store's order (code units), each hidden character drawn as its code point.
    expect(shown).toEqual([
      ["zz/plain", "plain", "3"],
      ["zz/rtl \\u{202E}txt.exe", "rtl", "1"],
      ["zz/\\u{200B} zero width", "zw\\u{200B}", "2"],
    ]);
    expect(await page.locator("#keys-body .escape").count()).toBe(3);
    expect(errors).toEqual([]);
  });
});
