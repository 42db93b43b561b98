/**
 * Many watchers that cost their machine as little as a watcher can: a process of its own
 * (run by bench/store.ts with `--watch-client raw`) that holds `watchers` raw HTTP
 * connections, each a `GET /v1/watch?prefix=P` spread round-robin over `urls`, and only
 * counts the events that arrive (each change's `data:` line), without decoding text or
 * parsing JSON. It stands for watchers on other machines: what the nodes spend on a
 * watcher is the same as with the client library, what the watcher itself spends is far
 * less, so on a machine shared with the nodes the write latency measures the nodes.
 *
 * Input: one JSON argument (WatchLoadSpec). Messages over the IPC channel (it is forked):
 * it sends `{ type: "ready" }` once every stream has answered, and on `{ type: "stop" }`
 * sends `{ type: "done", ...WatchLoadResult }` and exits.
 *
 *   fork("bench/watch-load.ts", [JSON.stringify(spec)], { execArgv: ["--import", "tsx"] })
 */

import { connect, type Socket } from "node:net";

export interface WatchLoadSpec {
  readonly urls: readonly string[];
  readonly watchers: number;
  readonly prefix: string;
  /**
   * Watcher i watches `${prefix}${i}.` (one key of the writers' each, see bench/store.ts
   * `--watch-keys own`) instead of the whole prefix.
   * @default false
   */
  readonly ownKey?: boolean;
}

/** The prefix watcher `i` of `spec` watches. */
export function watchedPrefix(spec: WatchLoadSpec, i: number): string {
  return spec.ownKey === true ? `${spec.prefix}${i}.` : spec.prefix;
}

export interface WatchLoadResult {
  /** Events received by all watchers together. */
  readonly delivered: number;
  /** The fewest and the most events one watcher received. */
  readonly perWatcherMin: number;
  readonly perWatcherMax: number;
  /** Streams that closed before the stop. */
  readonly closedEarly: number;
  /** This process's CPU time (user + system) from ready to stop, in milliseconds. */
  readonly cpuMs: number;
}

const DATA = Buffer.from("\ndata: ");

/** Counts DATA in a stream delivered in chunks, including across chunk boundaries. */
export class EventCounter {
  count = 0;
  private tail: Buffer = Buffer.alloc(0);

  add(chunk: Buffer): void {
    for (let at = chunk.indexOf(DATA); at >= 0; at = chunk.indexOf(DATA, at + 1)) this.count++;
    // A pattern that starts in the last bytes seen before this chunk and ends in it (or in a
    // later one: then it is found there, as it still starts in the tail kept below).
    const seam = Buffer.concat([this.tail, chunk.subarray(0, DATA.length - 1)]);
    for (
      let at = seam.indexOf(DATA);
      at >= 0 && at < this.tail.length;
      at = seam.indexOf(DATA, at + 1)
    ) {
      this.count++;
    }
    const seen = Buffer.concat([this.tail, chunk]);
    this.tail = Buffer.from(seen.subarray(Math.max(0, seen.length - (DATA.length - 1))));
  }
}

function openWatch(url: URL, prefix: string, counter: EventCounter): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: url.hostname, port: Number(url.port) });
    let ready = false;
    socket.on("error", (error) => {
      if (!ready) reject(error);
    });
    socket.on("data", (chunk: Buffer) => {
      if (!ready && chunk.includes(": watching")) {
        ready = true;
        resolve(socket);
      }
      counter.add(chunk);
    });
    socket.write(
      `GET /v1/watch?prefix=${encodeURIComponent(prefix)} HTTP/1.1\r\nHost: ${url.host}\r\n\r\n`,
    );
  });
}

async function main(spec: WatchLoadSpec): Promise<void> {
  const urls = spec.urls.map((u) => new URL(u));
  const counters = Array.from({ length: spec.watchers }, () => new EventCounter());
  const sockets: Socket[] = [];
  let closedEarly = 0;
  let stopping = false;
  for (let opened = 0; opened < spec.watchers; opened += 100) {
    const batch = Array.from({ length: Math.min(100, spec.watchers - opened) }, (_, j) => {
      const i = opened + j;
      return openWatch(urls[i % urls.length]!, watchedPrefix(spec, i), counters[i]!);
    });
    for (const socket of await Promise.all(batch)) {
      sockets.push(socket);
      socket.on("close", () => {
        if (!stopping) closedEarly++;
      });
    }
  }
  const cpuAtReady = process.cpuUsage();
  process.send?.({ type: "ready" });
  process.on("message", (message: { type?: string }) => {
    if (message.type !== "stop") return;
    stopping = true;
    const cpu = process.cpuUsage(cpuAtReady);
    const counts = counters.map((c) => c.count);
    const result: WatchLoadResult = {
      delivered: counts.reduce((a, b) => a + b, 0),
      perWatcherMin: Math.min(...counts),
      perWatcherMax: Math.max(...counts),
      closedEarly,
      cpuMs: (cpu.user + cpu.system) / 1000,
    };
    for (const socket of sockets) socket.destroy();
    process.send?.({ type: "done", ...result }, () => process.exit(0));
  });
}

const isMain = process.argv[1]?.endsWith("watch-load.ts") === true;
if (isMain) {
  main(JSON.parse(process.argv[2] ?? "{}") as WatchLoadSpec).catch((error: unknown) => {
    process.stderr.write(`watch load: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  });
}
