/**
 * The `baton` program as a whole, in-process: generated help that lists every command,
 * the version from package.json, and exit code 2 for every kind of bad usage.
 */

import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import { captureIo } from "../../harness/doubles/capture-io.js";
import { main } from "../../src/cli/main.js";

const COMMANDS = ["start", "config", "demo", "put", "get", "del", "status", "snapshot", "sim"];

async function run(args: string[]) {
  const io = captureIo();
  const code = await main(args, io);
  return { code, out: io.out(), err: io.err() };
}

describe("cli: help", () => {
  it("cli: --help lists every command with its description (exit 0)", async () => {
    const r = await run(["--help"]);
    expect(r).toMatchObject({ code: 0, err: "" });
    const listed = r.out.split("Commands:\n")[1] ?? "";
    for (const command of COMMANDS) expect(listed).toMatch(new RegExp(`^  ${command}\\b`, "m"));
    expect(r.out).toContain("Examples:");
    expect(r.out).toContain("Exit codes:");
  });

  it("cli: `help` alone prints the same help (exit 0)", async () => {
    const r = await run(["help"]);
    expect(r.code).toBe(0);
    expect(r.out).toBe((await run(["--help"])).out);
  });

  it("cli: `<command> --help` and `help <command>` print that command's help (exit 0)", async () => {
    for (const command of COMMANDS) {
      const flag = await run([command, "--help"]);
      expect(flag).toMatchObject({ code: 0, err: "" });
      expect(flag.out).toMatch(new RegExp(`^Usage: baton ${command}[ |]`));
      const word = await run(["help", command]);
      expect(word).toMatchObject({ code: 0, out: flag.out });
    }
  });

  it("cli: no command at all prints the help on stderr and exits 2", async () => {
    const r = await run([]);
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    expect(r.err).toContain("Usage: baton <command> [options]");
  });
});

describe("cli: version", () => {
  it("cli: --version and -V print package.json's version (exit 0)", async () => {
    const { version } = createRequire(import.meta.url)("../../package.json") as {
      version: string;
    };
    expect(await run(["--version"])).toEqual({ code: 0, out: `${version}\n`, err: "" });
    expect(await run(["-V"])).toEqual({ code: 0, out: `${version}\n`, err: "" });
  });
});

describe("cli: bad usage exits 2", () => {
  it("cli: an unknown command exits 2 and suggests the nearest one", async () => {
    const r = await run(["stauts"]);
    expect(r).toMatchObject({ code: 2, out: "" });
    expect(r.err).toContain("unknown command 'stauts'");
    expect(r.err).toContain("Did you mean status?");
    expect((await run(["help", "nope"])).code).toBe(2);
  });

  it("cli: an unknown subcommand with --help exits 2 and suggests the nearest, rather than printing its group's help", async () => {
    for (const args of [
      ["lease", "keep-alive", "--help"],
      ["lease", "-h", "keep-alive"],
      ["--help", "lease", "keep-alive", "1"],
    ]) {
      const r = await run(args);
      expect(r, args.join(" ")).toMatchObject({ code: 2, out: "" });
      expect(r.err).toContain("unknown command 'keep-alive'");
      expect(r.err).toContain("Did you mean keepalive?");
    }
    const typoGroup = await run(["leas", "--help"]);
    expect(typoGroup).toMatchObject({ code: 2, out: "" });
    expect(typoGroup.err).toContain("Did you mean lease?");
    // Known words still get their help, and a leaf's operands are not subcommands.
    expect((await run(["lease", "keepalive", "--help"])).code).toBe(0);
    expect((await run(["lease", "--help"])).code).toBe(0);
    expect((await run(["help", "lease"])).code).toBe(0);
    expect((await run(["get", "anything", "--help"])).code).toBe(0);
  });

  it("cli: an unknown option exits 2 and suggests the nearest one", async () => {
    const top = await run(["--verison"]);
    expect(top.code).toBe(2);
    expect(top.err).toContain("Did you mean --version?");
    const sub = await run(["get", "k", "--jsno"]);
    expect(sub.code).toBe(2);
    expect(sub.err).toContain("Did you mean --json?");
    expect(sub.err).toContain('run "baton get --help"');
    expect(sub.err).not.toContain('goes after "--"');
    // A value that starts with "-" reads as an unknown short option: say how to pass it.
    const dashed = await run(["put", "k", "-x"]);
    expect(dashed.code).toBe(2);
    expect(dashed.err).toContain('a key or value that starts with "-" goes after "--"');
  });

  it("cli: a nested command's usage error names that command's own help", async () => {
    const certs = await run(["certs", "node", "--ca", "x"]);
    expect(certs.code).toBe(2);
    expect(certs.err).toBe(
      "error: required option '--id <n>' not specified\n" +
        '(run "baton certs node --help" for its options and examples)\n',
    );
    const member = await run(["member", "add", "4"]);
    expect(member.err).toContain('(run "baton member add --help" for its options and examples)');
  });

  it("cli: a client command's bad usage exits 2 before reaching any node", async () => {
    // The endpoint would refuse the connection (exit 3), so 2 shows nothing was tried.
    const endpoints = ["--endpoints", "127.0.0.1:1", "--timeout", "100"];
    expect((await run(["put", ...endpoints])).code).toBe(2);
    expect((await run(["get", "k", "extra", ...endpoints])).code).toBe(2);
    expect((await run(["status", "--watch", "10", ...endpoints])).code).toBe(2);
    expect((await run(["status", "--count", "3", ...endpoints])).code).toBe(2);
    expect((await run(["del", "k", "--if-revision", "-1", ...endpoints])).code).toBe(2);
  });

  it("cli: an option that needs a value followed by another of the command's options is bad usage, unless written --opt=value", async () => {
    const endpoints = ["--endpoints", "127.0.0.1:1", "--timeout", "100"];
    const token = await run(["get", "k", "--token", "--json", ...endpoints]);
    expect(token.code).toBe(2);
    expect(token.err).toContain(
      "option --token needs a value, but the word after it is the option --json",
    );
    expect(token.err).toContain("--token=--json");
    const data = await run(["start", "--id", "1", "--data", "--memory"]);
    expect(data.code).toBe(2);
    expect(data.err).toContain("option --data needs a value");
    // Meant: the value goes through, and the unreachable endpoint is what fails (3).
    expect((await run(["get", "k", "--token=--json", ...endpoints])).code).toBe(3);
    // After "--", words are operands: a key may be spelled like an option.
    expect((await run(["get", ...endpoints, "--", "--token"])).code).toBe(3);
  });

  it("cli: an option that takes a value given twice is bad usage (the second replaced the first), unless it collects its values", async () => {
    const twice = await run([
      "start",
      "--id",
      "1",
      "--peers",
      "1=127.0.0.1:7101",
      "--peers=2=127.0.0.1:7102",
      "--memory",
    ]);
    expect(twice.code).toBe(2);
    expect(twice.err).toContain(
      "option --peers is given twice (--peers, then --peers=2=127.0.0.1:7102): the second would replace the first; give it once, with every item in one comma-separated list",
    );
    // --host collects its values: given twice, both count (the CA is what fails here).
    const hosts = await run([
      "certs",
      "node",
      "--id",
      "1",
      "--ca",
      "/nonexistent-baton-ca",
      "--host",
      "a",
      "--host",
      "b",
      "--out",
      "/nonexistent-baton-out",
    ]);
    expect(hosts.err).not.toContain("given twice");
  });

  it("cli: the simulator's bad usage exits 2", async () => {
    const r = await run(["sim", "--seed", "x"]);
    expect(r.code).toBe(2);
    expect(r.err).toContain("--seed");
  });
});
