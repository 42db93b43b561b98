import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import pino from "pino";
import { describe, expect, it, vi } from "vitest";
import { encodeConfiguration } from "../core/configuration.js";
import { AssertionError } from "../shared/assert.js";
import { realClock } from "../shared/clock.js";
import type { IncrementalRestore } from "../shared/state-machine.js";
import { DiskStorage } from "../storage/disk-storage.js";
import { SnapshotCorruptError } from "../storage/errors.js";
import { MemoryStorage } from "../storage/memory-storage.js";
import { snapshotFileName } from "../storage/snapshot-store.js";
import { MemoryNetwork } from "../transport/memory-transport.js";
import { StateTransfer, type StateTransferDeps } from "./state-transfer.js";

/**
 * StateTransfer on its own, for what the runtime tests cannot stage cheaply: the sending
 * side failing while it reads the snapshot, and the bytes a restore reads as they arrive.
 */

/**
 * A StateTransfer with what every test here shares (no configuration or cluster id, the
 * real clock, 1 KiB chunks, a 10 s stall, term 1, a silent log, callbacks that do nothing
 * and a bug thrown at once); each test names what it is about.
 */
function transferWith(
  deps: Pick<StateTransferDeps, "id" | "storage" | "transport"> & Partial<StateTransferDeps>,
): StateTransfer {
  return new StateTransfer({
    logger: pino({ level: "silent" }),
    configAt: () => [],
    clusterId: () => null,
    clock: realClock,
    chunkBytes: 1024,
    stallMs: 10_000,
    term: () => 1,
    onSent: () => {},
    onChecksumFailed: () => {},
    onReceived: () => false,
    onFatal: (error) => {
      throw error;
    },
    ...deps,
  });
}

/** Nodes 1 (the master) and 2 (the backup), linked on one memory network and started. */
async function twoNodes() {
  const network = new MemoryNetwork();
  const master = network.createTransport(1, [1, 2]);
  const backup = network.createTransport(2, [1, 2]);
  await master.start();
  await backup.start();
  return { master, backup };
}

/**
 * A backup's StateTransfer fed chunks by hand, with a restore that records its bytes;
 * `acks` has the answers it sent node 1.
 */
async function receivingBackup(failPushAt: number | null = null, stallMs = 10_000) {
  const { storage } = await MemoryStorage.open();
  const { master, backup } = await twoNodes();
  const acks: number[] = [];
  master.onMessage((m) => {
    if (m.type === "snapshot_ack") acks.push(m.nextOffset);
  });
  const pushed: number[] = [];
  const restore: IncrementalRestore = {
    push: (chunk) => {
      if (failPushAt !== null && pushed.length + chunk.length > failPushAt) {
        throw new Error("not a snapshot");
      }
      pushed.push(...chunk);
    },
    install: () => {},
  };
  const warnings: string[] = [];
  const logger = pino({ level: "warn" }, { write: (line: string) => warnings.push(line) });
  const transfer = transferWith({
    id: 2,
    storage,
    transport: backup,
    logger,
    onReceived: () => true,
    beginRestore: () => restore,
    stallMs,
  });
  const data = Uint8Array.from({ length: 20 }, (_, i) => i + 1);
  const chunk = (offset: number, end: number) =>
    transfer.onMessage({
      type: "snapshot_chunk",
      from: 1,
      to: 2,
      term: 1,
      snapshotIndex: 7,
      snapshotTerm: 1,
      offset,
      totalBytes: data.length,
      crc32: crc32(data),
      data: data.slice(offset, end),
      config: encodeConfiguration([]),
    });
  const close = async () => {
    await transfer.close();
    await backup.close();
    await master.close();
  };
  return { transfer, restore, pushed, data, chunk, warnings, acks, close };
}

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
    const fatal = new Promise<Error>((onFatal) => {
      const transfer = transferWith({ id: 1, storage, transport, onFatal });
      transfer.start(2);
    });
    expect((await fatal).message).toMatch(/broken invariant/);
    await transport.close();
  });

  /**
   * A backup receiving a 20-byte snapshot (index 7) from node 1 in chunks the test sends
   * in any term; `received` has the terms its core was told, `acks` the answers' offsets.
   */
  async function backupInTerms(storageWrite?: (real: () => Promise<number>) => Promise<number>) {
    const { storage } = await MemoryStorage.open();
    let writes = 0;
    if (storageWrite !== undefined) {
      const receive = storage.receiveSnapshot.bind(storage);
      vi.spyOn(storage, "receiveSnapshot").mockImplementation(async (meta) => {
        const receiver = await receive(meta);
        const write = receiver.write.bind(receiver);
        receiver.write = (offset, chunk) => {
          writes++;
          return storageWrite(() => write(offset, chunk));
        };
        return receiver;
      });
    }
    const { master, backup } = await twoNodes();
    const acks: number[] = [];
    master.onMessage((m) => {
      if (m.type === "snapshot_ack") acks.push(m.nextOffset);
    });
    const received: number[] = [];
    let term = 1;
    const transfer = transferWith({
      id: 2,
      storage,
      transport: backup,
      term: () => term,
      onReceived: (_from, t) => {
        received.push(t);
        return true;
      },
    });
    const data = Uint8Array.from({ length: 20 }, (_, i) => i + 1);
    const chunk = (offset: number, end: number, inTerm = term, bytes = data) =>
      transfer.onMessage({
        type: "snapshot_chunk",
        from: 1,
        to: 2,
        term: inTerm,
        snapshotIndex: 7,
        snapshotTerm: 1,
        offset,
        totalBytes: bytes.length,
        crc32: crc32(bytes),
        data: bytes.slice(offset, end),
        config: encodeConfiguration([]),
      });
    const close = async () => {
      await transfer.close();
      await backup.close();
      await master.close();
    };
    return {
      acks,
      received,
      chunk,
      setTerm: (t: number) => {
        term = t;
      },
      writes: () => writes,
      close,
    };
  }

  it("state transfer: a session resumed by the same master in a later term tells the core that term (the first chunk's was refused as stale, and all sent again)", async () => {
    const b = await backupInTerms();
    b.chunk(0, 10);
    await vi.waitFor(() => expect(b.acks).toEqual([10]));
    // The master lost the role and won it back in term 3; it sends the snapshot again.
    b.setTerm(3);
    b.chunk(0, 10);
    b.chunk(10, 20);
    await vi.waitFor(() => expect(b.received).toEqual([3]));
    await b.close();
  });

  it("state transfer: copies of chunks queued behind a stalled write keep no bytes and are answered once the write is done", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let first = true;
    const b = await backupInTerms(async (write) => {
      if (first) {
        first = false;
        await gate;
      }
      return write();
    });
    b.chunk(0, 10);
    // The master resends its window again and again while the disk stalls.
    for (let i = 0; i < 1000; i++) b.chunk(0, 10);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(b.writes()).toBe(1);
    release();
    await vi.waitFor(() => expect(b.acks).toEqual([10, 10]));
    expect(b.writes()).toBe(1);
    b.chunk(10, 20);
    await vi.waitFor(() => expect(b.received).toEqual([1]));
    await b.close();
  });

  it("state transfer: a snapshot of the same index with other bytes (another size) begins a new session, not the old one's", async () => {
    const b = await backupInTerms();
    b.chunk(0, 10);
    await vi.waitFor(() => expect(b.acks).toEqual([10]));
    const other = Uint8Array.from({ length: 16 }, (_, i) => 100 + i);
    b.chunk(0, 8, 1, other);
    await vi.waitFor(() => expect(b.acks).toEqual([10, 8]));
    b.chunk(8, 16, 1, other);
    await vi.waitFor(() => expect(b.received).toEqual([1]));
    await b.close();
  });

  it("state transfer: a snapshot the backup already holds still gets its core to answer the master (a lost answer to an install no longer loops the master on transfers)", async () => {
    const { storage } = await MemoryStorage.open();
    vi.spyOn(storage, "snapshot").mockReturnValue({ index: 92, term: 3 });
    const { master, backup } = await twoNodes();
    const acks: unknown[] = [];
    master.onMessage((m) => acks.push(m));
    const received: unknown[] = [];
    transferWith({
      id: 2,
      storage,
      transport: backup,
      term: () => 4,
      onReceived: (from, term, meta) => {
        received.push({ from, term, meta });
        return false;
      },
      onFatal: () => {},
    }).onMessage({
      type: "snapshot_chunk",
      from: 1,
      to: 2,
      term: 4,
      snapshotIndex: 92,
      snapshotTerm: 3,
      offset: 0,
      totalBytes: 10,
      crc32: 0,
      data: new Uint8Array(10),
      config: encodeConfiguration([]),
    });
    // The core decides (it answers the master with its commit index); the master is told
    // the transfer was not needed.
    expect(received).toEqual([{ from: 1, term: 4, meta: { index: 92, term: 3 } }]);
    await vi.waitFor(() => expect(acks).toMatchObject([{ type: "snapshot_ack", accepted: false }]));
    await master.close();
    await backup.close();
  });

  /**
   * A backup whose core adopts a snapshot only beyond its commit index, which the adoption
   * raises, as the real one does; `acks` has the answers it sent node 1, `received` the
   * snapshots its core was asked about. `gateFinish` holds each install's `finish` (making
   * it durable, after which storage has it) until `releaseFinish`; `failFinish` fails it.
   */
  async function installingBackup() {
    const { storage } = await MemoryStorage.open();
    let releaseFinish: () => void = () => {};
    let gateFinish = false;
    let failFinish = false;
    const receive = storage.receiveSnapshot.bind(storage);
    const receiving = vi.spyOn(storage, "receiveSnapshot").mockImplementation(async (meta) => {
      const receiver = await receive(meta);
      const finish = receiver.finish.bind(receiver);
      receiver.finish = async () => {
        if (failFinish) throw new Error("the disk refused");
        if (gateFinish) await new Promise<void>((resolve) => (releaseFinish = resolve));
        return finish();
      };
      return receiver;
    });
    const { master, backup } = await twoNodes();
    const acks: { nextOffset: number; done: boolean; accepted: boolean }[] = [];
    master.onMessage((m) => {
      if (m.type === "snapshot_ack")
        acks.push({ nextOffset: m.nextOffset, done: m.done, accepted: m.accepted });
    });
    const received: number[] = [];
    let commitIndex = 0;
    const transfer = transferWith({
      id: 2,
      storage,
      transport: backup,
      onReceived: (_from, _term, meta) => {
        received.push(meta.index);
        if (meta.index <= commitIndex) return false;
        commitIndex = meta.index;
        return true;
      },
    });
    const data = Uint8Array.from({ length: 20 }, (_, i) => i + 1);
    const chunk = (offset: number, end: number, snapshotIndex = 7) =>
      transfer.onMessage({
        type: "snapshot_chunk",
        from: 1,
        to: 2,
        term: 1,
        snapshotIndex,
        snapshotTerm: 1,
        offset,
        totalBytes: data.length,
        crc32: crc32(data),
        data: data.slice(offset, end),
        config: encodeConfiguration([]),
      });
    const close = async () => {
      await transfer.close();
      await backup.close();
      await master.close();
    };
    return {
      transfer,
      storage,
      acks,
      received,
      chunk,
      receivings: () => receiving.mock.calls.length,
      gateFinish: () => {
        gateFinish = true;
      },
      failFinish: () => {
        failFinish = true;
      },
      releaseFinish: () => releaseFinish(),
      close,
    };
  }

  const notNeeded = { nextOffset: 20, done: true, accepted: false };

  it("state transfer: a snapshot adopted and waiting for its install is held: a retried chunk of it, a new transfer of it or of an older one is answered 'not needed' at once, with no second session", async () => {
    const b = await installingBackup();
    b.chunk(0, 10);
    b.chunk(10, 20);
    await vi.waitFor(() =>
      expect(b.acks).toEqual([
        { nextOffset: 10, done: false, accepted: false },
        { nextOffset: 20, done: true, accepted: true },
      ]),
    );
    // The install waits (the runtime has not called finishReceived): storage has nothing.
    expect(b.storage.snapshot().index).toBe(0);
    // The answer to the last chunk was lost: the master sends it again; then, having given
    // the transfer up, the whole snapshot again; an older one's first chunk comes late.
    b.chunk(10, 20);
    b.chunk(0, 10);
    b.chunk(0, 10, 5);
    await vi.waitFor(() => expect(b.acks.slice(2)).toEqual([notNeeded, notNeeded, notNeeded]));
    // The core answered the master each time, and adopted nothing more.
    expect(b.received).toEqual([7, 7, 7, 5]);
    expect(b.receivings()).toBe(1);
    expect(await b.transfer.finishReceived({ index: 7, term: 1 })).toBeNull();
    expect(b.storage.snapshot().index).toBe(7);
    await b.close();
  });

  it("state transfer: a snapshot being made durable (storage does not have it yet) is held: a new transfer of it is answered 'not needed'", async () => {
    const b = await installingBackup();
    b.gateFinish();
    b.chunk(0, 10);
    b.chunk(10, 20);
    await vi.waitFor(() => expect(b.acks).toHaveLength(2));
    const finished = b.transfer.finishReceived({ index: 7, term: 1 });
    b.chunk(0, 10);
    await vi.waitFor(() => expect(b.acks.slice(2)).toEqual([notNeeded]));
    expect(b.storage.snapshot().index).toBe(0);
    expect(b.receivings()).toBe(1);
    b.releaseFinish();
    await finished;
    expect(b.storage.snapshot().index).toBe(7);
    await b.close();
  });

  it("state transfer: a snapshot whose install failed is no longer held: a transfer of it is received again (the core decides)", async () => {
    const b = await installingBackup();
    b.failFinish();
    b.chunk(0, 10);
    b.chunk(10, 20);
    await vi.waitFor(() => expect(b.acks).toHaveLength(2));
    await expect(b.transfer.finishReceived({ index: 7, term: 1 })).rejects.toThrow(/refused/);
    b.chunk(0, 10);
    await vi.waitFor(() =>
      expect(b.acks.slice(2)).toEqual([{ nextOffset: 10, done: false, accepted: false }]),
    );
    expect(b.receivings()).toBe(2);
    await b.close();
  });

  it("state transfer: close resolves only once the session's temporary file is removed (a node restarted in the same process reuses its name), and never throws for a removal that fails", async () => {
    const { storage } = await MemoryStorage.open();
    const receive = storage.receiveSnapshot.bind(storage);
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const aborts: string[] = [];
    vi.spyOn(storage, "receiveSnapshot").mockImplementation(async (meta) => {
      const receiver = await receive(meta);
      receiver.abort = async () => {
        await gate;
        aborts.push(`removed ${meta.index}`);
        throw new Error("the disk refused the removal");
      };
      return receiver;
    });
    const { master, backup } = await twoNodes();
    const acks: number[] = [];
    master.onMessage((m) => {
      if (m.type === "snapshot_ack") acks.push(m.nextOffset);
    });
    const warnings: string[] = [];
    const logger = pino({ level: "warn" }, { write: (line: string) => warnings.push(line) });
    const transfer = transferWith({ id: 2, storage, transport: backup, logger });
    const data = Uint8Array.from({ length: 20 }, (_, i) => i + 1);
    transfer.onMessage({
      type: "snapshot_chunk",
      from: 1,
      to: 2,
      term: 1,
      snapshotIndex: 7,
      snapshotTerm: 1,
      offset: 0,
      totalBytes: data.length,
      crc32: crc32(data),
      data: data.slice(0, 10),
      config: encodeConfiguration([]),
    });
    await vi.waitFor(() => expect(acks).toEqual([10]));
    let closed = false;
    const closing = Promise.resolve(transfer.close()).then(() => {
      closed = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(closed).toBe(false);
    release();
    await closing;
    expect(aborts).toEqual(["removed 7"]);
    expect(warnings.join("")).toMatch(/dropping a received snapshot failed/);
    await backup.close();
    await master.close();
  });

  it("state transfer: on disk, no temporary file is left once close resolves", async () => {
    const dir = await mkdtemp(join(tmpdir(), "baton-transfer-"));
    const { storage } = await DiskStorage.open(dir);
    try {
      const { master, backup } = await twoNodes();
      const acks: number[] = [];
      master.onMessage((m) => {
        if (m.type === "snapshot_ack") acks.push(m.nextOffset);
      });
      const transfer = transferWith({ id: 2, storage, transport: backup });
      const data = Uint8Array.from({ length: 20 }, (_, i) => i + 1);
      transfer.onMessage({
        type: "snapshot_chunk",
        from: 1,
        to: 2,
        term: 1,
        snapshotIndex: 7,
        snapshotTerm: 1,
        offset: 0,
        totalBytes: data.length,
        crc32: crc32(data),
        data: data.slice(0, 10),
        config: encodeConfiguration([]),
      });
      await vi.waitFor(() => expect(acks).toEqual([10]));
      const temporaries = async () =>
        (await readdir(join(dir, "snapshots"))).filter((name) => name.endsWith(".tmp"));
      expect(await temporaries()).toEqual([`${snapshotFileName({ index: 7, term: 1 })}.1.tmp`]);
      await transfer.close();
      expect(await temporaries()).toEqual([]);
      await backup.close();
      await master.close();
    } finally {
      await storage.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("state transfer: the restore reads exactly the bytes the file takes, once each, whatever the master resends", async () => {
    const backup = await receivingBackup();
    backup.chunk(0, 10);
    backup.chunk(0, 10); // a retransmission: nothing new
    backup.chunk(5, 15); // overlaps: only 10..14 are new
    backup.chunk(18, 20); // beyond what arrived: ignored, the master is told to resend
    backup.chunk(15, 20);
    const restore = await vi.waitFor(async () => {
      const found = await backup.transfer.finishReceived({ index: 7, term: 1 });
      expect(found).not.toBeNull();
      return found;
    });
    expect(restore).toBe(backup.restore);
    expect(backup.pushed).toEqual([...backup.data]);
    await backup.close();
  });

  it("state transfer: bytes the restore cannot read drop the restore, not the transfer (the state is then read from the file)", async () => {
    const backup = await receivingBackup(12);
    backup.chunk(0, 10);
    backup.chunk(10, 20);
    const restore = await vi.waitFor(() => backup.transfer.finishReceived({ index: 7, term: 1 }));
    expect(restore).toBeNull();
    expect(backup.pushed).toEqual([...backup.data.subarray(0, 10)]);
    expect(backup.warnings.join("")).toMatch(/does not read as a state/);
    await backup.close();
  });

  it("state transfer: a session no chunk comes to for two stall times is dropped with the state it read (a master that failed over never finishes it)", async () => {
    const backup = await receivingBackup(null, 100);
    backup.chunk(0, 10);
    await vi.waitFor(() => expect(backup.acks).toEqual([10]));
    // The master is gone; after 200 ms without a chunk the half-read state goes.
    await vi.waitFor(
      () =>
        expect(backup.warnings.join("")).toMatch(
          /dropped snapshot 7 from node 1 after 10 of 20 bytes: no chunk for 200 ms/,
        ),
      { timeout: 2000 },
    );
    // A chunk of that transfer arriving after all is answered "from the start".
    backup.chunk(10, 20);
    await vi.waitFor(() => expect(backup.acks).toEqual([10, 0]));
    expect(backup.pushed).toEqual([...backup.data.subarray(0, 10)]);
    await expect(backup.transfer.finishReceived({ index: 7, term: 1 })).rejects.toThrow(
      /adopted but not received/,
    );
    await backup.close();
  });

  it("state transfer: a session whose chunks keep coming is not dropped, however long it takes", async () => {
    // Chunks every 50 ms for 500 ms, more than the 2 x 150 ms a silent session is given.
    const backup = await receivingBackup(null, 150);
    for (let offset = 0; offset < 20; offset += 2) {
      backup.chunk(offset, offset + 2);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const restore = await vi.waitFor(() => backup.transfer.finishReceived({ index: 7, term: 1 }));
    expect(restore).toBe(backup.restore);
    expect(backup.pushed).toEqual([...backup.data]);
    expect(backup.warnings.join("")).not.toMatch(/dropped snapshot/);
    await backup.close();
  });

  /**
   * A master's StateTransfer sending a snapshot of `bytes` (20) in chunks of 4 to node 2, whose
   * answers the test writes by hand; `offsets` lists every chunk sent, resends included.
   */
  async function sendingMaster(stallMs = 10_000, bytes = 20, term: () => number = () => 1) {
    const { storage } = await MemoryStorage.open();
    const data = Uint8Array.from({ length: bytes }, (_, i) => i);
    vi.spyOn(storage, "readSnapshot").mockReturnValue({
      meta: { index: 10, term: 1 },
      dataBytes: data.length,
      dataCrc32: crc32(data),
      chunks: async function* () {
        yield data;
        return crc32(data);
      },
    });
    const { master, backup } = await twoNodes();
    const offsets: number[] = [];
    const terms: number[] = [];
    backup.onMessage((m) => {
      if (m.type !== "snapshot_chunk") return;
      offsets.push(m.offset);
      terms.push(m.term);
    });
    const sent: boolean[] = [];
    const transfer = transferWith({
      id: 1,
      storage,
      transport: master,
      chunkBytes: 4,
      stallMs,
      term,
      onSent: (_peer, ok) => sent.push(ok),
    });
    const ack = (nextOffset: number, done = false) =>
      transfer.onMessage({
        type: "snapshot_ack",
        from: 2,
        to: 1,
        term: 1,
        snapshotIndex: 10,
        nextOffset,
        done,
        accepted: done,
      });
    const close = async () => {
      await transfer.close();
      await master.close();
      await backup.close();
    };
    return { transfer, offsets, terms, sent, ack, close };
  }

  it("state transfer: a chunk the backup skipped (lost or overtaken) is sent again from the gap, once, and the transfer goes on", async () => {
    const m = await sendingMaster();
    m.transfer.start(2);
    await vi.waitFor(() => expect(m.offsets).toEqual([0, 4, 8, 12]));
    m.ack(4); // chunk 0 arrived
    await vi.waitFor(() => expect(m.offsets).toEqual([0, 4, 8, 12, 16]));
    // Chunk 4 went missing: the backup skips 8, 12 and 16 and answers "4" to each.
    m.ack(4);
    m.ack(4);
    m.ack(4);
    await vi.waitFor(() => expect(m.offsets).toEqual([0, 4, 8, 12, 16, 4, 8, 12, 16]));
    m.ack(2); // an answer overtaken by later ones: ignored
    m.ack(12);
    m.ack(20, true);
    await vi.waitFor(() => expect(m.sent).toEqual([true]));
    expect(m.offsets).toEqual([0, 4, 8, 12, 16, 4, 8, 12, 16]);
    await m.close();
  });

  it("state transfer: a backup further on than the window, from a transfer of the same snapshot given up before, gets only what it lacks, and the transfer ends", async () => {
    const m = await sendingMaster(10_000, 40);
    m.transfer.start(2);
    await vi.waitFor(() => expect(m.offsets).toEqual([0, 4, 8, 12]));
    // The backup kept 28 bytes of the transfer this master gave up (its session outlives a
    // retry): it answers each of the four chunks with 28.
    m.ack(28);
    // Chunks 16 to 24, which it holds, are not sent: their answers, 28 again, would read
    // as a gap the window cannot fill, and the transfer would be given up, over and over.
    await vi.waitFor(() => expect(m.offsets).toEqual([0, 4, 8, 12, 28, 32, 36]));
    m.ack(28);
    m.ack(28);
    m.ack(28);
    // Those read as a gap at 28 all the same (the answers to 4, 8, 12 came late): resent once.
    await vi.waitFor(() => expect(m.offsets).toEqual([0, 4, 8, 12, 28, 32, 36, 28, 32, 36]));
    m.ack(40, true);
    await vi.waitFor(() => expect(m.sent).toEqual([true]));
    await m.close();
  });

  it("state transfer: an answer past the end of the snapshot ends the transfer (the backup holds other bytes under this index)", async () => {
    const m = await sendingMaster();
    m.transfer.start(2);
    await vi.waitFor(() => expect(m.offsets).toEqual([0, 4, 8, 12]));
    m.ack(28);
    await vi.waitFor(() => expect(m.sent).toEqual([false]), { timeout: 2000 });
    await m.close();
  });

  it("state transfer: a transfer asked for in a newer term replaces one of an earlier term at once (the backup drops the old term's chunks)", async () => {
    const m = await sendingMaster(10_000, 20, () => term);
    let term = 1;
    m.transfer.start(2);
    await vi.waitFor(() => expect(m.terms).toEqual([1, 1, 1, 1]));
    m.transfer.start(2); // the same term: the transfer under way goes on
    term = 3;
    m.transfer.start(2);
    await vi.waitFor(() => expect(m.terms).toEqual([1, 1, 1, 1, 3, 3, 3, 3]));
    expect(m.offsets.slice(4)).toEqual([0, 4, 8, 12]);
    m.ack(20, true);
    await vi.waitFor(() => expect(m.sent).toEqual([true]));
    await m.close();
  });

  it("state transfer: a zero-byte snapshot's empty chunk is sent again like any other (its resend once gave the transfer up as 'chunks lost')", async () => {
    const m = await sendingMaster(10_000, 0);
    m.transfer.start(2);
    await vi.waitFor(() => expect(m.offsets).toEqual([0]));
    // Its answer was lost: after 100 ms the chunk goes again.
    await vi.waitFor(() => expect(m.offsets).toEqual([0, 0]), { timeout: 1000 });
    m.ack(0, true);
    await vi.waitFor(() => expect(m.sent).toEqual([true]));
    await m.close();
  });

  it("state transfer: a master whose own snapshot file fails its checksum stops, naming the file, before the last chunk goes out (it was sent again and again, each backup failing it at the end)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "baton-transfer-"));
    const { storage } = await DiskStorage.open(dir);
    try {
      const data = Uint8Array.from({ length: 20 }, (_, i) => i);
      storage.setHardState({ term: 1, votedFor: null, commitIndex: 10 });
      storage.append(
        Array.from({ length: 10 }, (_, i) => ({
          index: i + 1,
          term: 1,
          kind: "command" as const,
          data: new Uint8Array([i]),
        })),
      );
      await storage.sync();
      await storage.saveSnapshot(
        { index: 10, term: 1 },
        (async function* () {
          yield data;
        })(),
      );
      // The disk flips a bit of the data (after the 48-byte header) once it is stored.
      const file = join(dir, "snapshots", snapshotFileName({ index: 10, term: 1 }));
      const stored = await readFile(file);
      stored[48 + 5]! ^= 0x10;
      await writeFile(file, stored);
      const { master, backup } = await twoNodes();
      const offsets: number[] = [];
      backup.onMessage((m) => {
        if (m.type === "snapshot_chunk") offsets.push(m.offset);
      });
      const sent: boolean[] = [];
      const fatal = new Promise<Error>((onFatal) => {
        transferWith({
          id: 1,
          storage,
          transport: master,
          chunkBytes: 4,
          onFatal,
          onSent: (_peer, ok) => sent.push(ok),
        }).start(2);
      });
      const error = await fatal;
      expect(error).toBeInstanceOf(SnapshotCorruptError);
      expect((error as SnapshotCorruptError).file).toBe(file);
      // Read in one piece, all 20 bytes were in hand before the first chunk: none went out.
      expect(offsets).toEqual([]);
      await new Promise((resolve) => setTimeout(resolve, 600));
      expect(sent).toEqual([]); // not retried: the node stops
      await master.close();
      await backup.close();
    } finally {
      await storage.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("state transfer: unacknowledged chunks go again while nothing moves, until the stall gives up; a backup that asks from the start gets a new transfer", async () => {
    const m = await sendingMaster(600);
    m.transfer.start(2);
    await vi.waitFor(() => expect(m.offsets).toEqual([0, 4, 8, 12]));
    m.ack(8);
    await vi.waitFor(() => expect(m.offsets).toEqual([0, 4, 8, 12, 16]));
    // Nothing more is answered (the last chunks, or their answers, were lost, and no later
    // chunk shows a gap): after 100 ms the unacknowledged chunks go again, and again, until
    // 600 ms without progress give the transfer up (reported failed, to be retried).
    await vi.waitFor(() => expect(m.offsets.slice(0, 8)).toEqual([0, 4, 8, 12, 16, 8, 12, 16]));
    await vi.waitFor(() => expect(m.sent).toEqual([false]), { timeout: 2000 });
    const resends = m.offsets.length;
    expect(resends).toBeGreaterThanOrEqual(11);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(m.offsets.length).toBe(resends); // nothing after giving up
    const again = await sendingMaster();
    again.transfer.start(2);
    await vi.waitFor(() => expect(again.offsets).toEqual([0, 4, 8, 12]));
    again.ack(8);
    again.ack(0); // the backup lost its session (its checksum failed, say)
    await vi.waitFor(() => expect(again.sent).toEqual([false]), { timeout: 2000 });
    await again.close();
    await m.close();
  });
});
