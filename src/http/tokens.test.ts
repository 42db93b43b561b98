import { describe, expect, it } from "vitest";
import {
  formatTokensFile,
  hashToken,
  newToken,
  parseTokensFile,
  roleAllows,
  TokenStore,
} from "./tokens.js";

describe("tokens", () => {
  it("tokens: roles include the ones below them (read < readwrite < admin)", () => {
    expect(roleAllows("admin", "readwrite")).toBe(true);
    expect(roleAllows("readwrite", "read")).toBe(true);
    expect(roleAllows("read", "readwrite")).toBe(false);
    expect(roleAllows("readwrite", "admin")).toBe(false);
  });

  it("tokens: a file round-trips and the store finds a token by its hash only", () => {
    const token = newToken();
    const records = [{ name: "ops", role: "admin" as const, sha256: hashToken(token) }];
    const parsed = parseTokensFile(formatTokensFile(records));
    expect(parsed).toEqual(records);
    const store = new TokenStore(parsed);
    expect(store.find(token)).toEqual(records[0]);
    expect(store.find(`${token}x`)).toBeNull();
    store.replace([]);
    expect(store.find(token)).toBeNull();
  });

  it("tokens: a bad file is refused with every problem named (never half loaded)", () => {
    const text = JSON.stringify({
      tokens: [
        { name: "a", role: "root", sha256: "00" },
        { name: "a", role: "read", sha256: "A".repeat(64) },
      ],
    });
    expect(() => parseTokensFile(text)).toThrow(
      /tokens\[0\]\.role.*tokens\[0\]\.sha256.*tokens\[1\]\.name.*listed twice.*tokens\[1\]\.sha256/,
    );
    expect(() => parseTokensFile("{")).toThrow(/not JSON/);
    expect(() => parseTokensFile("[]")).toThrow(/expected/);
  });
});
