/**
 * The two ways the fault campaign cuts links, tested on bare TCP sockets (no nodes): the
 * relay stalls a cut direction and delivers what was held once healed; iptables rules in
 * the campaign's own chain stop a connection from one loopback address to another, and
 * closing the network leaves no chain behind. The iptables tests run only as root with
 * iptables installed.
 */

import { execFileSync } from "node:child_process";
import { connect, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  IptablesNetwork,
  iptablesUsable,
  type Network,
  nodeHost,
  RelayNetwork,
} from "../../src/chaos/network.js";

const servers: Server[] = [];
const sockets: Socket[] = [];
const networks: Network[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(networks.splice(0).map((n) => n.close()));
  await Promise.all(servers.splice(0).map((s) => new Promise((done) => s.close(done))));
});

/** An echo server on `host`; resolves with its port. */
async function echoServer(host: string): Promise<number> {
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on("data", (chunk) => socket.write(chunk));
    socket.on("error", () => {});
  });
  servers.push(server);
  await new Promise<void>((done) => server.listen({ host, port: 0 }, done));
  return (server.address() as { port: number }).port;
}

/** Connects (from `localAddress` when given) and returns the socket once connected. */
function dial(host: string, port: number, localAddress?: string): Promise<Socket> {
  return new Promise((done, fail) => {
    const socket = connect({ host, port, ...(localAddress ? { localAddress } : {}) });
    sockets.push(socket);
    socket.once("connect", () => done(socket));
    socket.once("error", fail);
  });
}

/** The next `bytes` bytes from `socket`, or null when none arrive within `timeoutMs`. */
function receive(socket: Socket, bytes: number, timeoutMs: number): Promise<string | null> {
  return new Promise((done) => {
    let got = "";
    const onData = (chunk: Buffer): void => {
      got += chunk.toString();
      if (got.length >= bytes) finish(got);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    const finish = (value: string | null): void => {
      clearTimeout(timer);
      socket.off("data", onData);
      done(value);
    };
    socket.on("data", onData);
  });
}

describe("chaos network", () => {
  it("chaos: the relay stalls a cut direction and delivers the held bytes when healed", async () => {
    const port = await echoServer("127.0.0.1");
    const relay = await RelayNetwork.open(
      new Map([
        [2, { host: "127.0.0.1", port }],
        [1, { host: "127.0.0.1", port: 1 }],
      ]),
    );
    networks.push(relay);
    const [host, relayPort] = relay.addressFor(1, 2).split(":");
    const socket = await dial(host!, Number(relayPort));
    socket.write("ping");
    expect(await receive(socket, 4, 2000)).toBe("ping");
    await relay.cut(1, 2);
    expect(relay.cutLinks()).toEqual([{ from: 1, to: 2 }]);
    const held = receive(socket, 4, 5000);
    socket.write("pong");
    expect(await receive(socket, 4, 300)).toBeNull();
    await relay.heal(1, 2);
    expect(await held).toBe("pong");
  });

  it.runIf(iptablesUsable())(
    "chaos: an iptables cut stops connections from one node's loopback address to another's",
    async () => {
      const [a, b] = [nodeHost(11), nodeHost(12)];
      const port = await echoServer(b);
      const network = await IptablesNetwork.open();
      networks.push(network);
      await network.cut(11, 12);
      const blocked = dial(b, port, a);
      const outcome = await Promise.race([
        blocked.then(() => "connected"),
        new Promise((done) => setTimeout(() => done("stalled"), 700)),
      ]);
      expect(outcome).toBe("stalled");
      // Another source is not cut.
      await dial(b, port, "127.0.0.1");
      await network.heal(11, 12);
      const socket = await dial(b, port, a);
      socket.write("ok");
      expect(await receive(socket, 2, 2000)).toBe("ok");
      await network.close();
      const listing = execFileSync("iptables", ["-w", "-S"], { encoding: "utf8" });
      expect(listing).not.toContain(network.chain);
    },
  );
});
