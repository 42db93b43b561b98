import { describe, expect, it } from "vitest";
import { formatAddress, parseAddress } from "./address.js";

describe("address", () => {
  it.each([
    ["127.0.0.1:7101", "127.0.0.1", 7101],
    ["[::1]:7101", "::1", 7101],
    ["[fe80::1:2]:0", "fe80::1:2", 0],
    ["localhost:65535", "localhost", 65535],
    ["node-1.example.org:7101", "node-1.example.org", 7101],
  ])("address: parses %s", (text, host, port) => {
    expect(parseAddress(text)).toEqual({ ok: true, address: { host, port } });
  });

  it.each([
    ["no port", "127.0.0.1"],
    ["empty port", "127.0.0.1:"],
    ["port too large", "127.0.0.1:65536"],
    ["port not a number", "127.0.0.1:http"],
    ["negative port", "127.0.0.1:-1"],
    ["unbracketed IPv6", "::1:7101"],
    ["bracketed non-IPv6", "[localhost]:7101"],
    ["missing bracket", "[::1:7101"],
    ["empty host", ":7101"],
    ["bad hostname", "no_underscores:7101"],
  ])("address: rejects %s (%s)", (_, text) => {
    expect(parseAddress(text).ok).toBe(false);
  });

  it("address: formats IPv6 with brackets and round-trips", () => {
    expect(formatAddress({ host: "::1", port: 7101 })).toBe("[::1]:7101");
    expect(formatAddress({ host: "10.0.0.1", port: 1 })).toBe("10.0.0.1:1");
    const parsed = parseAddress("[2001:db8::7]:9");
    expect(parsed.ok && formatAddress(parsed.address)).toBe("[2001:db8::7]:9");
  });
});
