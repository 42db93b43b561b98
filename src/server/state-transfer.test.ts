import pino from "pino";
import { describe, expect, it, vi } from "vitest";
import { AssertionError } from "../shared/assert.js";
import { realClock } from "../shared/clock.js";
import { MemoryStorage } from "../storage/memory-storage.js";
import { MemoryNetwork } from "../transport/memory-transport.js";
import { StateTransfer } from "./state-transfer.js";

/**
 * StateTransfer on its own, for what the runtime tests cannot stage cheaply: the sending
 * side failing while it reads the snapshot.
 */

describe("state transfer", () => {
  it("state transfer: a bug while reading the snapshot to send stops the node (not logged and dropped)", async () => {
    const { storage } = await MemoryStorage.open();
    vi.spyOn(storage, "readSnapshot").mockReturnValue({
      meta: { index: 10, term: 1 },
      dataBytes: 100,
      dataCrc32: 0,
      chunks: async function* () {
        yield* [];
        throw new AssertionError("broken invariant while reading a snapshot");
      },
    });
    const transport = new MemoryNetwork().createTransport(1, [1, 2]);
    await transport.start();
    const fatal = new Promise<AssertionError>((onFatal) => {
      const transfer = new StateTransfer({
        id: 1,
        storage,
        transport,
        logger: pino({ level: "silent" }),
        clock: realClock,
        chunkBytes: 1024,
        stallMs: 10_000,
        term: () => 1,
        onSent: () => {},
        onReceived: () => false,
        onFatal,
      });
      transfer.start(2);
    });
    expect((await fatal).message).toMatch(/broken invariant/);
    await transport.close();
  });
});
