/**
 * The dashboard in a real browser: `baton demo` on free loopback ports, Debian's Chromium
 * driven by playwright-core, and a fail-over watched the way a newcomer would watch it. The
 * page must show three members and exactly one master; pressing "Kill master" must make a
 * backup take over, and the table and the timeline must say so. It also checks that the
 * page never asks for anything outside the cluster and throws no script error.
 *
 * The screenshot taken after the fail-over goes to test-output/dashboard-failover.png, and
 * to docs/images/dashboard-failover.png (the README's) when that file is missing or the run
 * has UPDATE=1.
 *
 * Chromium must be installed at /usr/bin/chromium (`apt-get install chromium`; `npm test`'s
 * pretest installs it on Debian as root). This file owns the demo: it runs as a process
 * group in the process registry, stopped after the test, pass or fail, as is the browser,
 * and the data folder is removed.
 */

import { copyFileSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterEach, describe, expect, it } from "vitest";
import {
  demoCommand,
  freeConsecutivePorts,
  ManagedProcess,
  makeTempDir,
  removeTempDir,
} from "../../harness/processes.js";
import { formatTokensFile, hashToken, newToken } from "../../src/http/tokens.js";

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CHROMIUM = "/usr/bin/chromium";
const SCREENSHOT = join(REPO_ROOT, "test-output", "dashboard-failover.png");
const README_IMAGE = join(REPO_ROOT, "docs", "images", "dashboard-failover.png");

const MISSING_CHROMIUM =
  `Chromium is not installed at ${CHROMIUM}. This test drives the dashboard in a real ` +
  "browser. Install it with `apt-get install -y chromium` (Debian; `npm test` does this " +
  "first when run as root).";

/** What a test started, so that afterEach can stop it whatever happened. */
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) {
    try {
      await cleanup();
    } catch {
      // Keep cleaning up the rest.
    }
  }
});

interface Demo {
  readonly process: ManagedProcess;
  readonly dashboardUrl: string;
  readonly output: string[];
}

/** Starts `baton demo` in its own process group and waits for its dashboard URL. */
async function startDemo(): Promise<Demo> {
  const data = makeTempDir("baton-dashboard-");
  cleanups.push(() => removeTempDir(data));
  const [peerPort, httpPort] = [await freeConsecutivePorts(3), await freeConsecutivePorts(3)];
  const output: string[] = [];
  let onLine: (line: string) => void = () => {};
  let onExit: (how: string) => void = () => {};
  // A process group: stopping the demo stops its nodes too, and none outlives the test.
  const demo = demoCommand({ data, peerPort, httpPort, load: 25 });
  const child = new ManagedProcess("demo", demo.command, demo.args, {
    cwd: REPO_ROOT,
    group: true,
    onLine: (line) => {
      output.push(line);
      onLine(line);
    },
    onExit: (exit) => onExit(exit.how),
  });
  child.start();
  cleanups.push(() => child.stop(8000));
  const dashboardUrl = await new Promise<string>((done, fail) => {
    const timer = setTimeout(
      () => fail(new Error(`no dashboard URL:\n${output.join("\n")}`)),
      60_000,
    );
    onLine = (line) => {
      const match = /^Dashboard: (\S+)/.exec(line);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        done(match[1]);
      }
    };
    onExit = (how) => fail(new Error(`demo exited (${how}):\n${output.join("\n")}`));
  });
  return { process: child, dashboardUrl, output };
}

async function openBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(MISSING_CHROMIUM);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    // Root (CI containers) cannot use Chromium's sandbox.
    args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
  });
  cleanups.push(() => browser.close());
  return browser;
}

/** The id of every row whose role cell says `role`, read from the members table. */
async function nodesInRole(page: Page, role: string): Promise<number[]> {
  return page
    .locator(`#members tbody tr[data-role="${role}"]`)
    .evaluateAll((rows) => rows.map((row) => Number(row.getAttribute("data-node"))));
}

async function waitUntil<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  ms: number,
  explain: () => Promise<string> = async () => "",
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}\n${await explain()}`);
    }
    await new Promise((done) => setTimeout(done, 100));
  }
}

/** What the page and the demo showed, for a failure message. */
async function explain(page: Page, demo: Demo): Promise<string> {
  const members = await page.locator("#members").textContent().catch(String);
  const timeline = await page.locator("#timeline").textContent().catch(String);
  const output = demo.output.slice(-40).join("\n");
  return `members:\n${members}\ntimeline:\n${(timeline ?? "").slice(0, 3000)}\ndemo:\n${output}`;
}

describe("dashboard in a browser", () => {
  it("timing: dashboard: shows three members and one master, and a fail-over after Kill master", async () => {
    const browser = await openBrowser();
    const demo = await startDemo();
    const page = await browser.newPage({ viewport: { width: 1280, height: 960 } });
    const outside: string[] = [];
    const scriptErrors: string[] = [];
    page.on("request", (request) => {
      if (!request.url().startsWith("http://127.0.0.1:") && !request.url().startsWith("data:")) {
        outside.push(request.url());
      }
    });
    page.on("pageerror", (error) => scriptErrors.push(error.message));
    // The demo prints its URLs as it starts the nodes; wait until the first one serves.
    await waitUntil(
      "the dashboard to be served",
      () =>
        fetch(demo.dashboardUrl).then(
          (r) => (r.ok ? true : undefined),
          () => undefined,
        ),
      60_000,
    );
    await page.goto(demo.dashboardUrl);

    // Three members, one master, two backups.
    const oldMaster = await waitUntil(
      "three members with one master",
      async () => {
        const rows = await page.locator("#members tbody tr").count();
        const masters = await nodesInRole(page, "master");
        const backups = await nodesInRole(page, "backup");
        return rows === 3 && masters.length === 1 && backups.length === 2 ? masters[0] : undefined;
      },
      40_000,
      () => explain(page, demo),
    );
    expect(await page.locator("#verdict").textContent()).toContain(`node ${oldMaster} is master`);

    // The key browser lists the keys under a prefix and shows a new one live, from the watch
    // (under a prefix of its own: the demo writes keys of its own meanwhile).
    await page.getByLabel("Prefix").fill("browser/");
    await page.getByRole("button", { name: "List" }).click();
    await page.locator("#keys-status").filter({ hasText: "0 keys shown" }).waitFor();
    const base = demo.dashboardUrl.replace(/\/$/, "");
    const put = await fetch(`${base}/v1/kv/browser%2Fgreeting`, { method: "PUT", body: "hello" });
    expect(put.status).toBe(200);
    const row = page.locator("#keys-body tr").filter({ hasText: "browser/greeting" });
    await row.first().waitFor({ timeout: 10_000 });
    expect(await row.first().textContent()).toContain("hello");

    const kill = page.getByRole("button", { name: "Kill master" });
    await kill.waitFor({ state: "visible", timeout: 10_000 });
    await kill.click();

    // A backup takes over, and the timeline has its fail-over.
    const newMaster = await waitUntil(
      "a new master",
      async () => {
        const masters = await nodesInRole(page, "master");
        return masters.length === 1 && masters[0] !== oldMaster ? masters[0] : undefined;
      },
      30_000,
      () => explain(page, demo),
    );
    const failover = page
      .locator('#timeline li[data-kind="failover"]')
      .filter({ hasText: `Node ${newMaster}` })
      .filter({ hasText: `taking over from node ${oldMaster}` });
    await failover.first().waitFor({ timeout: 20_000 });
    await expect(
      page.locator(`#members tbody tr[data-node="${oldMaster}"]`).getAttribute("data-role"),
    ).resolves.toBe("unreachable");

    // A moment for the chart to show the dip, then the picture for the README.
    await page.waitForTimeout(1500);
    mkdirSync(dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    if (process.env.UPDATE === "1" || !existsSync(README_IMAGE)) {
      mkdirSync(dirname(README_IMAGE), { recursive: true });
      copyFileSync(SCREENSHOT, README_IMAGE);
    }

    // A member removed from the cluster goes from the page (the killed master, here).
    // Asked of the new master: the page's own node may be the one that was killed.
    const newMasterUrl = `http://127.0.0.1:${Number(new URL(base).port) + Number(newMaster) - 1}`;
    const removed = await fetch(`${newMasterUrl}/v1/members/${oldMaster}`, { method: "DELETE" });
    expect(removed.status, await removed.text()).toBe(200);
    await waitUntil(
      `node ${oldMaster}'s row to go`,
      async () =>
        (await page.locator(`#members tbody tr[data-node="${oldMaster}"]`).count()) === 0 &&
        (await page.locator("#members tbody tr").count()) === 2
          ? true
          : undefined,
      20_000,
      () => explain(page, demo),
    );

    expect(outside).toEqual([]);
    expect(scriptErrors).toEqual([]);
  }, 240_000);

  it("timing: dashboard: opened at localhost, a member's Kill button kills it, and the page says so only once it stops answering", async () => {
    const browser = await openBrowser();
    const exits = new Map<number, string>();
    const { httpPort, urls, output } = await startThree(["--allow-fault-injection"], {}, exits);
    const page = await browser.newPage({ viewport: { width: 1280, height: 960 } });
    const scriptErrors: string[] = [];
    page.on("pageerror", (error) => scriptErrors.push(error.message));
    // The members advertise 127.0.0.1; the page is opened under another name for it.
    await page.goto(`http://localhost:${httpPort}/`);
    await waitUntil(
      "three members with one master, and their fault buttons",
      async () =>
        (await page.locator("#members tbody tr").count()) === 3 &&
        (await nodesInRole(page, "master")).length === 1 &&
        (await page.locator("#members tbody button[data-fault=kill]:enabled").count()) === 3
          ? true
          : undefined,
      40_000,
      async () =>
        `${await page.locator("#members").textContent()}\n${output.slice(-20).join("\n")}`,
    );
    // Not the page's own node, whose origin this is: a backup, so no fail-over muddles it.
    const target = (await nodesInRole(page, "backup")).find((id) => id !== 1) as number;
    await page
      .locator(`#members tbody tr[data-node="${target}"] button[data-fault="kill"]`)
      .click();
    const message = page.locator("#fault-message");
    const said = await waitUntil(
      "the outcome of the kill",
      async () => {
        const text = (await message.textContent()) ?? "";
        return text === "" || /^Sending|waiting for/.test(text) ? undefined : text;
      },
      20_000,
    );
    expect(said).toMatch(new RegExp(`^Killed node ${target}`));
    // And it is so: the node's port no longer answers, and its process died of the kill.
    const answered = await fetch(`${urls[target - 1]}/v1/status`).then(
      (r) => (r.ok ? "answered" : undefined),
      () => undefined,
    );
    expect(answered).toBeUndefined();
    expect(said).toBe(`Killed node ${target}: it accepted the request and no longer answers.`);
    await waitUntil("the node's exit", async () => exits.get(target), 10_000);
    expect(exits.get(target)).toContain("SIGKILL");
    expect(scriptErrors).toEqual([]);
  }, 120_000);

  it("timing: dashboard: on nodes with --tokens it asks for an API token, then shows the cluster and its keys", async () => {
    const browser = await openBrowser();
    const data = makeTempDir("baton-dashboard-tokens-");
    cleanups.push(() => removeTempDir(data));
    const tokens = { read: newToken(), readwrite: newToken() };
    const tokensFile = join(data, "tokens.json");
    const records = (["read", "readwrite"] as const).map((role) => ({
      name: `${role}-user`,
      role,
      sha256: hashToken(tokens[role]),
    }));
    writeFileSync(tokensFile, formatTokensFile(records), { mode: 0o600 });
    const { urls, output, master } = await startThree(["--tokens", tokensFile], {
      authorization: `Bearer ${tokens.read}`,
    });
    const put = await fetch(`${master}/v1/kv/secure%2Fgreeting`, {
      method: "PUT",
      body: "hello",
      headers: { authorization: `Bearer ${tokens.readwrite}` },
    });
    expect(put.status).toBe(200);

    const page = await browser.newPage({ viewport: { width: 1280, height: 960 } });
    const scriptErrors: string[] = [];
    page.on("pageerror", (error) => scriptErrors.push(error.message));
    await page.goto(`${urls[0]}/`);
    // Without a token every node refuses, and the page says what to do.
    await page.locator("#verdict").filter({ hasText: "ask for an API token" }).waitFor();
    expect(await page.locator("#token-form").isVisible()).toBe(true);

    await page.getByLabel("API token").fill(tokens.read);
    await page.getByRole("button", { name: "Use" }).click();
    await waitUntil(
      "three members with one master",
      async () => {
        const rows = await page.locator("#members tbody tr").count();
        const masters = await nodesInRole(page, "master");
        return rows === 3 && masters.length === 1 ? true : undefined;
      },
      40_000,
      async () =>
        `${await page.locator("#members").textContent()}\n${output.slice(-20).join("\n")}`,
    );
    // The key browser reads with the token, and follows the watch with it.
    await page.locator("#keys-body tr").filter({ hasText: "secure/greeting" }).first().waitFor();
    const again = await fetch(`${master}/v1/kv/secure%2Fnews`, {
      method: "PUT",
      body: "live",
      headers: { authorization: `Bearer ${tokens.readwrite}` },
    });
    expect(again.status).toBe(200);
    const live = page.locator("#keys-body tr").filter({ hasText: "secure/news" });
    await live.first().waitFor({ timeout: 10_000 });
    // The timeline heard the nodes' event streams (which need the token too): the election.
    await page
      .locator("#timeline li")
      .filter({ hasText: /master/ })
      .first()
      .waitFor();
    // The token stays in this tab only, and "Forget" drops it.
    await page.getByRole("button", { name: "Forget" }).click();
    await page.locator("#verdict").filter({ hasText: "ask for an API token" }).waitFor();
    // The members it knows say why they no longer answer.
    await page.locator("#members").filter({ hasText: "needs an API token" }).waitFor();
    expect(scriptErrors).toEqual([]);
  }, 120_000);
});

/**
 * Three nodes from the sources on free loopback ports, with `extraArgs`, stopped by the
 * test's cleanups; resolves once every node serves and one is master (asked with
 * `headers`). `exits` hears how each node's process ended.
 */
async function startThree(
  extraArgs: readonly string[],
  headers: Record<string, string> = {},
  exits?: Map<number, string>,
): Promise<{ httpPort: number; urls: string[]; output: string[]; master: string }> {
  const [peerPort, httpPort] = [await freeConsecutivePorts(3), await freeConsecutivePorts(3)];
  const peers = [1, 2, 3].map((id) => `${id}=127.0.0.1:${peerPort + id - 1}`).join(",");
  const urls = [1, 2, 3].map((id) => `http://127.0.0.1:${httpPort + id - 1}`);
  const output: string[] = [];
  for (const id of [1, 2, 3]) {
    const node = new ManagedProcess(
      `node${id}`,
      process.execPath,
      [
        ...["--import", "tsx", join(REPO_ROOT, "src", "cli", "main.ts"), "start"],
        ...["--id", String(id), "--peers", peers, "--http", `127.0.0.1:${httpPort + id - 1}`],
        ...["--memory", ...extraArgs],
      ],
      {
        cwd: REPO_ROOT,
        group: true,
        onLine: (line) => output.push(`${id}: ${line}`),
        ...(exits === undefined ? {} : { onExit: (exit) => exits.set(id, exit.how) }),
      },
    );
    node.start();
    cleanups.push(() => node.stop(8000));
  }
  const status = (url: string) =>
    fetch(`${url}/v1/status`, { headers }).then(
      (r) => (r.ok ? (r.json() as Promise<{ role: string }>) : undefined),
      () => undefined,
    );
  // Every node serving, not only the two that elected the master: the page opens one of
  // them, which on a loaded machine can still be loading when the other two have a master.
  const master = await waitUntil(
    "a master, with every node serving",
    async () => {
      const roles = await Promise.all(urls.map(status));
      if (roles.some((answer) => answer === undefined)) return undefined;
      const masters = urls.filter((_, i) => roles[i]?.role === "master");
      return masters.length === 1 ? masters[0] : undefined;
    },
    60_000,
    async () => output.slice(-30).join("\n"),
  );
  return { httpPort, urls, output, master };
}
