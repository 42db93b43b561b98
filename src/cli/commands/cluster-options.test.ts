import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { CliIo } from "./cli-io.js";
import { credentialsFrom } from "./cluster-options.js";

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
});
