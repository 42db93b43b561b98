/**
 * A stand-in in front of one node's HTTP API, for tests of the campaign's loops against
 * answers a healthy node never gives: every request goes through `handle`, which may
 * forward it to the node (and look at or change the answer) or answer it itself. It owns
 * its listening socket only; the tests close it.
 */

import { createServer, type IncomingMessage, type Server } from "node:http";
import { request } from "undici";

export interface ProxiedRequest {
  readonly method: string;
  /** The path and query, as sent. */
  readonly url: string;
  readonly body: string;
}

export interface ProxiedAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** Sends the request on to the node, with `body` in place of the one it came with if given. */
export type Forward = (body?: string) => Promise<ProxiedAnswer>;

export type ProxyHandler = (incoming: ProxiedRequest, forward: Forward) => Promise<ProxiedAnswer>;

/** Headers passed on each way; the others (host, connection, length) are the sockets'. */
const PASSED = ["accept", "content-type", "idempotency-key", "if-match", "etag", "retry-after"];

/** A JSON error answer as a node gives it. */
export function errorAnswer(status: number, code: string, error: string): ProxiedAnswer {
  const headers = { "content-type": "application/json; charset=utf-8" };
  return { status, headers, body: JSON.stringify({ error, code }) };
}

/** Starts the stand-in in front of `target` (a node's base URL); resolves with its own. */
export async function startAnswerProxy(
  target: string,
  handle: ProxyHandler,
): Promise<{ readonly url: string; readonly server: Server }> {
  const server = createServer((req, res) => {
    void (async () => {
      const incoming = { method: req.method ?? "GET", url: req.url ?? "/", body: await read(req) };
      const forward = async (body = incoming.body): Promise<ProxiedAnswer> => {
        const response = await request(`${target}${incoming.url}`, {
          method: incoming.method as "GET",
          headers: pick(req.headers),
          body: body === "" ? null : body,
        });
        return {
          status: response.statusCode,
          headers: pick(response.headers),
          body: await response.body.text(),
        };
      };
      try {
        const answer = await handle(incoming, forward);
        res.writeHead(answer.status, answer.headers).end(answer.body);
      } catch (error) {
        res.writeHead(502).end(String(error));
      }
    })();
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, server };
}

async function read(req: IncomingMessage): Promise<string> {
  let text = "";
  for await (const chunk of req) text += String(chunk);
  return text;
}

function pick(headers: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of PASSED) {
    const value = headers[name];
    if (typeof value === "string") out[name] = value;
  }
  return out;
}
