import { describe, expect, it } from "vitest";
import { Prng } from "../core/prng.js";
import { SimClock, SimScheduler } from "./sim-clock.js";
import { KIND_DISK, SimFileSystem, type SimFsFaults } from "./sim-fs.js";

/**
 * The simulated file system keeps exactly what POSIX promises across a crash, and no more:
 * these tests pin each rule, over many seeds where the rule allows several outcomes.
 */

interface World {
  readonly scheduler: SimScheduler;
  clock: SimClock;
  readonly fs: SimFileSystem;
}

function world(seed: number, faults: SimFsFaults = KIND_DISK): World {
  const scheduler = new SimScheduler();
  const clock = new SimClock(scheduler, 0);
  return { scheduler, clock, fs: new SimFileSystem(new Prng(seed), clock, faults) };
}

/** Runs virtual time until `promise` settles; returns its value (or throws its error). */
async function drive<T>(w: World, promise: Promise<T>): Promise<T> {
  let done = false;
  const settled = promise.finally(() => {
    done = true;
  });
  settled.catch(() => {});
  await w.scheduler.run(Number.POSITIVE_INFINITY, () => done);
  expect(done).toBe(true);
  return settled;
}

function crash(w: World): void {
  w.clock.kill();
  w.clock = new SimClock(w.scheduler, 0);
  w.fs.crash(w.clock);
}

const text = (bytes: Uint8Array | null) => (bytes === null ? null : Buffer.from(bytes).toString());

async function writeFile(w: World, path: string, content: string, sync: boolean): Promise<void> {
  const handle = await drive(w, w.fs.open(path, "w"));
  const data = Buffer.from(content);
  await drive(w, handle.write(data, 0, data.length, 0));
  if (sync) await drive(w, handle.datasync());
}

describe("sim fs", () => {
  it("sim fs: a write made durable by fdatasync and a name made durable by fsync of its directory survive every crash", async () => {
    for (let seed = 1; seed <= 50; seed++) {
      const w = world(seed);
      await drive(w, w.fs.mkdir("/d"));
      await drive(w, w.fs.syncDir("/"));
      await writeFile(w, "/d/a", "hello", true);
      await drive(w, w.fs.syncDir("/d"));
      crash(w);
      expect(text(await drive(w, w.fs.readSmall("/d/a")))).toBe("hello");
    }
  });

  it("sim fs: an unsynced write keeps any prefix after a crash, torn at any byte", async () => {
    const seen = new Set<string>();
    for (let seed = 1; seed <= 200; seed++) {
      const w = world(seed);
      await writeFile(w, "/a", "0123456789", true);
      await drive(w, w.fs.syncDir("/"));
      const handle = await drive(w, w.fs.open("/a", "r+"));
      const data = Buffer.from("abcdefghij");
      await drive(w, handle.write(data, 0, data.length, 10));
      crash(w);
      const after = text(await drive(w, w.fs.readSmall("/a")))!;
      expect("0123456789abcdefghij".startsWith(after)).toBe(true);
      expect(after.length).toBeGreaterThanOrEqual(10);
      seen.add(after);
    }
    expect(seen.size).toBeGreaterThan(5); // lost, torn at several bytes, kept whole
    expect(seen.has("0123456789")).toBe(true);
    expect(seen.has("0123456789abcdefghij")).toBe(true);
  });

  it("sim fs: a file synced but whose creation was never fsynced in its directory may vanish", async () => {
    const outcomes = new Set<string | null>();
    for (let seed = 1; seed <= 40; seed++) {
      const w = world(seed);
      await writeFile(w, "/a", "data", true);
      crash(w);
      outcomes.add(text(await drive(w, w.fs.readSmall("/a"))));
    }
    expect(outcomes).toEqual(new Set([null, "data"]));
  });

  it("sim fs: a new directory's entry needs an fsync of its parent", async () => {
    const outcomes = new Set<number>();
    for (let seed = 1; seed <= 40; seed++) {
      const w = world(seed);
      await drive(w, w.fs.mkdir("/d"));
      await writeFile(w, "/d/a", "x", true);
      await drive(w, w.fs.syncDir("/d"));
      crash(w);
      outcomes.add((await drive(w, w.fs.list("/"))).length);
    }
    expect(outcomes).toEqual(new Set([0, 1]));
  });

  it("sim fs: a rename is atomic across a crash (old content or new, never neither)", async () => {
    const outcomes = new Set<string | null>();
    for (let seed = 1; seed <= 60; seed++) {
      const w = world(seed);
      await writeFile(w, "/f", "old", true);
      await drive(w, w.fs.syncDir("/"));
      await writeFile(w, "/f.tmp", "new", true);
      await drive(w, w.fs.rename("/f.tmp", "/f"));
      crash(w);
      outcomes.add(text(await drive(w, w.fs.readSmall("/f"))));
    }
    expect(outcomes).toEqual(new Set(["old", "new"]));
  });

  it("sim fs: operations under way when the process dies never complete, and its handles are dead", async () => {
    const w = world(1, { ...KIND_DISK, syncMsMin: 5, syncMsMax: 5 });
    const handle = await drive(w, w.fs.open("/a", "w"));
    let settled = false;
    void handle.datasync().finally(() => {
      settled = true;
    });
    crash(w);
    await w.scheduler.run(10_000);
    expect(settled).toBe(false);
    let late = false;
    void handle.size().finally(() => {
      late = true;
    });
    await w.scheduler.run(20_000);
    expect(late).toBe(false);
  });

  it("sim fs: EIO on fdatasync, ENOSPC past the capacity, EIO reading a damaged range", async () => {
    const w = world(3, { ...KIND_DISK, capacityBytes: 8 });
    const handle = await drive(w, w.fs.open("/a", "w"));
    w.fs.failNext("datasync", "EIO");
    await drive(w, handle.write(Buffer.from("abc"), 0, 3, 0));
    await expect(drive(w, handle.datasync())).rejects.toMatchObject({ code: "EIO" });
    await expect(drive(w, handle.write(Buffer.from("0123456789"), 0, 10, 3))).rejects.toMatchObject(
      { code: "ENOSPC" },
    );
    w.fs.damage("/a", 1, 2);
    await expect(drive(w, handle.read(new Uint8Array(3), 0, 3, 0))).rejects.toMatchObject({
      code: "EIO",
    });
    expect((await drive(w, handle.read(new Uint8Array(3), 0, 1, 0))).bytesRead).toBe(1);
  });

  it("sim fs: a bit flip changes one bit of the stored bytes, and it survives a crash", async () => {
    const w = world(4);
    await writeFile(w, "/a", "AAAA", true);
    await drive(w, w.fs.syncDir("/"));
    const at = w.fs.flipBit("/a")!;
    crash(w);
    const after = (await drive(w, w.fs.readSmall("/a")))!;
    let bits = 0;
    for (let i = 0; i < 4; i++) {
      let x = after[i]! ^ 0x41;
      while (x > 0) {
        bits += x & 1;
        x >>= 1;
      }
      if (i !== at) expect(after[i]).toBe(0x41);
    }
    expect(bits).toBe(1);
  });

  it("sim fs: a stalled fsync takes seconds of virtual time", async () => {
    const w = world(5, {
      ...KIND_DISK,
      syncMsMin: 1,
      syncMsMax: 2,
      stallChance: 1,
      stallMsMax: 5000,
    });
    const handle = await drive(w, w.fs.open("/a", "w"));
    await drive(w, handle.write(Buffer.from("x"), 0, 1, 0));
    const before = w.scheduler.now;
    let total = 0;
    for (let i = 0; i < 5; i++) {
      const start = w.scheduler.now;
      await drive(w, handle.datasync());
      total += w.scheduler.now - start;
    }
    expect(w.scheduler.now).toBeGreaterThan(before);
    expect(total).toBeGreaterThan(2000);
  });

  it("sim fs: the same seed gives the same disk after the same crash", async () => {
    const run = async (seed: number) => {
      const w = world(seed, { ...KIND_DISK, opMsMax: 2, syncMsMin: 1, syncMsMax: 3 });
      for (let i = 0; i < 10; i++)
        await writeFile(w, `/f${i}`, `content ${i}`.repeat(i), i % 2 === 0);
      crash(w);
      const names = (await drive(w, w.fs.list("/"))).sort();
      const contents = [];
      for (const name of names) contents.push(text(await drive(w, w.fs.readSmall(`/${name}`))));
      return JSON.stringify({ names, contents, now: w.scheduler.now });
    };
    expect(await run(7)).toBe(await run(7));
    expect(await run(7)).not.toBe(await run(8));
  });
});
