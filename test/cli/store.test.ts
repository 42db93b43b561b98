/**
 * `baton list`, `delete-prefix`, `txn`, `lease …`, `put --lease` and `watch` run in-process
 * against the real HTTP API and state machine on a one-node stand-in: what they print and
 * their exit codes.
 */

import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { captureIo } from "../../harness/doubles/capture-io.js";
import { FakeCluster, refuseToken } from "../../harness/doubles/fake-cluster.js";
import { LocalKvNode } from "../../harness/doubles/local-kv-node.js";
import { main } from "../../src/cli/main.js";
import { createHttpServer, type HttpServer } from "../../src/http/server.js";

let server: HttpServer;
let endpoint: string;
let node: LocalKvNode;

beforeAll(async () => {
  node = new LocalKvNode(1);
  server = createHttpServer({ api: node, logger: pino({ level: "silent" }) });
  endpoint = (await server.listen("127.0.0.1", 0)).url;
});

afterAll(() => server.close());

async function run(args: string[], stdin?: string) {
  const io = captureIo(stdin === undefined ? {} : { stdin: new TextEncoder().encode(stdin) });
  const code = await main([...args, "--endpoints", endpoint], io);
  return { code, out: io.out(), err: io.err() };
}

describe("cli store", () => {
  it("cli store: list, delete-prefix and txn print for people and for scripts", async () => {
    await run(["put", "app/a", "1"]);
    await run(["put", "app/b", "2"]);
    await run(["put", "zz", "3"]);
    expect(await run(["list", "app/"])).toEqual({ code: 0, out: "app/a\t1\napp/b\t2\n", err: "" });
    const json = await run(["list", "app/", "--keys-only", "--json"]);
    expect(JSON.parse(json.out)).toEqual([
      { key: "app/a", revision: 1 },
      { key: "app/b", revision: 2 },
    ]);
    const txn = JSON.stringify({
      compare: [{ key: "zz", value: "3" }],
      success: [{ put: { key: "app/c", value: "4" } }],
    });
    expect(await run(["txn", "--json"], txn)).toMatchObject({
      code: 0,
      out: '{"succeeded":true,"revision":4}\n',
    });
    expect((await run(["txn"], txn.replace('"3"', '"9"'))).code).toBe(1);
    expect((await run(["txn"], "{not json")).code).toBe(2);
    const bad = await run(["txn"], '{"compare":[{"key":"a"}]}');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/compare\[0\]/);
    expect(await run(["delete-prefix", "app/", "--json"])).toMatchObject({
      code: 0,
      out: '{"prefix":"app/","revision":6,"deleted":3}\n',
    });
  });

  it("cli store: lease grant, put --lease, keepalive and revoke", async () => {
    const granted = JSON.parse((await run(["lease", "grant", "30", "--json"])).out);
    expect(granted.ttlSeconds).toBe(30);
    expect((await run(["put", "svc/x", "up", "--lease", String(granted.id)])).code).toBe(0);
    const kept = await run(["lease", "keepalive", String(granted.id)]);
    expect(kept.out).toBe(`lease ${granted.id} kept alive for 30 s\n`);
    expect((await run(["lease", "revoke", String(granted.id)])).code).toBe(0);
    expect((await run(["get", "svc/x"])).code).toBe(1);
    const gone = await run(["lease", "keepalive", String(granted.id)]);
    expect(gone.code).toBe(1);
    expect(gone.err).toMatch(/baton lease grant/);
    expect((await run(["lease", "revoke", String(granted.id)])).code).toBe(1);
  });

  it("cli store: watch prints changes from a revision and stops after --count", async () => {
    await run(["put", "w/1", "a"]);
    const from = node.stateMachine.revision;
    await run(["del", "w/1"]);
    const watched = await run(["watch", "w/", "--from-revision", String(from), "--count", "2"]);
    expect(watched).toEqual({
      code: 0,
      out: `${from} put w/1 a\n${from + 1} delete w/1\n`,
      err: "",
    });
    const json = await run([
      "watch",
      "w/",
      "--from-revision",
      String(from),
      "--count",
      "1",
      "--json",
    ]);
    expect(JSON.parse(json.out)).toEqual({ type: "put", key: "w/1", value: "a", revision: from });
  });
  it("cli store: watch prints a value with a newline or a space as one shell word on one line", async () => {
    const from = node.stateMachine.revision + 1;
    await run(["put", "v/1", "a\nb"]);
    await run(["put", "v/2", "it's here"]);
    const watched = await run(["watch", "v/", "--from-revision", String(from), "--count", "2"]);
    expect(watched.out).toBe(`${from} put v/1 $'a\\nb'\n${from + 1} put v/2 'it'\\''s here'\n`);
    // list: "key<TAB>value", the value quoted only when it would break the line.
    expect((await run(["list", "v/"])).out).toBe("v/1\t$'a\\nb'\nv/2\tit's here\n");
  });

  it("cli store: a watch whose token is refused exits 4, like every other command", async () => {
    const fake = await FakeCluster.start(1, 1);
    try {
      fake.nodes[0]!.intercept = refuseToken;
      const io = captureIo();
      // Before, exit 1 and "is --endpoints pointing at Baton nodes?".
      expect(await main(["watch", "x", "--endpoints", fake.urls[0]!], io)).toBe(4);
      expect(io.err()).toContain("the token is not one this node knows");
      expect(io.err()).not.toContain("pointing at Baton nodes");
    } finally {
      await fake.close();
    }
  });

  it("cli store: a watch no node opens within --timeout exits 3 and says so", async () => {
    const io = captureIo();
    const args = ["watch", "x", "--endpoints", "127.0.0.1:1", "--timeout", "300"];
    // Before, it tried again and again, printing nothing, for ever.
    expect(await main(args, io)).toBe(3);
    expect(io.err()).toMatch(/no node opened the watch in 300 ms/);
  });

  it("cli store: txn reads standard input whole: a character split between two reads arrives intact", async () => {
    const txn = new TextEncoder().encode(
      JSON.stringify({ success: [{ put: { key: "split", value: "café 😀" } }] }),
    );
    const cut = txn.indexOf(0xc3) + 1; // inside é's two bytes
    const io = captureIo();
    (io as { stdin: AsyncIterable<Uint8Array> }).stdin = (async function* () {
      yield txn.subarray(0, cut);
      yield txn.subarray(cut);
    })();
    expect(await main(["txn", "--endpoints", endpoint], io)).toBe(0);
    expect((await run(["get", "split"])).out).toBe("café 😀\n");
  });

  it("cli store: a transaction that is JSON but not an object is bad usage (exit 2), never an exit code of its own", async () => {
    for (const text of ["0", "1", "3", "null", "[]", '"txn"']) {
      const r = await run(["txn"], text);
      // Before, `0` exited 0 having asked nothing, and `1` exited 1 ("did not hold").
      expect(r.code, text).toBe(2);
      expect(r.err).toContain("the transaction must be a JSON object");
    }
  });
});
