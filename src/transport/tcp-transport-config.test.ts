import { describe, expect, it } from "vitest";
import { defaultTcpTransportConfig, parseTcpTransportConfig } from "./tcp-transport-config.js";

describe("tcp transport config", () => {
  it("config: parses a typical node config over the defaults (frozen)", () => {
    const result = parseTcpTransportConfig({
      nodeId: 2,
      clusterId: "prod",
      listen: "[::1]:7102",
      peers: [
        { id: 1, address: "127.0.0.1:7101" },
        { id: 2, address: "[::1]:7102" },
      ],
    });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    const { frameBytesMax, handshakeTimeoutMs } = defaultTcpTransportConfig();
    expect(result.config).toMatchObject({ nodeId: 2, listen: "[::1]:7102", frameBytesMax });
    expect(result.config.handshakeTimeoutMs).toBe(handshakeTimeoutMs);
    expect(result.config.peers).toHaveLength(2);
    expect(Object.isFrozen(result.config)).toBe(true);
    expect(Object.isFrozen(result.config.peers)).toBe(true);
  });

  it("config: documents the defaults (16 MiB frames, 10 ms to 1 s back-off, 2 s handshake)", () => {
    expect(defaultTcpTransportConfig()).toMatchObject({
      frameBytesMax: 16 * 1024 * 1024,
      reconnectDelayMsMin: 10,
      reconnectDelayMsMax: 1000,
      handshakeTimeoutMs: 2000,
    });
    expect(parseTcpTransportConfig({}).ok).toBe(true);
  });

  it("config: reports every bad field at once", () => {
    const result = parseTcpTransportConfig({
      nodeId: 0,
      clusterId: "",
      listen: "::1:7101",
      peers: [
        { id: 2, address: "127.0.0.1:0" },
        { id: 2, address: "nowhere" },
      ],
      keepAliveInitialDelayMs: 1.5,
      queueBytesMax: 10,
      reconnectDelayMsMin: 2000,
      handshakeTimeoutMs: -1,
      surprise: true,
    });
    expect(result.ok).toBe(false);
    const fields = result.ok ? [] : result.errors.map((error) => error.split(":")[0]);
    expect(fields).toEqual(
      expect.arrayContaining([
        "surprise",
        "nodeId",
        "clusterId",
        "listen",
        "peers[0].address",
        "peers[1].id",
        "peers[1].address",
        "keepAliveInitialDelayMs",
        "queueBytesMax",
        "reconnectDelayMsMin",
        "handshakeTimeoutMs",
      ]),
    );
  });

  it("config: parses advertise into a frozen copy (default httpUrl null)", () => {
    expect(defaultTcpTransportConfig().advertise).toEqual({ httpUrl: null });
    const advertise = { httpUrl: "https://node-2.example:8443/baton" };
    const result = parseTcpTransportConfig({ advertise });
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.config.advertise).toEqual(advertise);
    expect(result.config.advertise).not.toBe(advertise);
    expect(Object.isFrozen(result.config.advertise)).toBe(true);
  });

  it.each([
    ["not an object", "http://a:8080"],
    ["without httpUrl", {}],
    ["with an unknown key", { httpUrl: null, region: "eu" }],
    ["with a 257-byte URL", { httpUrl: `http://a/${"x".repeat(248)}` }],
    ["with a non-http scheme", { httpUrl: "tcp://a:7101" }],
    ["with a host:port but no scheme", { httpUrl: "a:8080" }],
    ["with credentials", { httpUrl: "http://admin:pw@a:8080" }],
    ["with a space", { httpUrl: "http://a:8080/ x" }],
  ])("config: rejects advertise %s", (_, advertise) => {
    const result = parseTcpTransportConfig({ advertise });
    expect(result.ok).toBe(false);
    const fields = result.ok ? [] : result.errors.map((error) => error.split(":")[0]);
    expect(fields).toEqual(["advertise"]);
  });

  it("config: rejects something that is not an object", () => {
    expect(parseTcpTransportConfig("listen=1").ok).toBe(false);
    expect(parseTcpTransportConfig(null).ok).toBe(false);
  });
});
