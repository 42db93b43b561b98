/**
 * `baton member replace` checks what it is given before it removes anything: a refused
 * add after the removal would leave the node out of the cluster.
 */

import { describe, expect, it } from "vitest";
import { captureIo } from "../../harness/doubles/capture-io.js";
import { main } from "../../src/cli/main.js";

async function run(args: string[]) {
  const io = captureIo();
  const code = await main(args, io);
  return { code, out: io.out(), err: io.err() };
}

describe("member replace", () => {
  // An endpoint nothing listens on: a command that asked the cluster would exit 3.
  const endpoints = ["--endpoints", "http://127.0.0.1:1", "--timeout", "200"];

  it("member replace: a bad id, peer address or HTTP URL is bad usage (exit 2), before any request", async () => {
    const id = await run(["member", "replace", "abc", ...endpoints]);
    expect(id).toMatchObject({ code: 2, err: "baton member replace: abc is not a member id\n" });
    const url = await run(["member", "replace", "2", "--http-url", "10.0.0.9:8101", ...endpoints]);
    expect(url.code).toBe(2);
    expect(url.err).toBe(
      "baton member replace: --http-url 10.0.0.9:8101: give http://host:port or https://host:port\n",
    );
    const peer = await run(["member", "replace", "2", "--peer-address", "10.0.0.9", ...endpoints]);
    expect(peer.code).toBe(2);
    expect(peer.err).toMatch(/--peer-address 10\.0\.0\.9: give host:port/);
    const underscore = await run([
      "member",
      "replace",
      "2",
      "--peer-address",
      "node_2:7101",
      ...endpoints,
    ]);
    expect(underscore.code).toBe(2);
    // A bracketed IPv6 address passes the check (the cluster is then asked: nothing listens).
    const ipv6 = await run([
      "member",
      "replace",
      "2",
      "--peer-address",
      "[::1]:7101",
      ...endpoints,
    ]);
    expect(ipv6.code).toBe(3);
  });
});
