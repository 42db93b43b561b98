/**
 * The dashboard's event-stream reader (src/dashboard/public/api.js), which replaces the
 * browser's EventSource so that the page can send an API token: run here in Node.js (which
 * has fetch and TextDecoderStream too) against a server that writes server-sent events in
 * awkward pieces. It must parse events as EventSource does, resume after a dropped stream
 * with the last event's id, honour `retry:`, report a refused stream and stop on close().
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
// @ts-expect-error: plain JavaScript for the browser, without type declarations.
import { openEvents, StreamRefused } from "../../src/dashboard/public/api.js";

interface Seen {
  readonly data: string;
  readonly id: string | null;
}

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers) server.closeAllConnections();
  await Promise.all(servers.splice(0).map((s) => new Promise((done) => s.close(done))));
});

async function serve(
  handler: (request: IncomingMessage, response: ServerResponse) => void,
): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/events`;
}

function until(check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((done, fail) => {
    const poll = () => {
      if (check()) done();
      else if (Date.now() > deadline) fail(new Error("timed out"));
      else setTimeout(poll, 10);
    };
    poll();
  });
}

describe("dashboard event streams (api.js)", () => {
  it("parses events written in pieces, skips comments, joins data lines, resumes with Last-Event-ID", async () => {
    const lastIds: (string | undefined)[] = [];
    let connection = 0;
    const url = await serve((request, response) => {
      lastIds.push(request.headers["last-event-id"] as string | undefined);
      connection++;
      response.writeHead(200, { "content-type": "text/event-stream" });
      if (connection === 1) {
        // Split inside a field name, a value and the blank line; CRLF line ends; a comment.
        const text = ': watching\r\n\r\nretry: 50\n\nid: 7.1\r\ndata: {"a":1}\r\n\r\nda';
        response.write(text.slice(0, 9));
        response.write(text.slice(9, 30));
        response.write(text.slice(30));
        setTimeout(() => {
          response.write("ta: first line\ndata: second line\nid: 8.1\n");
          response.end("\n");
        }, 20);
      } else {
        response.end("data: after the resume\n\n");
      }
    });
    const seen: Seen[] = [];
    const stream = openEvents(url, { onEvent: (event: Seen) => seen.push(event) });
    await until(() => seen.length === 3);
    stream.close();
    expect(seen).toEqual([
      { data: '{"a":1}', id: "7.1" },
      { data: "first line\nsecond line", id: "8.1" },
      { data: "after the resume", id: null },
    ]);
    // The first connection had no id to send; the second resumed after 8.1, 50 ms later.
    expect(lastIds).toEqual([undefined, "8.1"]);
  });

  it("sends the token, reports a refusal with its status, and tries again", async () => {
    const authorizations: (string | undefined)[] = [];
    const url = await serve((request, response) => {
      authorizations.push(request.headers.authorization);
      response.writeHead(401, { "content-type": "application/json" });
      response.end('{"code":"ERR_UNAUTHENTICATED"}');
    });
    const errors: unknown[] = [];
    const stream = openEvents(url, {
      onEvent: () => {},
      onError: (error: unknown) => errors.push(error),
      retryMs: 20,
    });
    await until(() => errors.length >= 2);
    stream.close();
    expect(errors[0]).toBeInstanceOf(StreamRefused);
    expect((errors[0] as { status: number }).status).toBe(401);
    // No token set in this process: none is sent.
    expect(authorizations[0]).toBeUndefined();
  });

  it("stops for good on close(), and a consumer that throws does not end the stream", async () => {
    let connections = 0;
    const url = await serve((_request, response) => {
      connections++;
      response.writeHead(200, { "content-type": "text/event-stream" });
      response.write("data: not json\n\ndata: 2\n\n");
      // Left open: the stream goes on until the reader closes it.
    });
    const seen: string[] = [];
    const stream = openEvents(url, {
      onEvent: ({ data }: Seen) => {
        seen.push(data);
        JSON.parse(data);
      },
      retryMs: 20,
    });
    await until(() => seen.length === 2);
    stream.close();
    await new Promise((done) => setTimeout(done, 100));
    expect(seen).toEqual(["not json", "2"]);
    expect(connections).toBe(1);
  });
});
