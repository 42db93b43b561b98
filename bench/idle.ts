/**
 * `npm run bench:idle`: does anything but a fault move the master role? It runs the demo
 * exactly as `npm start` does (three nodes through tsx, the demo's own write load of 20 a
 * second, every node's log read through a pipe), opens the dashboard in headless Chromium
 * (or, without Chromium, holds an event stream open to every node, which is what the
 * dashboard holds), and every 2 seconds reads each node's role and term from /v1/status
 * and its longest event-loop delay since the previous read from /metrics.
 *
 *   npm run bench:idle -- --duration 60m [--baton-election-ms 150-300] [--no-browser]
 *
 * A line a minute on stderr; at the end one line on stdout, idle.json in --out and every
 * node's JSON log in <out>/logs (what to read when an election started: each role change
 * with its reason, and when the node started and served). Exits 1 when an election started
 * or the master changed after the first master was agreed. The
 * demo runs as a process group in the process registry, which stops it (and its nodes)
 * and removes its data on every exit path, Ctrl-C included; Playwright closes the browser.
 */

import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { Command } from "commander";
import type { Browser } from "playwright-core";
import {
  ManagedProcess,
  makeTempDir,
  REPO_ROOT,
  removeTempDir,
  sleep,
  waitFor,
} from "../harness/processes.js";
import { counterTotal, fetchJson, gauge } from "./bench-cluster.js";
import { runAsProgram } from "./entry.js";
import { parseDuration } from "./main.js";

const CHROMIUM = "/usr/bin/chromium";
const NODES = 3;
const SAMPLE_MS = 2000;
const ELECTIONS = "baton_elections_started_total";

interface IdleOptions {
  readonly durationMs: number;
  readonly electionMs: string | null;
  readonly browser: boolean;
  readonly peerPort: number;
  readonly httpPort: number;
  readonly out: string;
}

function parseOptions(argv: readonly string[]): IdleOptions {
  const program = new Command("bench:idle")
    .description(
      "run the demo as `npm start` does, with the dashboard open, and count elections (expect 0)",
    )
    .option("--duration <time>", "how long to watch, e.g. 10m or 60m", "60m")
    .option(
      "--baton-election-ms <range>",
      "every node's --election-ms, e.g. 150-300 (default Baton's)",
    )
    .option("--no-browser", "hold an event stream to every node instead of opening the dashboard")
    .option("--peer-port <port>", "node 1's peer port (node n: + n - 1)", "17301")
    .option("--http-port <port>", "node 1's HTTP port (node n: + n - 1)", "18301")
    .option("--out <dir>", "results folder (default results/idle/<date>)")
    .exitOverride();
  program.parse([...argv], { from: "user" });
  const o = program.opts<{
    duration: string;
    batonElectionMs?: string;
    browser: boolean;
    peerPort: string;
    httpPort: string;
    out?: string;
  }>();
  const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
  return {
    durationMs: parseDuration(o.duration),
    electionMs: o.batonElectionMs ?? null,
    browser: o.browser,
    peerPort: Number(o.peerPort),
    httpPort: Number(o.httpPort),
    out: o.out ?? join(REPO_ROOT, "results", "idle", stamp),
  };
}

interface NodeView {
  readonly role: string;
  readonly term: number;
  readonly masterId: number | null;
}

/** One node's role and term, or null when it does not answer within a second. */
async function statusOf(url: string): Promise<NodeView | null> {
  try {
    const { json } = await fetchJson(`${url}/v1/status`);
    return json as NodeView;
  } catch {
    return null;
  }
}

/** baton_event_loop_delay_max_seconds of one node in ms, or null when it does not answer. */
async function loopDelayMs(url: string): Promise<number | null> {
  const seconds = await gauge(url, "baton_event_loop_delay_max_seconds").catch(() => null);
  return seconds === null ? null : seconds * 1000;
}

/** Opens the dashboard (or an event stream per node); returns what closes it. */
async function openDashboard(
  urls: readonly string[],
  wantBrowser: boolean,
  log: (line: string) => void,
): Promise<{ readonly how: string; close(): Promise<void> }> {
  if (wantBrowser && existsSync(CHROMIUM)) {
    const { chromium } = await import("playwright-core");
    const browser: Browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
    });
    const page = await browser.newPage();
    page.on("pageerror", (e) => log(`dashboard script error: ${e.message}`));
    await page.goto(`${urls[0]}/`);
    return { how: "the dashboard open in headless Chromium", close: () => browser.close() };
  }
  if (wantBrowser) log(`no ${CHROMIUM}: holding an event stream to every node instead`);
  const aborts = urls.map((url) => {
    const abort = new AbortController();
    void fetch(`${url}/v1/events`, { signal: abort.signal })
      .then(async (r) => {
        for await (const _ of r.body ?? []) {
          // Read and drop, as a dashboard's EventSource reads.
        }
      })
      .catch(() => undefined);
    return abort;
  });
  return {
    how: "an event stream open to every node",
    close: async () => {
      for (const a of aborts) a.abort();
    },
  };
}

export async function main(argv: readonly string[]): Promise<number> {
  const options = parseOptions(argv);
  const log = (line: string): void => {
    process.stderr.write(`${line}\n`);
  };
  const urls = Array.from({ length: NODES }, (_, i) => `http://127.0.0.1:${options.httpPort + i}`);
  // Registered: a Ctrl-C or a crash of this program removes it, as it ends the demo.
  const data = makeTempDir("baton-idle-");
  const args = [
    join(REPO_ROOT, "src/cli/main.ts"),
    "demo",
    "--data",
    join(data, "nodes"),
    "--peer-port",
    String(options.peerPort),
    "--http-port",
    String(options.httpPort),
    ...(options.electionMs === null ? [] : ["--election-ms", options.electionMs]),
  ];
  let demoOutput = "";
  // A process group of its own: the demo and its nodes stop together on every exit path
  // (SIGTERM to all of them at a Ctrl-C; the demo stops its nodes cleanly).
  const demo = new ManagedProcess("demo", join(REPO_ROOT, "node_modules/.bin/tsx"), args, {
    cwd: REPO_ROOT,
    group: true,
    cleanupSignal: "SIGTERM",
    onLine: (line) => {
      demoOutput = `${demoOutput}${line}\n`.slice(-20_000);
    },
  });
  demo.start();
  let dashboard: { readonly how: string; close(): Promise<void> } | null = null;
  try {
    log(
      `bench:idle: the demo through tsx${options.electionMs === null ? "" : ` with --election-ms ${options.electionMs}`}, ${(options.durationMs / 1000).toFixed(0)} s`,
    );
    const first = await waitFor(
      "the demo's nodes to agree on a master",
      async () => {
        const views = await Promise.all(urls.map(statusOf));
        const masters = views.filter((v) => v?.role === "master");
        if (views.some((v) => v === null) || masters.length !== 1) return undefined;
        const m = masters[0]!;
        return views.every((v) => v?.term === m.term)
          ? { id: urls.findIndex((_, i) => views[i] === m) + 1, term: m.term }
          : undefined;
      },
      120_000,
      200,
    ).catch((error: unknown) => {
      throw new Error(`${(error as Error).message}; the demo said:\n${demoOutput}`);
    });
    dashboard = await openDashboard(urls, options.browser, log);
    log(`master ${first.id} in term ${first.term}; watching with ${dashboard.how}`);
    const electionsBefore = await counterTotal(
      urls.map((url) => ({ url })),
      ELECTIONS,
    );
    const started = Date.now();
    const longest = new Map<number, number>();
    const delays: number[] = [];
    const changes: { atS: number; what: string }[] = [];
    let unanswered = 0;
    let lastMinute = 0;
    while (Date.now() - started < options.durationMs) {
      await sleep(SAMPLE_MS);
      const atS = Math.round((Date.now() - started) / 1000);
      const views = await Promise.all(urls.map(statusOf));
      const loops = await Promise.all(urls.map(loopDelayMs));
      views.forEach((v, i) => {
        const id = i + 1;
        if (v === null) {
          unanswered++;
          return;
        }
        const moved =
          v.term !== first.term ||
          (v.role === "master") !== (id === first.id) ||
          v.role === "candidate";
        if (moved) changes.push({ atS, what: `node ${id} ${v.role} in term ${v.term}` });
        const ms = loops[i];
        if (ms !== null && ms !== undefined) {
          delays.push(ms);
          longest.set(id, Math.max(longest.get(id) ?? 0, ms));
        }
      });
      if (changes.length > 0) break;
      const minute = Math.floor(atS / 60);
      if (minute > lastMinute) {
        lastMinute = minute;
        log(
          `  ${minute} min: master ${first.id} in term ${first.term}; longest event-loop delay per node (ms) ${JSON.stringify(Object.fromEntries(longest))}; load ${loadavg()[0]!.toFixed(1)}`,
        );
      }
    }
    const elections =
      (await counterTotal(
        urls.map((url) => ({ url })),
        ELECTIONS,
      )) - electionsBefore;
    const seconds = Math.round((Date.now() - started) / 1000);
    delays.sort((a, b) => a - b);
    const p99 = delays[Math.floor(delays.length * 0.99)] ?? null;
    const summary = {
      durationS: seconds,
      electionMs: options.electionMs ?? "default",
      dashboard: dashboard.how,
      electionsStarted: elections,
      firstMaster: first,
      changes,
      unansweredReads: unanswered,
      longestLoopDelayMsByNode: Object.fromEntries(longest),
      loopDelayP99Ms: p99,
      loadAverage: loadavg().map((l) => Number(l.toFixed(1))),
    };
    mkdirSync(options.out, { recursive: true });
    writeFileSync(join(options.out, "idle.json"), `${JSON.stringify(summary, null, 2)}\n`);
    const fmt = (n: number): number => Math.round(n);
    console.log(
      `${seconds} s of the idle demo (${dashboard.how}): elections started: ${elections}; master ${first.id} in term ${first.term} ${changes.length === 0 ? "throughout" : `moved at ${changes[0]!.atS} s: ${changes.map((c) => c.what).join(", ")}`}; ` +
        `longest event-loop delay per node (ms): ${JSON.stringify(Object.fromEntries([...longest].map(([k, v]) => [k, fmt(v)])))}, p99 of the 2 s windows ${p99 === null ? "?" : fmt(p99)}; ` +
        `unanswered status reads ${unanswered}; load ${summary.loadAverage.join(" ")}`,
    );
    return elections === 0 && changes.length === 0 ? 0 : 1;
  } finally {
    await dashboard?.close().catch(() => undefined);
    await demo.stop(10_000);
    keepNodeLogs(join(data, "nodes"), join(options.out, "logs"));
    removeTempDir(data);
  }
}

/** Copies the demo's node logs (`n<id>.log`) out of its data folder before it is removed. */
function keepNodeLogs(from: string, to: string): void {
  if (!existsSync(from)) return;
  const logs = readdirSync(from).filter((name) => /^n\d+\.log$/.test(name));
  if (logs.length === 0) return;
  mkdirSync(to, { recursive: true });
  for (const name of logs) copyFileSync(join(from, name), join(to, name));
}

runAsProgram("idle.ts", "bench:idle", main);
