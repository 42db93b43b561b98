/**
 * Node-to-node addresses as written in configuration: "host:port", "[IPv6]:port". It owns
 * parsing and formatting them, and never resolves names or touches the network: a
 * hostname is checked for shape only and resolved when a connection is made.
 */

import { isIP, isIPv6 } from "node:net";

export interface HostPort {
  /** An IPv4 address, an IPv6 address without brackets, or a hostname. */
  readonly host: string;
  /** 0..65535; 0 asks the operating system for a free port when listening. */
  readonly port: number;
}

export type ParseAddressResult =
  | { readonly ok: true; readonly address: HostPort }
  | { readonly ok: false; readonly reason: string };

const hostnamePattern =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** Parses "127.0.0.1:7101", "[::1]:7101" or "node-1.example:7101". */
export function parseAddress(text: string): ParseAddressResult {
  const split = splitHostPort(text);
  if (typeof split === "string") return { ok: false, reason: `${JSON.stringify(text)}: ${split}` };
  const [host, portText] = split;
  if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) > 65535) {
    return { ok: false, reason: `${JSON.stringify(text)}: port must be an integer 0..65535` };
  }
  return { ok: true, address: { host, port: Number(portText) } };
}

/** Returns [host, port text] or what is wrong with the address. */
function splitHostPort(text: string): [string, string] | string {
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0 || text[close + 1] !== ":") return "expected [IPv6]:port";
    const host = text.slice(1, close);
    if (!isIPv6(host)) return `${JSON.stringify(host)} is not an IPv6 address`;
    return [host, text.slice(close + 2)];
  }
  const colon = text.lastIndexOf(":");
  if (colon < 0) return "expected host:port";
  const host = text.slice(0, colon);
  if (host.includes(":")) return "an IPv6 address must be written in brackets: [::1]:7101";
  if (isIP(host) === 0 && !hostnamePattern.test(host)) {
    return `${JSON.stringify(host)} is neither an IP address nor a hostname`;
  }
  return [host, text.slice(colon + 1)];
}

/** The inverse of parseAddress: brackets IPv6 hosts. */
export function formatAddress(address: HostPort): string {
  return isIPv6(address.host)
    ? `[${address.host}]:${address.port}`
    : `${address.host}:${address.port}`;
}
