/**
 * `baton demo`: a whole cluster on this machine with one command. It starts each node as
 * its own `baton start` process (so killing one is a real crash), prints every URL and the
 * dashboard's, keeps each node's JSON log in its data folder, shows role changes and
 * fail-overs as they happen, and on Ctrl-C stops every node cleanly and removes a
 * temporary data folder.
 *
 * To make a fail-over something to watch, the nodes run with --allow-fault-injection (the
 * dashboard's "kill master", "pause" and "partition" buttons), a light write load keeps
 * the dashboard's request chart moving, and a node that dies by SIGKILL is started again
 * after a few seconds, so the newcomer also sees it rejoin and catch up.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { type Command, InvalidArgumentError } from "commander";
import { type BatonClient, createClient } from "../../client/index.js";
import { isLoopbackHost } from "../../server/node-config.js";
import { makeDirectory } from "../../shared/make-directory.js";
import { type CliIo, processIo } from "./cli-io.js";

interface DemoFlags {
  nodes: number;
  data?: string;
  host: string;
  peerPort: number;
  httpPort: number;
  electionMs?: string;
  faultInjection: boolean;
  restartMs: number;
  load: number;
  open: boolean;
}

function count(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 9) throw new InvalidArgumentError("expected 1..9");
  return n;
}

function nonNegative(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("expected an integer >= 0");
  return n;
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535)
    throw new InvalidArgumentError("expected a port number");
  return n;
}

/** Adds `demo` to `program`; it sets `io.exitCode` when it ends. */
export function register(program: Command, io: CliIo = processIo()): void {
  program
    .command("demo")
    .description(
      "start a local cluster (three nodes by default), print its URLs, stop it on Ctrl-C",
    )
    .option("--nodes <n>", "how many nodes", count, 3)
    .option(
      "--data <dir>",
      "keep data in this folder (default: a temporary folder, removed on exit)",
    )
    .option("--host <host>", "address to listen on (loopback only unless you mean it)", "127.0.0.1")
    .option(
      "--peer-port <port>",
      "node-to-node port of node 1; node n uses port + n - 1",
      port,
      7101,
    )
    .option("--http-port <port>", "HTTP port of node 1; node n uses port + n - 1", port, 8101)
    .option("--election-ms <min-max>", "election timeout range passed to every node")
    .option(
      "--no-fault-injection",
      "start the nodes without --allow-fault-injection (the dashboard then has no fault buttons)",
    )
    .option(
      "--restart-ms <ms>",
      "start a node that died by SIGKILL again after ms milliseconds; 0 leaves it down",
      nonNegative,
      5000,
    )
    .option(
      "--load <writes/s>",
      "writes per second sent to the cluster; 0 for none",
      nonNegative,
      20,
    )
    .option("--open", "open the dashboard in a web browser (xdg-open, open or start)", false)
    .addHelpText(
      "after",
      `
Open the dashboard URL it prints and press "Kill master" to watch a fail-over.
Or, in another terminal:
  curl -X PUT --data hello http://127.0.0.1:8101/v1/kv/greeting
  curl http://127.0.0.1:8102/v1/kv/greeting
  baton status
  kill -9 <pid of the master>     # and watch the fail-over here, on the dashboard and in baton status`,
    )
    .action(async (flags: DemoFlags) => {
      io.exitCode = await demo(flags);
    });
}

interface Child {
  readonly id: number;
  process: ChildProcess;
  exited: boolean;
  /** The node logged that it is stopping (a signal of its own, such as a terminal's Ctrl-C). */
  stopping: boolean;
}

/** What the running demo holds, so that Ctrl-C can stop all of it. */
interface DemoState {
  stopping: boolean;
  readonly restarts: Set<NodeJS.Timeout>;
  /** The nodes that exited with an error of their own (not a signal) and stay down. */
  readonly failed: Set<number>;
  /** Runs once every node has so failed: nothing is left to demonstrate. */
  allFailed: () => void;
}

async function demo(flags: DemoFlags): Promise<number> {
  if (!isLoopbackHost(flags.host)) {
    // The nodes would refuse to serve another address without TLS and tokens (see
    // baton start --help); the demo is for this machine.
    console.error(
      `baton demo: --host ${flags.host} is not a loopback address: the demo runs on this machine only, without TLS or tokens. For a cluster on the network, set up certificates and tokens (baton certs --help) and run baton start on each machine.`,
    );
    return 2;
  }
  const temporary = flags.data === undefined;
  const root = temporary ? mkdtempSync(join(tmpdir(), "baton-demo-")) : resolve(flags.data!);
  try {
    makeDirectory(root);
  } catch (error) {
    console.error(`baton demo: --data: ${(error as Error).message}`);
    return 2;
  }
  const ids = Array.from({ length: flags.nodes }, (_, i) => i + 1);
  const peers = ids.map((id) => `${id}=${flags.host}:${flags.peerPort + id - 1}`).join(",");
  console.log(
    `Baton demo: ${flags.nodes} nodes, data in ${root}${temporary ? " (temporary)" : ""}\n`,
  );
  const state: DemoState = {
    stopping: false,
    restarts: new Set(),
    failed: new Set(),
    allFailed: () => {},
  };
  const children = ids.map((id) => startChild(id, flags, peers, root, state));
  for (const child of children) {
    const http = `http://${flags.host}:${flags.httpPort + child.id - 1}`;
    console.log(
      `  node ${child.id}  pid ${child.process.pid}  ${http}  (status ${http}/v1/status, log ${join(root, `n${child.id}.log`)})`,
    );
  }
  const urls = ids.map((id) => `http://${flags.host}:${flags.httpPort + id - 1}`);
  const dashboard = `${urls[0]}/`;
  console.log(
    `\nDashboard: ${dashboard}  (every node serves it: ${urls.map((u) => `${u}/`).join(", ")})`,
  );
  console.log(`\nTry:\n  curl -X PUT --data hello ${urls[0]}/v1/kv/greeting`);
  console.log(`  curl ${urls[1] ?? urls[0]}/v1/kv/greeting`);
  console.log(`  baton status --endpoints ${urls.join(",")}`);
  console.log(
    flags.faultInjection
      ? 'Press "Kill master" on the dashboard, or kill -9 <pid>, to watch a fail-over. Ctrl-C stops everything.\n'
      : "Kill the master (kill -9 <pid>) to watch a fail-over. Ctrl-C stops everything.\n",
  );
  if (flags.open) void whenServing(dashboard).then(() => openBrowser(dashboard));
  const load = flags.load > 0 ? startLoad(urls, flags.load) : null;
  return new Promise<number>((done) => {
    const stop = (code: number): void => {
      if (state.stopping) return;
      state.stopping = true;
      for (const timer of state.restarts) clearTimeout(timer);
      console.log("\nstopping every node...");
      void Promise.all([load?.stop(), stopAll(children)]).then(() => {
        if (temporary) rmSync(root, { recursive: true, force: true });
        console.log("all nodes stopped.");
        done(code);
      });
    };
    state.allFailed = () => {
      console.error(
        `baton demo: every node exited with an error (above, and in ${root}/n*.log); are the ports taken, by another demo perhaps? (--peer-port, --http-port)`,
      );
      stop(1);
    };
    if (state.failed.size === children.length) state.allFailed();
    process.on("SIGINT", () => stop(0));
    process.on("SIGTERM", () => stop(0));
  });
}

function startChild(
  id: number,
  flags: DemoFlags,
  peers: string,
  root: string,
  state: DemoState,
): Child {
  const args = [
    ...process.execArgv,
    process.argv[1]!,
    "start",
    "--id",
    String(id),
    "--listen",
    `${flags.host}:${flags.peerPort + id - 1}`,
    "--http",
    `${flags.host}:${flags.httpPort + id - 1}`,
    "--peers",
    peers,
    "--data",
    join(root, `n${id}`),
  ];
  if (flags.electionMs !== undefined) args.push("--election-ms", flags.electionMs);
  if (flags.faultInjection) args.push("--allow-fault-injection");
  const child: Child = {
    id,
    process: spawnNode(id, args, root, () => {
      child.stopping = true;
    }),
    exited: false,
    stopping: false,
  };
  watchExit(child, args, root, flags, state);
  return child;
}

/**
 * Runs one `baton start` whose log goes to its file and, narrated, to the terminal;
 * `onShutdown` runs when the node logs that it is stopping on a signal of its own.
 */
function spawnNode(
  id: number,
  args: readonly string[],
  root: string,
  onShutdown: () => void,
): ChildProcess {
  const proc = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  const log = createWriteStream(join(root, `n${id}.log`), { flags: "a" });
  const lines = createInterface({ input: proc.stdout! });
  lines.on("line", (line) => {
    log.write(`${line}\n`);
    if (narrate(id, line) === "shutdown") onShutdown();
  });
  proc.stderr!.on("data", (chunk: Buffer) =>
    process.stderr.write(`[node ${id}] ${chunk.toString()}`),
  );
  proc.on("exit", () => log.end());
  return proc;
}

/** Reports the child's exit and, after a crash (SIGKILL), starts it again in a while. */
function watchExit(
  child: Child,
  args: readonly string[],
  root: string,
  flags: DemoFlags,
  state: DemoState,
): void {
  child.process.on("exit", (code, signal) => {
    child.exited = true;
    console.log(`${time()}  node ${child.id} exited (${signal ?? `code ${code}`})`);
    if (!state.stopping && signal === null && code !== 0) {
      state.failed.add(child.id);
      if (state.failed.size === flags.nodes) state.allFailed();
    }
    if (state.stopping || signal !== "SIGKILL" || flags.restartMs === 0) return;
    console.log(`${time()}  node ${child.id} restarts in ${flags.restartMs} ms (--restart-ms)`);
    const timer = setTimeout(() => {
      state.restarts.delete(timer);
      if (state.stopping) return;
      child.stopping = false;
      child.process = spawnNode(child.id, args, root, () => {
        child.stopping = true;
      });
      child.exited = false;
      console.log(`${time()}  node ${child.id} restarted, pid ${child.process.pid}`);
      watchExit(child, args, root, flags, state);
    }, flags.restartMs);
    state.restarts.add(timer);
  });
}

/**
 * A steady trickle of writes through the client library (which follows the master), so
 * that the dashboard's chart shows requests, and their pause during a fail-over.
 */
function startLoad(endpoints: readonly string[], perSecond: number): { stop(): Promise<void> } {
  const client: BatonClient = createClient({ endpoints, deadlineMs: 5000, clientId: "demo-load" });
  let inflight = 0;
  let n = 0;
  const timer = setInterval(
    () => {
      // A bound on writes in flight, so that a long fail-over does not pile them up.
      if (inflight >= 16) return;
      inflight++;
      n++;
      client
        .put(`demo/${n % 100}`, `write ${n}`)
        .catch(() => {})
        .finally(() => inflight--);
    },
    Math.max(1, Math.round(1000 / perSecond)),
  );
  return {
    async stop() {
      clearInterval(timer);
      await client.close();
    },
  };
}

/** Resolves once `url` answers (the node is up), or after about ten seconds anyway. */
async function whenServing(url: string): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const ok = await fetch(url).then(
      (response) => response.ok,
      () => false,
    );
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Opens `url` in the desktop's browser, when there is a tool for it; never fails the demo. */
function openBrowser(url: string): void {
  const command =
    process.platform === "darwin" ? "open" : process.platform === "win32" ? "explorer" : "xdg-open";
  const opener = spawn(command, [url], { stdio: "ignore", detached: true });
  opener.on("error", () => console.log(`(could not run ${command}: open ${url} yourself)`));
  opener.unref();
}

/**
 * Prints the log lines a person watching a fail-over cares about, and returns the line's
 * event (undefined for a line that is not one of the node's JSON log lines).
 */
export function narrate(id: number, line: string): string | undefined {
  let entry: {
    event?: string;
    msg?: string;
    role?: string;
    failoverMs?: number | null;
    ms?: number;
    electionMsMin?: number;
  };
  try {
    entry = JSON.parse(line) as typeof entry;
  } catch {
    return undefined;
  }
  const interesting = ["role", "state_transfer", "fatal", "serving", "recovery", "fault", "stall"];
  if (entry.event === undefined || !interesting.includes(entry.event)) return entry.event;
  if (entry.event === "role" && entry.role === "candidate") return entry.event;
  // Only a stall long enough to cost a fail-over: it explains one that no fault caused.
  if (entry.event === "stall" && (entry.ms ?? 0) < (entry.electionMsMin ?? 0)) return entry.event;
  console.log(`${time()}  node ${id}: ${entry.msg}`);
  return entry.event;
}

function time(): string {
  return new Date().toISOString().slice(11, 23);
}

/**
 * How long the demo waits, once told to stop, before it signals a node that has not said it
 * is stopping. Ctrl-C in a terminal reaches every process of the demo's group at once: the
 * nodes stop on their own SIGINT, and a signal from the demo that arrived while one of them
 * was already exiting (its signal handlers gone) ended it "by signal" after a clean stop.
 * A demo stopped alone (`kill -INT <pid of the demo>`) waits this long first.
 */
const OWN_SIGNAL_GRACE_MS = 300;
const STOP_FORCE_MS = 5000;

/** What stopping needs of a node's process (a fake one in tests). */
export interface StoppableNode {
  readonly exited: boolean;
  readonly stopping: boolean;
  readonly process: Pick<ChildProcess, "kill" | "once">;
}

/**
 * Stops every node still running: each one that has not logged its own shutdown within
 * OWN_SIGNAL_GRACE_MS gets SIGINT, and any still running STOP_FORCE_MS after that SIGKILL.
 * Resolves once every one has exited.
 */
export async function stopAll(children: readonly StoppableNode[]): Promise<void> {
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exited) return resolve();
          const proc = child.process;
          const timers: NodeJS.Timeout[] = [];
          proc.once("exit", () => {
            for (const timer of timers) clearTimeout(timer);
            resolve();
          });
          timers.push(
            setTimeout(() => {
              // A node that logged its own shutdown is stopping already. The others get
              // what Ctrl-C would have sent them: SIGINT, a stop without a hand-over
              // (SIGTERM would have the master hand its role to a backup that is stopping
              // too, and wait for it in vain).
              if (!child.stopping) proc.kill("SIGINT");
              timers.push(setTimeout(() => proc.kill("SIGKILL"), STOP_FORCE_MS));
            }, OWN_SIGNAL_GRACE_MS),
          );
        }),
    ),
  );
}
