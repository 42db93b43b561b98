/**
 * The core cause of a hang seen with real processes (failover.test.ts, the SIGSTOP test
 * under write load, and `npm run bench:failover -- --faults stop --writer client`): a
 * master that learns of a commit (a majority acknowledged an entry) and of a newer term in
 * the same batch of inputs, before its runtime takes the next Ready, steps down with
 * `commitNews` still set.
 * `flushMaster()` only clears it on a master, so `hasReady()` stays true forever, and the
 * node runtime's `while (replica.hasReady()) handle(replica.ready())` in
 * src/server/node.ts spins on empty Readies: the process stops answering and its memory
 * grows until it dies.
 *
 * Fixed in Replica.becomeBackup; the simulator reproduces it too since a resumed node
 * takes all its waiting inputs before its next Ready (seeds 118, 257, 279).
 */

import { expect, it } from "vitest";
import type { Message } from "../../src/protocol/messages.js";
import { Harness } from "./harness.js";

it("replica: a master that commits and then steps down in the same batch of inputs runs out of Readies", () => {
  const h = new Harness();
  h.addNodes(3);
  h.campaign(1);
  h.stabilize();
  const master = h.node(1);
  const term = master.term;
  h.propose(1, "x");
  // Both backups store the entry; their acknowledgements wait in node 1's inbox.
  h.deliver(2);
  h.deliver(3);
  const acks = h.queue.filter((m) => m.to === 1);
  h.queue = h.queue.filter((m) => m.to !== 1);
  expect(acks.map((m) => m.type)).toEqual(["append_response", "append_response"]);
  // Node 1 reads its inbox in one go, as a process does after a pause: the acks (the
  // entry commits) and then a heartbeat of a newer master.
  for (const ack of acks) master.step(ack);
  const newer: Message = {
    type: "heartbeat",
    incarnation: 0,
    from: 2,
    to: 1,
    term: term + 1,
    commitIndex: 0,
    readContext: 0,
  };
  master.step(newer);
  expect(master.role).toBe("backup");
  let readies = 0;
  while (master.hasReady() && readies < 100) {
    master.ready();
    readies++;
  }
  // A runtime drains until hasReady() is false; it must become false after a Ready or two.
  expect(readies, "Readies handed out before hasReady() turned false").toBeLessThan(5);
});
