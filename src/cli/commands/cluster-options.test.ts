import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { CliIo } from "./cli-io.js";
import { clientFrom, credentialsFrom } from "./cluster-options.js";

function ioWith(env: Record<string, string>): CliIo {
  const sink = { write: () => true };
  return { stdout: sink, stderr: sink, stdin: (async function* () {})(), env, exitCode: 0 };
}

describe("cluster options", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it("credentials: --token wins over --token-file, which wins over BATON_TOKEN", () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-cred-"));
    dirs.push(dir);
    const tokenFile = join(dir, "token");
    const caFile = join(dir, "ca.crt");
    writeFileSync(tokenFile, "baton_from-file\n");
    writeFileSync(caFile, "-----BEGIN CERTIFICATE-----\n");
    const io = ioWith({ BATON_TOKEN: "baton_from-env", BATON_CA: caFile });
    expect(credentialsFrom({}, io)).toEqual({
      token: "baton_from-env",
      ca: "-----BEGIN CERTIFICATE-----\n",
    });
    expect(credentialsFrom({ tokenFile }, io).token).toBe("baton_from-file");
    expect(credentialsFrom({ tokenFile, token: "baton_flag" }, io).token).toBe("baton_flag");
    expect(credentialsFrom({}, ioWith({}))).toEqual({});
  });

  it("credentials: every source of the token is trimmed alike, and an empty one is named", () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-cred-"));
    dirs.push(dir);
    const empty = join(dir, "empty");
    writeFileSync(empty, "\n");
    // A secret injected into the environment often keeps its file's newline.
    expect(credentialsFrom({}, ioWith({ BATON_TOKEN: "baton_env\n" })).token).toBe("baton_env");
    expect(credentialsFrom({ token: " baton_flag " }, ioWith({})).token).toBe("baton_flag");
    expect(() => credentialsFrom({ tokenFile: empty }, ioWith({}))).toThrow(
      expect.objectContaining({
        field: `--token-file ${empty}`,
        message: expect.stringMatching(/is empty/),
      }),
    );
  });

  it("credentials: an unreadable file is an input error naming the option", () => {
    expect(() => credentialsFrom({ ca: "/nonexistent/ca.crt" }, ioWith({}))).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_INPUT", field: "--ca" }),
    );
  });

  it("credentials: a CA file from BATON_CA is named as BATON_CA, not --ca, when it cannot be read or is no certificate", () => {
    const io = ioWith({ BATON_CA: "/nonexistent/ca.crt" });
    expect(() => credentialsFrom({}, io)).toThrow(
      expect.objectContaining({
        field: "BATON_CA",
        message: expect.stringMatching(/^BATON_CA: cannot read \/nonexistent\/ca\.crt: /),
      }),
    );
    // --ca wins over BATON_CA, and is named when it is the one used.
    expect(() => credentialsFrom({ ca: "/nonexistent/other.crt" }, io)).toThrow(
      expect.objectContaining({ field: "--ca" }),
    );
    const dir = mkdtempSync(join(tmpdir(), "baton-cred-"));
    dirs.push(dir);
    const notPem = join(dir, "ca.crt");
    writeFileSync(notPem, "not a certificate\n");
    expect(() => credentialsFrom({}, ioWith({ BATON_CA: notPem }))).toThrow(
      expect.objectContaining({ field: "BATON_CA" }),
    );
  });

  it("client: a bad endpoint or token is named as given (--endpoints or BATON_ENDPOINTS, --token or BATON_TOKEN), not as the client's option", () => {
    const bad = (options: object, env: Record<string, string>, message: RegExp) =>
      expect(() => clientFrom(options, ioWith(env), 1000)).toThrow(
        expect.objectContaining({
          code: "ERR_INVALID_INPUT",
          message: expect.stringMatching(message),
        }),
      );
    bad(
      {},
      { BATON_ENDPOINTS: "ftp://x" },
      /^BATON_ENDPOINTS: "ftp:\/\/x" is not an http\(s\) URL; correct BATON_ENDPOINTS and run the command again$/,
    );
    bad(
      { endpoints: "ftp://x" },
      { BATON_ENDPOINTS: "http://127.0.0.1:1" },
      /^--endpoints: "ftp:\/\/x" is not/,
    );
    bad(
      { endpoints: "," },
      {},
      /^--endpoints: give at least one node's HTTP address; correct --endpoints/,
    );
    bad(
      { endpoints: "http://127.0.0.1:1" },
      { BATON_TOKEN: "tök" },
      /^BATON_TOKEN: use the printable ASCII token/,
    );
    bad(
      { endpoints: "http://127.0.0.1:1", token: "tök" },
      {},
      /^--token: use the printable ASCII token/,
    );
  });
});
