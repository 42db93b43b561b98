/**
 * `baton put`, `get` and `del` run in-process against a fake cluster: what they print, what
 * they send, and their exit codes.
 */

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { captureIo } from "../../harness/doubles/capture-io.js";
import { FakeCluster } from "../../harness/doubles/fake-cluster.js";
import { main } from "../../src/cli/main.js";
import { startUntrustedHttps } from "./untrusted-https.js";

let fake: FakeCluster;
let endpoints: string;
let dir: string;

beforeAll(async () => {
  fake = await FakeCluster.start(3, 2);
  endpoints = fake.urls.join(",");
  dir = await mkdtemp(join(tmpdir(), "baton-cli-"));
});

afterAll(async () => {
  await fake.close();
  await rm(dir, { recursive: true, force: true });
});

beforeEach(() => {
  fake.data.clear();
  fake.requests.length = 0;
});

async function run(args: string[], io = captureIo()) {
  const code = await main([...args, "--endpoints", endpoints], io);
  return { code, out: io.out(), err: io.err(), io };
}

describe("cli kv: put", () => {
  it("cli kv: put stores the argument and prints the revision (exit 0)", async () => {
    const r = await run(["put", "greeting", "hello"]);
    expect(r).toMatchObject({ code: 0, err: "" });
    expect(r.out).toMatch(/^stored "greeting" at revision \d+\n$/);
    expect(new TextDecoder().decode(fake.data.get("greeting")?.value)).toBe("hello");
  });

  it("cli kv: put --json prints the key and revision", async () => {
    const r = await run(["put", "k", "v", "--json"]);
    expect(JSON.parse(r.out)).toEqual({ key: "k", revision: fake.data.get("k")?.revision });
  });

  it("cli kv: put reads the value from --file and from standard input (-)", async () => {
    const path = join(dir, "value.bin");
    await writeFile(path, Uint8Array.from([0, 1, 254, 255]));
    expect((await run(["put", "file", "--file", path])).code).toBe(0);
    expect([...(fake.data.get("file")?.value ?? [])]).toEqual([0, 1, 254, 255]);
    const io = captureIo({ stdin: Buffer.from("from stdin") });
    expect((await run(["put", "piped", "-"], io)).code).toBe(0);
    expect(new TextDecoder().decode(fake.data.get("piped")?.value)).toBe("from stdin");
    expect(io.err()).toBe("");
    // From a terminal it says what it waits for, rather than look hung.
    const typed = captureIo({ stdin: Buffer.from("typed"), stdinTty: true });
    expect((await run(["put", "typed", "-"], typed)).code).toBe(0);
    expect(typed.err()).toBe("baton: reading the value from standard input; end it with Ctrl-D\n");
  });

  it("cli kv: put --if-revision sends If-Match and exits 1 on a mismatch, saying what to do", async () => {
    await run(["put", "lock", "a"]);
    const r = await run(["put", "lock", "b", "--if-revision", "0"]);
    expect(r.code).toBe(1);
    expect(r.out).toBe("");
    expect(r.err).toContain('key "lock" is at revision');
    expect(r.err).toContain("baton get lock");
    expect(fake.requestsTo("PUT", "/v1/kv/").at(-1)?.headers["if-match"]).toBe('"0"');
  });

  it("cli kv: put with no value, or with both a value and --file, is a usage error (exit 2)", async () => {
    const none = await run(["put", "k"]);
    expect(none.code).toBe(2);
    expect(none.err).toContain("give a value");
    const both = await run(["put", "k", "v", "--file", "x"]);
    expect(both.code).toBe(2);
    const missing = await run(["put", "k", "--file", join(dir, "missing")]);
    expect(missing.code).toBe(2);
    expect(missing.err).toContain("cannot read --file");
    expect(fake.requestsTo("PUT", "/v1/kv/")).toHaveLength(0);
  });
});

describe("cli kv: get", () => {
  it("cli kv: get prints the value with a newline, --json the record, --raw the exact bytes", async () => {
    await run(["put", "k", "héllo"]);
    expect(await run(["get", "k"])).toMatchObject({ code: 0, out: "héllo\n" });
    const json = JSON.parse((await run(["get", "k", "--json"])).out);
    expect(json).toEqual({ key: "k", value: "héllo", revision: fake.data.get("k")?.revision });
    const binary = Uint8Array.from([0, 159, 146, 150, 255]);
    await run(["put", "bin", "--file", "-"], captureIo({ stdin: binary }));
    const raw = await run(["get", "bin", "--raw"]);
    expect([...raw.io.outBytes()]).toEqual([...binary]);
  });

  it("cli kv: get --stale asks for the local copy", async () => {
    await run(["put", "k", "v"]);
    expect((await run(["get", "k", "--stale"])).code).toBe(0);
    expect(fake.requestsTo("GET", "/v1/kv/").at(-1)?.url).toBe("/v1/kv/k?stale=true");
  });

  it("cli kv: get of a missing key exits 1 with a message on stderr only", async () => {
    const r = await run(["get", "nope"]);
    expect(r).toMatchObject({ code: 1, out: "", err: 'baton: key "nope" not found\n' });
  });

  it("cli kv: get --raw --json is a usage error (exit 2)", async () => {
    expect((await run(["get", "k", "--raw", "--json"])).code).toBe(2);
  });
});

describe("cli kv: del", () => {
  it("cli kv: del deletes and prints the revision; a missing key exits 1", async () => {
    await run(["put", "k", "v"]);
    const r = await run(["del", "k"]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^deleted "k" at revision \d+\n$/);
    expect(fake.data.has("k")).toBe(false);
    expect((await run(["delete", "k"])).code).toBe(1);
  });

  it("cli kv: del --if-revision exits 1 on a mismatch and keeps the key", async () => {
    await run(["put", "k", "v"]);
    const r = await run(["del", "k", "--if-revision", "999"]);
    expect(r.code).toBe(1);
    expect(fake.data.has("k")).toBe(true);
  });
});

describe("cli kv: usage and availability", () => {
  it("cli kv: --help prints examples and exits 0", async () => {
    for (const command of ["put", "get", "del"]) {
      const io = captureIo();
      expect(await main([command, "--help"], io)).toBe(0);
      expect(io.out()).toContain("Examples:");
      expect(io.out()).toContain(`baton ${command} `);
    }
  });

  it("cli kv: a bad option value or a missing argument exits 2", async () => {
    expect((await run(["get", "k", "--timeout", "soon"])).code).toBe(2);
    const io = captureIo();
    expect(await main(["get"], io)).toBe(2);
    expect(io.err()).toContain("missing required argument");
  });

  it("cli kv: no node answering exits 3 and says how to start a cluster", async () => {
    const io = captureIo();
    const code = await main(["get", "k", "--endpoints", "127.0.0.1:1", "--timeout", "200"], io);
    expect(code).toBe(3);
    expect(io.err()).toBe(
      "baton: no node answered at http://127.0.0.1:1: is the cluster running? start one with `baton demo`, or point --endpoints (or BATON_ENDPOINTS) at it\n",
    );
  });

  it("cli kv: a node whose certificate is not trusted, or that speaks HTTPS to an http:// endpoint, is named as such (exit 3)", async () => {
    const node = await startUntrustedHttps();
    try {
      const { port } = node;
      const untrusted = captureIo();
      const args = ["get", "k", "--timeout", "3000", "--endpoints"];
      expect(await main([...args, `https://127.0.0.1:${port}`], untrusted)).toBe(3);
      expect(untrusted.err()).toMatch(
        /^baton: no node answered at https:\/\/127\.0\.0\.1:\d+: the node's certificate is not one this command trusts \(.*UNABLE_TO_VERIFY_LEAF_SIGNATURE.*\): give the cluster's CA certificate with --ca <file> \(or BATON_CA\)\n$/,
      );
      // Trusted, but reached by a name its certificate does not list.
      const renamed = captureIo();
      const trusted = [...args, `https://localhost:${port}`, "--ca", node.caFile];
      expect(await main(trusted, renamed)).toBe(3);
      expect(renamed.err()).toMatch(
        /the node's certificate does not name the host in its URL \(.*ERR_TLS_CERT_ALTNAME_INVALID.*\): reach it by a name or address its certificate lists/,
      );
      const plain = captureIo();
      expect(await main([...args, `http://127.0.0.1:${port}`], plain)).toBe(3);
      expect(plain.err()).toMatch(
        /the node closed the connection without an answer \(.*\): if the nodes serve HTTPS, give their URLs as https:\/\/… \(with --ca <file> or BATON_CA\)\n$/,
      );
    } finally {
      await node.close();
    }
  });

  it("cli kv: no master exits 3 (every node answers 503)", async () => {
    const leaderless = await FakeCluster.start(1, null, { retryAfter: null });
    try {
      const io = captureIo();
      const args = ["put", "k", "v", "--endpoints", leaderless.urls[0]!, "--timeout", "200"];
      expect(await main(args, io)).toBe(3);
      expect(io.err()).toContain("the cluster has no master");
      expect(io.err()).toContain("baton status");
    } finally {
      await leaderless.close();
    }
  });

  it("cli kv: endpoints come from BATON_ENDPOINTS when --endpoints is absent", async () => {
    await run(["put", "k", "env"]);
    const io = captureIo({ env: { BATON_ENDPOINTS: endpoints } });
    expect(await main(["get", "k"], io)).toBe(0);
    expect(io.out()).toBe("env\n");
  });
});
