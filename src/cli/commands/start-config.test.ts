import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  NodeConfigError,
  type NodeConfigInput,
  parseNodeConfig,
} from "../../server/node-config.js";
import {
  loadStartConfig,
  nodeProblemsAsGiven,
  rawSetting,
  readConfigOnce,
} from "./start-config.js";

const peers = [
  { id: 1, address: "127.0.0.1:7101" },
  { id: 2, address: "127.0.0.1:7102" },
];
const base: NodeConfigInput = { id: 1, peers, http: "127.0.0.1:8101" };

/** Configurations the node refuses, one (or two) of its problems each. */
const REFUSED: readonly [string, NodeConfigInput][] = [
  ["heartbeat below the tick", { ...base, tickMs: 10, heartbeatMs: 5 }],
  ["election minimum not above the heartbeat", { ...base, heartbeatMs: 400 }],
  ["election maximum below its minimum", { ...base, electionMsMin: 600, electionMsMax: 300 }],
  ["election minimum of 0", { ...base, electionMsMin: 0 }],
  ["election maximum of 0", { ...base, electionMsMax: 0 }],
  ["advertised peer address not the one in peers", { ...base, advertisePeer: "127.0.0.1:9" }],
  ["advertised peer address a wildcard", { ...base, advertisePeer: "0.0.0.0:7101" }],
  [
    "own entry in peers a wildcard",
    { ...base, peers: [{ id: 1, address: "0.0.0.0:7101" }, peers[1]!] },
  ],
  ["HTTP address a wildcard", { ...base, http: "0.0.0.0:8101" }],
  ["advertised HTTP address without an HTTP API", { ...base, http: null, advertiseHttp: "h:1" }],
  ["id not among the peers", { ...base, id: 3 }],
  ["peer id not a positive integer", { ...base, peers: [...peers, { id: 0, address: "h:3" }] }],
  ["peer listed twice", { ...base, peers: [...peers, { id: 2, address: "h:3" }] }],
  ["peer address malformed", { ...base, peers: [peers[0]!, { id: 2, address: "nope" }] }],
  ["a single node joining", { ...base, peers: [peers[0]!], join: true }],
  ["peer TLS files not all three", { ...base, tlsCa: "ca.pem" }],
  ["HTTPS files not both", { ...base, httpTlsCert: "http.pem" }],
];

/**
 * The CLI rewords the node's problems by their text (start-config.ts): each problem the
 * node says of these configurations must be one it knows, so that a change of a node's
 * wording fails here rather than reach a user in the node's field names.
 */
describe("baton start says each of the node's configuration problems in the user's terms", () => {
  it.each(REFUSED)("%s", (_, input) => {
    let problems: readonly string[] = [];
    try {
      parseNodeConfig(input);
    } catch (error) {
      if (!(error instanceof NodeConfigError)) throw error;
      problems = error.problems;
    }
    expect(problems.length).toBeGreaterThan(0);
    for (const problem of problems) {
      const said = nodeProblemsAsGiven([problem], {}, new Map());
      // Reworded, or left to another problem that says the same of the settings.
      expect(said, problem).not.toContain(problem);
      expect(said.length, problem).toBeLessThanOrEqual(1);
    }
  });
});

describe("the config file of baton start is read once", () => {
  it("a file changed after the first read changes neither the early settings nor the configuration", () => {
    const dir = mkdtempSync(join(tmpdir(), "baton-config-once-"));
    try {
      const file = join(dir, "baton.json");
      const settings = (id: number) =>
        JSON.stringify({
          id,
          peers: "1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103",
          data: join(dir, `node${id}`),
          http: `127.0.0.1:${8100 + id}`,
        });
      writeFileSync(file, settings(1));
      const sources = readConfigOnce({ flags: {}, env: {}, configFile: file });
      // Edited (or replaced by another node's) between --join's first look and the full load.
      writeFileSync(file, settings(2));
      expect(rawSetting(sources, "id")).toBe(1);
      expect(rawSetting(sources, "data")).toBe(join(dir, "node1"));
      const loaded = loadStartConfig(sources);
      expect(loaded.ok && loaded.config.id).toBe(1);
      // Without the read kept, each look reads the file as it is then.
      expect(rawSetting({ flags: {}, env: {}, configFile: file }, "id")).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a file that cannot be read is reported by the full load, as before", () => {
    const sources = readConfigOnce({ flags: {}, env: {}, configFile: "/nonexistent/baton.json" });
    const loaded = loadStartConfig(sources);
    expect(loaded.ok).toBe(false);
    expect(!loaded.ok && loaded.problems).toEqual([
      "/nonexistent/baton.json: cannot read it: ENOENT: no such file or directory, open '/nonexistent/baton.json'",
    ]);
  });
});
