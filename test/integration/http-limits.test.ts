/**
 * The HTTP API's bounds on what one client may hold, over real sockets and real time
 * (hence `timing:`): a body trickled slower than the receive timeout is answered 408 and
 * cut off, headers that never finish are cut off, a kept-alive connection that goes quiet
 * is closed, and connections over the cap are closed as they arrive. Short limits keep
 * each test near a second; every socket and server is closed afterwards, pass or fail.
 */

import { connect, type Socket } from "node:net";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { FakeKvNodeApi } from "../../harness/doubles/fake-node-api.js";
import { issueCa, issueNodeCert } from "../../src/cli/commands/cert-issuer.js";
import {
  createHttpServer,
  type HttpConnectionLimits,
  type HttpServer,
  type HttpTlsConfig,
} from "../../src/http/server.js";

const servers: HttpServer[] = [];
const sockets: Socket[] = [];
const timers: NodeJS.Timeout[] = [];

afterEach(async () => {
  for (const timer of timers.splice(0)) clearInterval(timer);
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function serve(limits: Partial<HttpConnectionLimits>, tls?: HttpTlsConfig): Promise<number> {
  const server = createHttpServer({
    api: new FakeKvNodeApi(1),
    logger: pino({ level: "silent" }),
    connections: limits,
    ...(tls === undefined ? {} : { tls }),
  });
  servers.push(server);
  return (await server.listen("127.0.0.1", 0)).port;
}

/** A raw connection that records what it receives and when it was closed. */
function open(port: number): { socket: Socket; received: () => string; closed: Promise<number> } {
  const socket = connect({ host: "127.0.0.1", port });
  sockets.push(socket);
  let text = "";
  socket.on("data", (chunk: Buffer) => {
    text += chunk.toString("latin1");
  });
  socket.on("error", () => {});
  const started = performance.now();
  const closed = new Promise<number>((resolve) =>
    socket.on("close", () => resolve(performance.now() - started)),
  );
  return { socket, received: () => text, closed };
}

describe("http limits", () => {
  it("timing: a body trickled past the receive timeout is answered 408 and cut off", async () => {
    const port = await serve({ headersTimeoutMs: 500, receiveTimeoutMs: 800 });
    const client = open(port);
    client.socket.write(
      "PUT /v1/kv/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n",
    );
    // One byte every 100 ms: never idle, never done.
    timers.push(setInterval(() => client.socket.write("x"), 100));
    const elapsedMs = await client.closed;
    expect(client.received()).toMatch(/^HTTP\/1\.1 408/);
    expect(elapsedMs).toBeGreaterThanOrEqual(700);
    expect(elapsedMs).toBeLessThan(5000);
  });

  it("timing: headers that never finish are cut off after the headers timeout", async () => {
    const port = await serve({ headersTimeoutMs: 400, receiveTimeoutMs: 5000 });
    const client = open(port);
    client.socket.write("GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    const elapsedMs = await client.closed;
    expect(elapsedMs).toBeLessThan(3000);
  });

  it("timing: over HTTPS, a connection that never finishes its TLS handshake is cut off after the headers timeout", async () => {
    const ca = await issueCa({ validDays: 1 });
    const pair = await issueNodeCert(ca, {
      memberId: 1,
      hosts: ["127.0.0.1"],
      clusterId: null,
      validDays: 1,
    });
    const port = await serve({ headersTimeoutMs: 400 }, { cert: pair.certPem, key: pair.keyPem });
    // A TCP connection that sends nothing: no ClientHello, so no handshake ever ends.
    const client = open(port);
    const elapsedMs = await client.closed;
    expect(elapsedMs).toBeGreaterThanOrEqual(300);
    expect(elapsedMs).toBeLessThan(3000);
  });

  it("timing: a kept-alive connection that sends nothing more is closed", async () => {
    const port = await serve({ keepAliveTimeoutMs: 300 });
    const client = open(port);
    client.socket.write("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    const elapsedMs = await client.closed;
    expect(client.received()).toMatch(/^HTTP\/1\.1 200/);
    expect(elapsedMs).toBeLessThan(3000);
  });

  it("timing: connections over the cap are closed as they arrive (connectionsMax 2)", async () => {
    const port = await serve({ connectionsMax: 2 });
    const first = open(port);
    const second = open(port);
    await Promise.all(
      [first, second].map(
        (client) => new Promise((resolve) => client.socket.once("connect", resolve)),
      ),
    );
    // Let the server count both before the third arrives.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const third = open(port);
    expect(await third.closed).toBeLessThan(2000);
    first.socket.write("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    await new Promise<void>((resolve) => first.socket.once("data", () => resolve()));
    expect(first.received()).toMatch(/^HTTP\/1\.1 200/);
  });
});
