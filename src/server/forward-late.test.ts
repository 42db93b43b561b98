/**
 * A backup's forward that waited in its send queue when the link to the master failed: the
 * backup answered the write "indeterminate", the client retried it with the same
 * idempotency key through the master, and the partition outlasted the exactly-once window.
 * The queued forward must not reach the master when the link heals: its key forgotten, the
 * write would be applied a second time.
 */

import pino from "pino";
import { describe, expect, it } from "vitest";
import { fastNodeConfig } from "../../harness/memory-node.js";
import { encodeCommand, KvStateMachine, parseKvLimits } from "../kv/index.js";
import type { NodeId, WireMessage } from "../protocol/messages.js";
import { IndeterminateError } from "../shared/errors.js";
import { MemoryStorage, MemoryVolume } from "../storage/memory-storage.js";
import { MemoryNetwork, type MemoryTransport } from "../transport/memory-transport.js";
import { BatonNode } from "./node.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("forwarding across a long partition", () => {
  it("a forward queued when the link failed is not applied again after the partition outlasted the exactly-once window", async () => {
    const logger = pino({ level: "silent" });
    const ids: NodeId[] = [1, 2, 3];
    const network = new MemoryNetwork();
    const limits = parseKvLimits({ idempotencyWindowMs: 2000, logTimeStepMsMax: 500 });
    if (!limits.ok) throw new Error(limits.errors.join("; "));
    const nodes: BatonNode[] = [];
    const machines: KvStateMachine[] = [];
    const transports: MemoryTransport[] = [];
    for (const id of ids) {
      const config = fastNodeConfig(id, ids, { requestTimeoutMs: 1000 });
      const opened = await MemoryStorage.open(new MemoryVolume());
      const transport = network.createTransport(id, ids);
      const machine = new KvStateMachine(limits.limits);
      transports.push(transport);
      machines.push(machine);
      nodes.push(
        await BatonNode.start({ config, opened, transport, stateMachine: machine, logger }),
      );
    }
    try {
      let m = -1;
      for (let i = 0; i < 200 && m < 0; i++) {
        await sleep(20);
        m = nodes.findIndex((node) => node.role === "master");
      }
      expect(m).toBeGreaterThanOrEqual(0);
      const master = nodes[m]!;
      const b = (m + 1) % 3;
      const backup = nodes[b]!;
      const put = (key: string, value: string, idempotencyKey?: string) =>
        encodeCommand({
          type: "put",
          key,
          value: new TextEncoder().encode(value),
          ...(idempotencyKey === undefined ? {} : { idempotencyKey }),
        });
      // The link fails right after the backup queued its forward (a blocked socket, say).
      const transport = transports[b]!;
      const send = transport.send.bind(transport);
      transport.send = (message: WireMessage) => {
        const result = send(message);
        if (message.type === "forward_proposal") network.partition(ids[b]!, ids[m]!);
        return result;
      };
      await expect(backup.propose(put("x", "once", "K"))).rejects.toBeInstanceOf(
        IndeterminateError,
      );
      // The client retries through the master with the same key: applied once, here.
      const retried = await master.propose(put("x", "once", "K"));
      const revision = machines[m]!.get("x")?.revision;
      expect(retried).toMatchObject({ ok: true, revision });
      // Log time passes the window (2 s), so the master forgets the key.
      for (let i = 0; i < 12; i++) {
        await sleep(300);
        await master.propose(put(`y${i}`, "v"));
      }
      network.heal(ids[b]!, ids[m]!);
      await sleep(500);
      await master.propose(put("z", "v"));
      expect(master.role).toBe("master");
      expect(machines[m]!.get("x")?.revision).toBe(revision);
    } finally {
      await Promise.all(nodes.map((node) => node.stop()));
    }
  }, 20_000);
});
