import { describe, expect, it } from "vitest";
import {
  NodeConfigError,
  type NodeConfigInput,
  parseNodeConfig,
} from "../../server/node-config.js";
import { nodeProblemsAsGiven } from "./start-config.js";

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
