/**
 * The settings of `baton start` from flags, BATON_* variables and a config file, through
 * one schema; `baton config check` in-process. Nothing here starts a node: `baton start`
 * is run only with configurations it must refuse before it binds anything.
 */

import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { captureIo } from "../../harness/doubles/capture-io.js";
import { issueCa, issueNodeCert } from "../../src/cli/commands/cert-issuer.js";
import { main } from "../../src/cli/main.js";

const dir = mkdtempSync(join(tmpdir(), "baton-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PEERS = "1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103";

function configFile(name: string, settings: object): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(settings));
  return path;
}

/** `baton start` of a one-node cluster without HTTP on `data`, with `extra` flags. */
function startOneNode(data: string, extra: string[] = []) {
  return run([
    "start",
    "--id",
    "1",
    "--peers",
    "1=127.0.0.1:7101",
    "--data",
    data,
    "--no-http",
    ...extra,
  ]);
}

async function run(args: string[], env: Record<string, string> = {}) {
  const io = captureIo({ env });
  const code = await main(args, io);
  return { code, out: io.out(), err: io.err() };
}

describe("config", () => {
  it("config: check prints the effective configuration, defaults filled, and it reads back the same (exit 0)", async () => {
    const file = configFile("good.json", {
      id: 2,
      http: "127.0.0.1:8102",
      peers: PEERS,
      data: "/var/lib/baton",
    });
    const r = await run(["config", "check", file]);
    expect(r.code).toBe(0);
    const effective = JSON.parse(r.out);
    expect(effective).toMatchObject({
      id: 2,
      listen: "127.0.0.1:7102",
      advertisePeer: "127.0.0.1:7102",
      http: "127.0.0.1:8102",
      data: "/var/lib/baton",
      heartbeatMs: 50,
      electionMs: "300-600",
      logLevel: "info",
    });
    const again = await run(["config", "check", configFile("effective.json", effective)]);
    expect(JSON.parse(again.out)).toEqual(effective);
    expect(r.err).toBe("");
  });

  it("config: start refuses a peer port other machines reach without TLS before it makes the data directory (exit 2)", async () => {
    const data = join(dir, "exposed", "n1");
    const r = await startOneNode(data, ["--listen", "0.0.0.0:7101"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/other machines can reach/);
    expect(existsSync(join(dir, "exposed"))).toBe(false);
  });

  it("config: check notes a node listening on another port than the one its peers dial (exit 0: a port forward may join them)", async () => {
    const file = configFile("ports.json", {
      id: 1,
      listen: "127.0.0.1:21101",
      http: "127.0.0.1:8101",
      peers: PEERS,
      data: "/var/lib/baton",
    });
    const r = await run(["config", "check", file]);
    expect(r.code).toBe(0);
    expect(r.err).toBe(
      "baton config check: note: node 1 listens for peers on port 21101 (listen 127.0.0.1:21101), but its peers dial 127.0.0.1:7101 (its entry in peers): right only if a port forward joins the two; otherwise give them the same port\n",
    );
  });

  it("config: check refuses a peer certificate the peers would refuse (another member's, another cluster's)", async () => {
    const ca = await issueCa({ validDays: 1 });
    const write = (name: string, text: string): string => {
      const path = join(dir, name);
      writeFileSync(path, text);
      return path;
    };
    const tlsCa = write("ca.crt", ca.certPem);
    for (const [memberId, clusterId, problem] of [
      [2, null, /names member 2, not member 1/],
      [1, "billing", /is for cluster "billing", not "orders-prod"/],
    ] as const) {
      const pair = await issueNodeCert(ca, {
        memberId,
        hosts: ["127.0.0.1"],
        clusterId,
        validDays: 1,
      });
      const file = configFile(`tls-${memberId}-${clusterId}.json`, {
        id: 1,
        http: "127.0.0.1:8101",
        peers: PEERS,
        data: "/var/lib/baton",
        clusterId: "orders-prod",
        tlsCa,
        tlsCert: write(`node-${memberId}.crt`, pair.certPem),
        tlsKey: write(`node-${memberId}.key`, pair.keyPem),
      });
      const r = await run(["config", "check", file]);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(problem);
    }
  });

  it("config: check refuses an HTTPS certificate clients would refuse (another host), as start does", async () => {
    const ca = await issueCa({ validDays: 1 });
    const pair = await issueNodeCert(ca, {
      memberId: 1,
      hosts: ["other.example"],
      clusterId: null,
      validDays: 1,
    });
    const cert = join(dir, "https-other.crt");
    const key = join(dir, "https-other.key");
    writeFileSync(cert, pair.certPem);
    writeFileSync(key, pair.keyPem);
    const file = configFile("https-other.json", {
      id: 1,
      peers: PEERS,
      memory: true,
      http: "127.0.0.1:8101",
      httpTlsCert: cert,
      httpTlsKey: key,
    });
    const r = await run(["config", "check", file]);
    // Before, check printed the configuration and exited 0; start then refused it.
    expect(r.code).toBe(1);
    expect(r.err).toContain("the certificate names DNS:other.example, not 127.0.0.1");
  });

  it("config: an unknown key is an error with the nearest setting, every problem at once (exit 1)", async () => {
    const file = configFile("typos.json", {
      id: 1,
      http: "127.0.0.1:8101",
      peers: PEERS,
      dataDir: "/var/lib/baton",
      heartbeatMS: 40,
      tickMs: "fast",
    });
    const r = await run(["config", "check", file]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`${file}: "dataDir" is not a setting (did you mean "data"?)`);
    expect(r.err).toContain(`"heartbeatMS" is not a setting (did you mean "heartbeatMs"?)`);
    expect(r.err).toContain(`${file}: "tickMs": expected a number`);
    expect(r.err).toMatch(/no data directory: give --data <dir>/);
  });

  it("config: variables override the file, flags override variables, and a misspelt BATON_ variable is an error", async () => {
    const file = configFile("env.json", {
      id: 1,
      http: "127.0.0.1:8101",
      peers: PEERS,
      memory: true,
    });
    const fromEnv = await run(["config", "check", file], { BATON_HEARTBEAT_MS: "70" });
    expect(JSON.parse(fromEnv.out).heartbeatMs).toBe(70);
    expect(fromEnv.err).toContain("from the environment: heartbeatMs");
    const typo = await run(["config", "check", file], { BATON_HEARTBAET_MS: "70" });
    expect(typo.code).toBe(1);
    expect(typo.err).toContain(
      "BATON_HEARTBAET_MS is not a setting (did you mean BATON_HEARTBEAT_MS?)",
    );
    // Other tools' BATON_ variables are not settings and are left alone.
    const client = await run(["config", "check", file], { BATON_ENDPOINTS: "http://x:1" });
    expect(client.code).toBe(0);
    const bad = await run(["start", "--config", file, "--heartbeat-ms", "0"], {
      BATON_HEARTBEAT_MS: "70",
    });
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("--heartbeat-ms: must be above 0");
  });

  it("config: the store quota reads from the file and BATON_QUOTA_*, defaults filled, bad values named", async () => {
    const file = configFile("quota.json", {
      id: 1,
      http: "127.0.0.1:8101",
      peers: PEERS,
      memory: true,
      quotaKeys: 500,
    });
    const checked = await run(["config", "check", file], { BATON_QUOTA_BYTES: "4096" });
    expect(checked.code).toBe(0);
    expect(JSON.parse(checked.out)).toMatchObject({ quotaKeys: 500, quotaBytes: 4096 });
    const defaults = await run([
      "config",
      "check",
      configFile("no-quota.json", { id: 1, http: "127.0.0.1:8101", peers: PEERS, memory: true }),
    ]);
    expect(JSON.parse(defaults.out)).toMatchObject({
      quotaKeys: 1_000_000,
      quotaBytes: 268_435_456,
    });
    const bad = await run(["start", "--config", file, "--quota-bytes", "-1"]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("--quota-bytes: must be 0 or more");
  });

  it("config: start --join takes the id from the config file or BATON_ID, as every other setting", async () => {
    // A member that refuses to say who the new node is: the request shows which id was asked.
    const asked: string[] = [];
    const member = createServer((request, response) => {
      asked.push(request.url ?? "");
      response.writeHead(403, { "content-type": "application/json" });
      response.end(JSON.stringify({ error: "the token has role read", code: "ERR_FORBIDDEN" }));
    });
    await new Promise<void>((resolve) => member.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(member.address() as AddressInfo).port}`;
    try {
      const file = configFile("join.json", { id: 4, http: "127.0.0.1:8104", memory: true });
      const fromFile = await run(["start", "--config", file, "--join", url]);
      expect(fromFile.code).toBe(1);
      expect(fromFile.err).toContain("the token has role read");
      const fromEnv = await run(["start", "--join", url, "--memory"], { BATON_ID: "5" });
      expect(fromEnv.code).toBe(1);
      // (The client asks for the master's status first.)
      // No id, or one that is not a positive integer: bad usage, and nothing is asked.
      const noId = await run(["start", "--join", url, "--memory"]);
      expect(noId.code).toBe(2);
      expect(noId.err).toContain("--join needs this node's id, a positive integer: give --id <n>");
      const badId = await run(["start", "--join", url, "--memory"], { BATON_ID: "four" });
      expect(badId.code).toBe(2);
      expect(badId.err).toContain('not "four"');
      expect(asked.filter((path) => path.includes("/join"))).toEqual([
        "/v1/members/4/join",
        "/v1/members/5/join",
      ]);
      // A --token-file that cannot be read is bad usage (2), as for every other command.
      const noFile = await run(
        ["start", "--join", url, "--memory", "--token-file", join(dir, "no-such-token")],
        { BATON_ID: "6" },
      );
      expect(noFile.code).toBe(2);
      expect(noFile.err).toContain("no-such-token");
    } finally {
      await new Promise((resolve) => member.close(resolve));
    }
  });

  it("config: start --join names the CA file it cannot read as given: --tls-ca, BATON_TLS_CA, the file's key or BATON_CA (exit 2)", async () => {
    const missing = join(dir, "no-such-ca.crt");
    const join4 = ["start", "--join", "http://127.0.0.1:1", "--id", "4", "--memory", "--no-http"];
    const cannotRead = (given: string) => `baton start: ${given}: cannot read ${missing}: ENOENT`;
    const flag = await run([...join4, "--tls-ca", missing]);
    expect(flag.code).toBe(2);
    expect(flag.err).toContain(cannotRead("--tls-ca"));
    const env = await run(join4, { BATON_TLS_CA: missing });
    expect(env.code).toBe(2);
    expect(env.err).toContain(cannotRead("BATON_TLS_CA"));
    const file = configFile("join-ca.json", { tlsCa: missing });
    const fromFile = await run([...join4, "--config", file]);
    expect(fromFile.code).toBe(2);
    expect(fromFile.err).toContain(cannotRead(`${file}: "tlsCa"`));
    const clientCa = await run(join4, { BATON_CA: missing });
    expect(clientCa.code).toBe(2);
    expect(clientCa.err).toContain(cannotRead("BATON_CA"));
  });

  it("config: start needs --data or --memory, and --http or --no-http (exit 2)", async () => {
    const r = await run(["start", "--id", "1", "--peers", PEERS]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/no HTTP API address: give --http <host:port>.*or --no-http/);
    expect(r.err).toMatch(/no data directory: give --data <dir>.*or --memory/);
    const both = await run([
      "start",
      "--id",
      "1",
      "--peers",
      PEERS,
      "--data",
      dir,
      "--memory",
      "--no-http",
    ]);
    expect(both.err).toContain("data and memory both given");
    expect(both.err).not.toContain("no HTTP API address");
  });

  it("config: a wildcard address is never advertised: --advertise-http is required with --http 0.0.0.0", async () => {
    const base = { id: 1, peers: PEERS, memory: true, insecure: true };
    const wildcard = await run([
      "config",
      "check",
      configFile("w.json", { ...base, http: "0.0.0.0:8101" }),
    ]);
    expect(wildcard.code).toBe(1);
    // Named as the file gives the settings: its key, and the key to add.
    expect(wildcard.err).toContain(
      `${join(dir, "w.json")}: "http": 0.0.0.0:8101 is a wildcard address, which clients and members cannot reach: give "advertiseHttp": "<host:port>", the address they should use`,
    );
    const flagged = await run([
      "start",
      "--id",
      "1",
      "--peers",
      PEERS,
      "--memory",
      "--insecure",
      "--http",
      "0.0.0.0:8101",
    ]);
    expect(flagged.err).toContain(
      "--http: 0.0.0.0:8101 is a wildcard address, which clients and members cannot reach: give --advertise-http <host:port>",
    );
    const advertised = await run([
      "config",
      "check",
      configFile("a.json", { ...base, http: "0.0.0.0:8101", advertiseHttp: "10.0.0.1:8101" }),
    ]);
    expect(advertised.code).toBe(0);
    expect(JSON.parse(advertised.out).advertiseHttp).toBe("10.0.0.1:8101");
    const peerWildcard = await run([
      "config",
      "check",
      configFile("p.json", { ...base, http: false, peers: "1=0.0.0.0:7101,2=127.0.0.1:7102" }),
    ]);
    expect(peerWildcard.err).toContain(
      `${join(dir, "p.json")}: "peers": node 1 is listed at the wildcard address 0.0.0.0:7101, which members cannot dial: list its routable address (bind every interface with "listen" instead)`,
    );
  });

  it("config: a malformed member list or a port no one can dial is named, not a crash (exit 2)", async () => {
    const start = (peers: string, ...more: string[]) =>
      run([
        "start",
        "--id",
        "1",
        "--peers",
        peers,
        "--memory",
        "--http",
        "127.0.0.1:8101",
        ...more,
      ]);
    const malformed = await start("1=127.0.0.1:7101,x");
    expect(malformed.code).toBe(2);
    expect(malformed.err).toContain('--peers: "x" is not of the form <id>=<host>:<port>');
    // A bad value is not a missing one.
    expect(malformed.err).not.toContain("no members");
    const portZero = await start("1=127.0.0.1:7101,2=127.0.0.1:0", "--advertise-peer", "[::1]:0");
    expect(portZero.code).toBe(2);
    expect(portZero.err).toContain(
      "--peers: node 2 is listed at 127.0.0.1:0: port 0 cannot be dialled; give the port node 2 listens on",
    );
    expect(portZero.err).toContain('--advertise-peer: "[::1]:0" has port 0');
    const fromFile = await run([
      "config",
      "check",
      configFile("zero.json", { id: 1, peers: "1=127.0.0.1:0", memory: true, http: false }),
    ]);
    expect(fromFile.code).toBe(1);
    expect(fromFile.err).toMatch(/zero\.json: "peers": node 1 is listed at 127\.0\.0\.1:0/);
    // Listening on any free port stays possible.
    const listenAny = await run([
      "config",
      "check",
      configFile("any.json", {
        id: 1,
        peers: "1=127.0.0.1:7101",
        listen: "127.0.0.1:0",
        memory: true,
        http: "127.0.0.1:0",
      }),
    ]);
    expect(listenAny.code, listenAny.err).toBe(0);
  });

  it("config: start refuses, before it binds anything, a --data that is a file and TLS files it cannot read (exit 2)", async () => {
    const file = configFile("not-a-dir", {});
    const r = await startOneNode(file, [
      "--tls-ca",
      join(dir, "missing-ca.crt"),
      "--tls-cert",
      join(dir, "missing.crt"),
      "--tls-key",
      join(dir, "missing.key"),
    ]);
    expect(r.code).toBe(2);
    // Named as given: the flags here, not the file keys.
    expect(r.err).toContain(`--data: ${file} is a file, not a directory`);
    expect(r.err).toContain(`--tls-ca: cannot read ${join(dir, "missing-ca.crt")}: ENOENT`);
  });

  it("config: check and start refuse a tokens file the node could not load, and a --data they cannot look at", async () => {
    const tokens = configFile("bad-tokens.json", { tokens: 5 });
    const loop = join(dir, "loop");
    symlinkSync(loop, loop);
    const file = configFile("with-bad-tokens.json", {
      id: 1,
      peers: "1=127.0.0.1:7101",
      data: join(loop, "d"),
      http: "127.0.0.1:8101",
      tokens,
    });
    const checked = await run(["config", "check", file]);
    expect(checked.code).toBe(1);
    // Before, check passed a file any node refused, and an ELOOP (or EACCES) was a stack trace.
    expect(checked.err).toContain(`${file}: "tokens": ${tokens}: expected {"tokens"`);
    expect(checked.err).toContain(`${file}: "data": cannot look at ${join(loop, "d")}: ELOOP`);
    const started = await startOneNode(join(dir, "tokens-start"), ["--tokens", tokens]);
    expect(started.code).toBe(2);
    expect(started.err).toContain(`--tokens: ${tokens}: expected {"tokens"`);
  });

  it("start: a --data that cannot be created is exit 2 naming the level refused, at once (under /proc, or below a file)", async () => {
    const file = configFile("in-the-way", {});
    for (const [data, named] of [
      ["/proc/baton-nope/data", "cannot create /proc/baton-nope: ENOENT"],
      [join(file, "data"), `${file} is a file, not a directory`],
    ] as const) {
      const r = await startOneNode(data);
      expect(r.code).toBe(2);
      expect(r.err).toContain(`--data: ${named}`);
    }
  });

  it("config: a file that is not JSON, or not an object, is named in the error", async () => {
    const path = join(dir, "broken.json");
    writeFileSync(path, "{ id: 1 ");
    const r = await run(["config", "check", path]);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`${path}: cannot read it as JSON`);
    const list = await run(["config", "check", configFile("list.json", [1, 2])]);
    expect(list.err).toContain("expected a JSON object of settings");
  });

  it("config: a file that cannot be read or parsed is the only problem reported, not the settings it would have given", async () => {
    const missing = join(dir, "missing.json");
    const r = await run(["config", "check", missing]);
    expect(r).toMatchObject({
      code: 1,
      err: `baton config check: ${missing}: 1 problem(s):\n  - ${missing}: cannot read it: ENOENT: no such file or directory, open '${missing}'\n`,
    });
    const broken = join(dir, "broken-too.json");
    writeFileSync(broken, "{ id: 1 ");
    const parsed = await run(["config", "check", broken]);
    expect(parsed.err).toMatch(
      /: 1 problem\(s\):\n {2}- .*broken-too\.json: cannot read it as JSON: [^\n]*\n$/,
    );
    const list = await run(["config", "check", configFile("list-too.json", [1, 2])]);
    expect(list.err).toBe(
      `baton config check: ${join(dir, "list-too.json")}: 1 problem(s):\n  - ${join(dir, "list-too.json")}: expected a JSON object of settings, such as {"id": 1, ...}\n`,
    );
  });

  it("config: the same setting reads the same from a flag, a variable and the file (--no-http, a peer list, an election range)", async () => {
    const file = configFile("forms.json", {
      id: 3,
      memory: true,
      http: false,
      peers: [
        { id: 1, address: "127.0.0.1:7101" },
        { id: 2, address: "127.0.0.1:7102" },
        { id: 3, address: "127.0.0.1:7103" },
      ],
      electionMs: "400",
    });
    const fromFile = JSON.parse((await run(["config", "check", file])).out);
    expect(fromFile).toMatchObject({
      http: false,
      peers: PEERS,
      electionMs: "400-800",
      memory: true,
    });
    const fromEnv = await run(
      ["config", "check", configFile("min.json", { id: 3, memory: true })],
      {
        BATON_HTTP: "false",
        BATON_PEERS: PEERS,
        BATON_ELECTION_MS: "400",
        BATON_JOIN: "yes",
      },
    );
    expect(JSON.parse(fromEnv.out)).toMatchObject({ ...fromFile, join: true });
    const flags = await run([
      "start",
      "--id",
      "3",
      "--memory",
      "--no-http",
      "--peers",
      PEERS,
      "--join",
      "--election-ms",
      "x",
    ]);
    expect(flags.code).toBe(2);
    expect(flags.err).toContain('--election-ms: expected "<min>-<max>" milliseconds');
  });

  it("config: a setting that does not fit another is named as given (flag, variable or file key), never as the node's internal field", async () => {
    const node = ["--id", "1", "--peers", "1=127.0.0.1:7101", "--memory", "--no-http"];
    const start = (...more: string[]) => run(["start", ...node, ...more]);
    const reversed = await start("--election-ms", "600-300");
    expect(reversed.code).toBe(2);
    expect(reversed.err).not.toMatch(/electionMsM(in|ax)/);
    expect(reversed.err).toContain(
      '--election-ms: 600-300 has its maximum below its minimum: give "<min>-<max>" with the smaller first, e.g. "300-600"',
    );
    const zero = await start("--election-ms", "0-300");
    expect(zero.err).toContain(
      '--election-ms: 0-300 has a minimum of 0: give "<min>-<max>" above 0, e.g. "300-600"',
    );
    expect(zero.err).not.toMatch(/electionMs|heartbeatMs/);
    // The other setting at its default is named in the form the user used for the first.
    const slowTick = await start("--tick-ms", "80");
    expect(slowTick.err).toContain(
      "the heartbeat (50 ms, --heartbeat-ms, by default) must be at least the tick (80 ms, --tick-ms): give a longer heartbeat or a shorter tick",
    );
    const fromEnv = await run(["start", ...node], { BATON_HEARTBEAT_MS: "400" });
    expect(fromEnv.err).toContain(
      "the election timeout's minimum (300 ms, BATON_ELECTION_MS, by default) must be above the heartbeat (400 ms, BATON_HEARTBEAT_MS): give a longer election timeout or a shorter heartbeat",
    );
    const file = configFile("cross.json", {
      id: 1,
      peers: "1=127.0.0.1:7101",
      memory: true,
      http: false,
      heartbeatMs: 400,
      advertisePeer: "127.0.0.1:7999",
    });
    const fromFile = await run(["config", "check", file]);
    expect(fromFile.code).toBe(1);
    expect(fromFile.err).toContain(
      `the election timeout's minimum (300 ms, "electionMs" in ${file}, by default) must be above the heartbeat (400 ms, "heartbeatMs" in ${file})`,
    );
    expect(fromFile.err).toContain(
      `${file}: "advertisePeer": 127.0.0.1:7999 differs from node 1's address in "peers" in ${file} (127.0.0.1:7101): members dial the address in "peers", so make them the same`,
    );
    const flagged = await start("--advertise-peer", "127.0.0.1:7999");
    expect(flagged.err).toContain(
      "--advertise-peer: 127.0.0.1:7999 differs from node 1's address in --peers (127.0.0.1:7101)",
    );
    for (const r of [slowTick, fromEnv, fromFile, flagged]) {
      expect(r.err).not.toMatch(/\b(heartbeatMs|tickMs|electionMsMin|advertisePeer) /);
    }
    const notListed = await run(["start", "--id", "4", ...node.slice(2)]);
    expect(notListed.err).toContain("--id: 4 is not one of the members in --peers (1)");
  });
});
