/**
 * Nodes the test plays, for the dashboard in a real browser: each is a small HTTP server on
 * 127.0.0.1 that serves the dashboard's files and answers its API as the test says (the
 * status, the event stream, the key listing and watch), so a test can arrange what a live
 * cluster makes hard to: a member the master lost, a transfer abandoned at 58%, a sample
 * that comes late, a node that never answers, a node that dies under the page.
 *
 * Streams are held open until the node is killed or the test ends, as a node's are. Every
 * answer allows any origin, as a node's status and streams do, so a page served by one
 * played node reads the others.
 *
 * Chromium must be installed at /usr/bin/chromium (`npm test`'s pretest installs it on
 * Debian as root). `stopPlayed()` closes the browser and every played node; call it after
 * each test.
 */

import { existsSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Browser, chromium, type Page } from "playwright-core";

const PUBLIC = join(
  resolve(dirname(fileURLToPath(import.meta.url)), "..", ".."),
  "src",
  "dashboard",
  "public",
);
const CHROMIUM = "/usr/bin/chromium";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
};

/** An answer: a status and a JSON body, or "hang" for a node that never answers. */
export type Answer = { readonly status: number; readonly body: unknown } | "hang";

/** A watch's answer: a stream (held open) or a refusal, as key-browser tests arrange. */
export interface StreamAnswer {
  readonly status: number;
  readonly body: string;
  readonly type: string;
  /** Ends the stream after its body, as a node that cut its reader does. */
  readonly end?: boolean;
}

export interface Handlers {
  status?: () => Answer | Promise<Answer>;
  faults?: () => Answer | Promise<Answer>;
  /** A fault POST (`kill`, `pause`, ...): an answer, or "reset" to drop the connection. */
  fault?: (fault: string) => Answer | "reset";
  kv?: (query: URLSearchParams) => Promise<Answer>;
  /** `lastEventId`: the Last-Event-ID the page resumed with, or null. */
  watch?: (query: URLSearchParams, lastEventId: string | null) => Promise<StreamAnswer>;
  /** The Content-Security-Policy the page is served with, as a node sends its own; none when absent. */
  pagePolicy?: () => string;
}

const nodes: PlayedNode[] = [];
let browser: Browser | null = null;

export class PlayedNode {
  readonly url: string;
  /** What the node's event stream replays to a new reader before the live items. */
  readonly history: unknown[] = [];
  private readonly streams = new Set<ServerResponse>();
  private readonly sockets = new Set<Socket>();
  /** Between `kill` and `revive`: a connection the server had already taken is dropped. */
  private dead = false;

  private constructor(
    private readonly server: Server,
    readonly handlers: Handlers,
  ) {
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    server.on("connection", (socket: Socket) => {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
    });
  }

  static async start(handlers: Handlers = {}): Promise<PlayedNode> {
    let node: PlayedNode | null = null;
    const server = createServer((request, response) => {
      void node?.serve(request, response).catch(() => response.destroy());
    });
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
    node = new PlayedNode(server, handlers);
    nodes.push(node);
    return node;
  }

  /** Sends `item` to every open event stream, and keeps it for later readers. */
  publish(item: unknown): void {
    this.history.push(item);
    for (const stream of this.streams) stream.write(`data: ${JSON.stringify(item)}\n\n`);
  }

  /** Ends the node as SIGKILL would: open connections reset, new ones refused. */
  async kill(): Promise<void> {
    this.dead = true;
    const closed = new Promise((done) => this.server.close(done));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  /** Serves again at the same address after `kill`, as a restarted node would. */
  async revive(): Promise<void> {
    const port = Number(new URL(this.url).port);
    await new Promise<void>((done) => this.server.listen(port, "127.0.0.1", done));
    this.dead = false;
  }

  private async serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (this.dead) {
      response.socket?.destroy();
      return;
    }
    const url = new URL(request.url ?? "/", this.url);
    response.setHeader("access-control-allow-origin", "*");
    response.setHeader("cache-control", "no-store");
    if (request.method === "OPTIONS") {
      response.writeHead(204, {
        "access-control-allow-methods": "GET, POST",
        "access-control-allow-headers": "authorization, x-baton-fault, last-event-id",
      });
      response.end();
      return;
    }
    if (url.pathname === "/") {
      const policy = this.handlers.pagePolicy?.();
      if (policy !== undefined) response.setHeader("content-security-policy", policy);
      return serveFile(response, "index.html");
    }
    if (url.pathname.startsWith("/dashboard/")) {
      return serveFile(response, url.pathname.slice("/dashboard/".length));
    }
    if (url.pathname === "/v1/events") return this.openStream(response);
    if (request.method === "POST" && url.pathname.startsWith("/v1/faults/")) {
      const answer = this.handlers.fault?.(url.pathname.slice("/v1/faults/".length)) ?? unplayed();
      if (answer === "reset") {
        response.destroy();
        return;
      }
      if (answer === "hang") return;
      response.writeHead(answer.status, { "content-type": "application/json" });
      response.end(JSON.stringify(answer.body));
      return;
    }
    if (url.pathname === "/v1/watch" && this.handlers.watch !== undefined) {
      const resumed = request.headers["last-event-id"];
      const answer = await this.handlers.watch(
        url.searchParams,
        typeof resumed === "string" ? resumed : null,
      );
      response.writeHead(answer.status, { "content-type": answer.type });
      // A stream stays open, as a node's does; a refusal ends.
      if (answer.type.startsWith("text/event-stream") && answer.end !== true) {
        response.write(answer.body);
      } else response.end(answer.body);
      return;
    }
    const handler = {
      "/v1/status": this.handlers.status,
      "/v1/faults": this.handlers.faults ?? (() => json({ enabled: false, partitioned: false })),
      "/v1/kv":
        this.handlers.kv === undefined
          ? undefined
          : () => (this.handlers.kv as NonNullable<Handlers["kv"]>)(url.searchParams),
    }[url.pathname];
    const answer: Answer = handler === undefined ? unplayed() : await handler();
    if (answer === "hang") return;
    response.writeHead(answer.status, { "content-type": "application/json" });
    response.end(JSON.stringify(answer.body));
  }

  private openStream(response: ServerResponse): void {
    response.writeHead(200, { "content-type": "text/event-stream; charset=utf-8" });
    response.write("retry: 1000\n\n");
    for (const item of this.history) response.write(`data: ${JSON.stringify(item)}\n\n`);
    this.streams.add(response);
    response.on("close", () => this.streams.delete(response));
  }
}

function serveFile(response: ServerResponse, name: string): void {
  if (!/^[a-z-]+\.(html|js|css)$/.test(name)) {
    response.writeHead(404).end();
    return;
  }
  const type = TYPES[name.slice(name.lastIndexOf("."))] ?? "text/plain";
  response.writeHead(200, { "content-type": type });
  response.end(readFileSync(join(PUBLIC, name)));
}

/** A 200 answer with `body`. */
export function json(body: unknown): Answer {
  return { status: 200, body };
}

/** What a route the test does not play answers: a node with no cluster behind it. */
function unplayed(): Answer {
  return { status: 503, body: { error: "played by the test", code: "ERR_NO_MASTER" } };
}

/** A member row of a status, as the master (or a backup) reports it. */
export function member(
  id: number,
  node: PlayedNode,
  fields: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    id,
    address: `127.0.0.1:${7100 + id}`,
    httpUrl: node.url,
    role: "backup",
    connected: true,
    matchIndex: null,
    lag: null,
    lastContactMs: null,
    voter: true,
    ...fields,
  };
}

/** A node's status body: `role` in term 3 of master `master`, at index 100. */
export function statusBody(
  id: number,
  role: "master" | "backup" | "candidate",
  master: number | null,
  members: Record<string, unknown>[],
): Record<string, unknown> {
  return {
    id,
    role,
    term: 3,
    master,
    commitIndex: 100,
    appliedIndex: 100,
    lastIndex: 100,
    members,
  };
}

/** A browser page at `url`, with its script errors collected. */
export async function openPage(
  url: string,
  init?: (page: Page) => Promise<unknown>,
): Promise<{ page: Page; errors: string[] }> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM}: apt-get install -y chromium`);
  }
  browser ??= await chromium.launch({
    executablePath: CHROMIUM,
    // Root (CI containers) cannot use Chromium's sandbox.
    args: process.getuid?.() === 0 ? ["--no-sandbox"] : [],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 960 } });
  const errors: string[] = [];
  page.on("pageerror", (error) => errors.push(error.message));
  await init?.(page);
  await page.goto(url);
  return { page, errors };
}

/** Closes the browser and every played node. */
export async function stopPlayed(): Promise<void> {
  await browser?.close();
  browser = null;
  for (const node of nodes.splice(0)) await node.kill().catch(() => {});
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  ms = 15_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((done) => setTimeout(done, 50));
  }
}

/**
 * Records every text the elements with `ids` show, from the page's first moment (call it
 * from `openPage`'s `init`); `recordedTexts` reads them back in order. The script is a
 * string: it runs in the page, where the test's types do not reach.
 */
export async function recordTexts(page: Page, ids: readonly string[]): Promise<void> {
  await page.addInitScript(`{
    const ids = ${JSON.stringify(ids)};
    const seen = (window.recorded = {});
    for (const id of ids) seen[id] = [];
    new MutationObserver(() => {
      for (const id of ids) {
        const text = document.getElementById(id)?.textContent?.trim().replace(/\\s+/g, " ");
        const list = seen[id];
        if (text !== undefined && list[list.length - 1] !== text) list.push(text);
      }
    }).observe(document, { subtree: true, childList: true, characterData: true });
  }`);
}

export function recordedTexts(page: Page, id: string): Promise<string[]> {
  return page.evaluate(`window.recorded[${JSON.stringify(id)}] ?? []`);
}
