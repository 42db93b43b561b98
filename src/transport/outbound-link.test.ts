import { createServer, type Server } from "node:net";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { sourceAddressFor } from "./outbound-link.js";
import { defaultTcpTransportConfig, TcpTransport } from "./tcp-transport.js";

describe("outbound link source address", () => {
  it.each([
    ["127.0.0.11", "127.0.0.12", "127.0.0.11"],
    ["10.0.0.1", "10.0.0.2", "10.0.0.1"],
    ["::1", "::1", "::1"],
    ["0.0.0.0", "127.0.0.12", null],
    ["::", "::1", null],
    ["localhost", "127.0.0.12", null],
    ["127.0.0.11", "node-2.example", null],
    ["127.0.0.11", "::1", null],
    ["127.0.0.11", "10.0.0.2", null],
  ])("transport: a node listening on %s dials %s from %s", (listen, peer, expected) => {
    expect(sourceAddressFor(listen, peer)).toBe(expected);
  });
});

describe("outbound link", () => {
  const servers: Server[] = [];
  const transports: TcpTransport[] = [];
  afterEach(async () => {
    await Promise.all(transports.splice(0).map((t) => t.close()));
    await Promise.all(servers.splice(0).map((s) => new Promise((done) => s.close(done))));
  });

  it("transport: connections to a peer leave from the node's own listen address (127.0.0.11)", async () => {
    // A bare TCP server stands in for the peer: it only records where the dial came from.
    const seen = new Promise<string | undefined>((done) => {
      const server = createServer((socket) => {
        done(socket.remoteAddress);
        socket.destroy();
      });
      servers.push(server);
      server.listen({ host: "127.0.0.12", port: 0 });
    });
    await new Promise((done) => servers[0]!.once("listening", done));
    const peerPort = (servers[0]!.address() as { port: number }).port;
    const transport = new TcpTransport(
      {
        ...defaultTcpTransportConfig(),
        nodeId: 1,
        listen: "127.0.0.11:0",
        peers: [{ id: 2, address: `127.0.0.12:${peerPort}` }],
      },
      { logger: pino({ level: "silent" }) },
    );
    transports.push(transport);
    await transport.start();
    expect(await seen).toBe("127.0.0.11");
  });
});
