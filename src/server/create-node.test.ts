/**
 * `createNode`, as a program that embeds Baton starts it: real TCP on loopback and data
 * directories. It refuses a peer port other machines reach without mutual TLS, and a member
 * whose data was lost comes back through a replacement and `joined`, as `baton start
 * --join` does for the server.
 */

import { rm } from "node:fs/promises";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { freePorts } from "../../harness/processes.js";
import { makeTempDir, removeTempDirs } from "../../test/storage/helpers.js";
import type { NodeId } from "../protocol/messages.js";
import { ConflictError, InvalidInputError } from "../shared/errors.js";
import type { StateMachine } from "../shared/state-machine.js";
import { createNode, drawIncarnation } from "./create-node.js";
import type { BatonNode } from "./node.js";
import { NodeConfigError } from "./node-config.js";

const logger = pino({ level: "silent" });
const TIMING = { tickMs: 5, heartbeatMs: 20, electionMsMin: 150, electionMsMax: 300 };
let running: BatonNode[] = [];

afterEach(async () => {
  await Promise.all(running.map((n) => n.stop()));
  running = [];
  await removeTempDirs();
});

class Counter implements StateMachine<number> {
  value = 0;
  apply(command: Uint8Array): number {
    this.value += command[0] ?? 0;
    return this.value;
  }
  async *snapshot(): AsyncIterable<Uint8Array> {
    yield Uint8Array.of(this.value);
  }
  async restore(chunks: AsyncIterable<Uint8Array>): Promise<void> {
    for await (const chunk of chunks) this.value = chunk[0] ?? 0;
  }
}

async function until<T>(what: string, probe: () => T | null | undefined | false): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const value = probe();
    if (value !== null && value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("createNode", () => {
  it("createNode: without a state machine, or with a bad configuration, rejects with an error a program can test for", async () => {
    const noMachine = createNode({
      id: 1,
      peers: [{ id: 1, address: "127.0.0.1:7101" }],
      dataDir: null,
      logger,
    } as unknown as Parameters<typeof createNode>[0]);
    await expect(noMachine).rejects.toMatchObject({
      code: "ERR_INVALID_INPUT",
      field: "stateMachine",
      message:
        "stateMachine: give an object with apply, snapshot and restore (the StateMachine interface)",
    });
    const badConfig = createNode({
      id: 7,
      peers: [{ id: 1, address: "127.0.0.1:7101" }],
      dataDir: null,
      stateMachine: new Counter(),
      logger,
    });
    await expect(badConfig).rejects.toBeInstanceOf(NodeConfigError);
    await expect(badConfig).rejects.toMatchObject({
      code: "ERR_INVALID_INPUT",
      problems: ["id 7 is not one of the peers (1)"],
    });
  });

  it("createNode: refuses a peer port other machines reach without mutual TLS, unless insecure", async () => {
    const [port] = await freePorts(1);
    const options = {
      id: 1,
      // Every interface: reachable from other machines.
      listen: `0.0.0.0:${port}`,
      peers: [{ id: 1, address: `127.0.0.1:${port}` }],
      dataDir: null,
      stateMachine: new Counter(),
      logger,
    };
    const refused = createNode(options);
    await expect(refused).rejects.toBeInstanceOf(InvalidInputError);
    await expect(refused).rejects.toMatchObject({
      field: "listen",
      message: expect.stringMatching(
        /^listen: node 1 would listen for its peers on 0\.0\.0\.0:\d+, which other machines can reach, without mutual TLS between nodes: give tlsCa, tlsCert and tlsKey/,
      ),
    });
    const node = await createNode({ ...options, insecure: true });
    running.push(node);
    expect(node.id).toBe(1);
  });

  it("timing: createNode: a member that lost its data is replaced and comes back with joined", async () => {
    const ids: NodeId[] = [1, 2, 3];
    const ports = await freePorts(3);
    const peers = ids.map((id, i) => ({ id, address: `127.0.0.1:${ports[i]}` }));
    const dirs = await Promise.all(ids.map(() => makeTempDir("baton-create-node-")));
    const counters = ids.map(() => new Counter());
    const start = (i: number, extra: object = {}) =>
      createNode({
        id: ids[i]!,
        peers,
        dataDir: dirs[i]!,
        stateMachine: counters[i]!,
        logger,
        ...TIMING,
        ...extra,
      });
    const nodes = await Promise.all(ids.map((_, i) => start(i)));
    running.push(...nodes);
    const master = await until("a master", () => nodes.find((n) => n.role === "master"));
    for (let i = 0; i < 5; i++) await master.propose(Uint8Array.of(1));

    // A backup's machine loses its disk: it is stopped and its directory emptied.
    const lost = nodes.findIndex((n) => n !== master);
    const id = ids[lost]!;
    await nodes[lost]!.stop();
    await rm(dirs[lost]!, { recursive: true, force: true });
    // Replaced on the master: removed, added back as a learner under a new incarnation.
    await master.changeMembers({ type: "remove", id });
    const incarnation = drawIncarnation();
    const address = peers[lost]!.address;
    await master.changeMembers({
      type: "add",
      member: { id, incarnation, voter: false, peerAddress: address, httpUrl: "" },
    });
    counters[lost] = new Counter();
    const back = await start(lost, {
      joined: { clusterId: master.clusterId, incarnation, members: master.members().members },
    });
    running.push(back);
    await until("the learner caught up", () => counters[lost]!.value === 5);
    // The learner can apply the entries a moment before the master hears its acknowledgement;
    // an operator retries the refused promotion, as here.
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await master.changeMembers({ type: "promote", id });
        break;
      } catch (error) {
        if (!(error instanceof ConflictError) || Date.now() > deadline) throw error;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    expect(await master.propose(Uint8Array.of(1))).toBe(6);
    await until("the returned member applied it", () => counters[lost]!.value === 6);
    expect(back.members().members.find((m) => m.id === id)).toMatchObject({
      voter: true,
      incarnation,
    });
  });
});
