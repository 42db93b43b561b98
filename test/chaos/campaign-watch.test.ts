/**
 * The campaign's watch on a one-node stand-in over the real HTTP API and state machine,
 * whose history of changes holds only the last few: a watch from revision 1 finds it
 * compacted (ERR_COMPACTED), reopens from the oldest revision held, notes the gap, and
 * goes on delivering what comes after, so the verdict still checks the rest.
 */

import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { LocalKvNode } from "../../harness/doubles/local-kv-node.js";
import { CampaignWatch, checkWatch } from "../../src/chaos/watch-check.js";
import type { OpRecord } from "../../src/chaos/workload.js";
import { createHttpServer } from "../../src/http/server.js";
import { encodeCommand } from "../../src/kv/index.js";

function put(node: LocalKvNode, key: string, value: string): number {
  const result = node.apply(
    encodeCommand({ type: "put", key, value: new TextEncoder().encode(value) }),
  );
  if (!result.ok) throw new Error(`put ${key} failed: ${result.code}`);
  return result.revision;
}

describe("chaos campaign watch", () => {
  it("watch: a watch whose start was compacted everywhere reopens from the oldest revision held and checks the rest (ERR_COMPACTED, one node)", async () => {
    // Enough held that what the watch still sees outweighs the gap, as in a campaign: a
    // verdict on fewer than half of the acknowledged changes fails.
    const node = new LocalKvNode(1, { watchHistoryCountMax: 8 });
    const server = createHttpServer({ api: node, logger: pino({ level: "silent" }) });
    const history: OpRecord[] = [];
    const write = (value: string): void => {
      const revision = put(node, "k", value);
      history.push({
        id: history.length + 1,
        client: 1,
        key: "k",
        kind: "write",
        value,
        revision,
        nodes: [1],
        invokedAt: 0,
        completedAt: 1,
        outcome: "ok",
      });
    };
    for (let i = 1; i <= 10; i++) write(`v${i}`);
    const watch = new CampaignWatch([(await server.listen("127.0.0.1", 0)).url]);
    try {
      watch.start();
      write("v11");
      const target = history.at(-1)!.revision!;
      await watch.stop(target, 5000);
      expect(watch.endedBy).toBeNull();
      expect(watch.gaps).toHaveLength(1);
      expect(watch.gaps[0]!.from).toBe(1);
      expect(watch.revision).toBe(target);
      const verdict = checkWatch(history, watch.changes, watch.endedBy, target, watch.gaps);
      expect(verdict).toMatchObject({ ok: true });
      expect(verdict.detail).toMatch(/\d+ of 11 acknowledged changes checked; revisions 1-\d+/);
    } finally {
      await server.close();
    }
  });
});
