import { describe, expect, it } from "vitest";
import { takesSighup } from "./start.js";

const noFiles = { tlsCa: null, httpTlsCert: null, tokens: null };

describe("baton start: who takes SIGHUP over", () => {
  it("a node with certificate or token files reloads them, wherever it runs", () => {
    expect(takesSighup({ ...noFiles, tokens: "/etc/baton/tokens.json" }, {}, true)).toBe(true);
    expect(takesSighup({ ...noFiles, tlsCa: "/etc/baton/ca.crt" }, {}, false)).toBe(true);
  });

  it("a node a systemd service runs takes it over even without files: systemctl reload must not kill it", () => {
    expect(takesSighup(noFiles, { INVOCATION_ID: "5f0c2d1e" }, false)).toBe(true);
  });

  it("a node started from a terminal keeps SIGHUP's default meaning (the terminal went away: stop)", () => {
    expect(takesSighup(noFiles, {}, true)).toBe(false);
    expect(takesSighup(noFiles, {}, false)).toBe(false);
    // A terminal started by a systemd user service passes INVOCATION_ID on to its shells.
    expect(takesSighup(noFiles, { INVOCATION_ID: "5f0c2d1e" }, true)).toBe(false);
    expect(takesSighup(noFiles, { INVOCATION_ID: "" }, false)).toBe(false);
  });
});
