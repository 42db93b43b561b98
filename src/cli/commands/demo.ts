/**
 * `baton demo`: a whole cluster on this machine with one command. It starts each node as
 * its own `baton start` process (so killing one is a real crash), prints every URL, keeps
 * each node's JSON log in its data folder, shows role changes and fail-overs as they
 * happen, and on Ctrl-C stops every node cleanly and removes a temporary data folder.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { type Command, InvalidArgumentError } from "commander";

interface DemoFlags {
  nodes: number;
  data?: string;
  host: string;
  peerPort: number;
  httpPort: number;
  electionMs?: string;
}

function count(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 9) throw new InvalidArgumentError("expected 1..9");
  return n;
}

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 65535)
    throw new InvalidArgumentError("expected a port number");
  return n;
}

export function register(program: Command): void {
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
    .addHelpText(
      "after",
      `
Then, in another terminal:
  curl -X PUT --data hello http://127.0.0.1:8101/v1/kv/greeting
  curl http://127.0.0.1:8102/v1/kv/greeting
  baton status
  kill -9 <pid of the master>     # and watch the fail-over here and in baton status`,
    )
    .action(async (flags: DemoFlags) => {
      process.exitCode = await demo(flags);
    });
}

interface Child {
  readonly id: number;
  readonly process: ChildProcess;
  exited: boolean;
}

async function demo(flags: DemoFlags): Promise<number> {
  const temporary = flags.data === undefined;
  const root = temporary ? mkdtempSync(join(tmpdir(), "baton-demo-")) : resolve(flags.data!);
  mkdirSync(root, { recursive: true });
  const ids = Array.from({ length: flags.nodes }, (_, i) => i + 1);
  const peers = ids.map((id) => `${id}=${flags.host}:${flags.peerPort + id - 1}`).join(",");
  console.log(
    `Baton demo: ${flags.nodes} nodes, data in ${root}${temporary ? " (temporary)" : ""}\n`,
  );
  const children = ids.map((id) => startChild(id, flags, peers, root));
  for (const child of children) {
    const http = `http://${flags.host}:${flags.httpPort + child.id - 1}`;
    console.log(
      `  node ${child.id}  pid ${child.process.pid}  ${http}  (status ${http}/v1/status, log ${join(root, `n${child.id}.log`)})`,
    );
  }
  const endpoints = ids.map((id) => `http://${flags.host}:${flags.httpPort + id - 1}`).join(",");
  console.log(
    `\nTry:\n  curl -X PUT --data hello http://${flags.host}:${flags.httpPort}/v1/kv/greeting`,
  );
  console.log(`  curl http://${flags.host}:${flags.httpPort + 1}/v1/kv/greeting`);
  console.log(`  baton status --endpoints ${endpoints}`);
  console.log("Kill the master (kill -9 <pid>) to watch a fail-over. Ctrl-C stops everything.\n");
  return new Promise<number>((done) => {
    let stopping = false;
    const stop = (): void => {
      if (stopping) return;
      stopping = true;
      console.log("\nstopping every node...");
      void stopAll(children).then(() => {
        if (temporary) rmSync(root, { recursive: true, force: true });
        console.log("all nodes stopped.");
        done(0);
      });
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}

function startChild(id: number, flags: DemoFlags, peers: string, root: string): Child {
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
  const proc = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  const child: Child = { id, process: proc, exited: false };
  const log = createWriteStream(join(root, `n${id}.log`), { flags: "a" });
  const lines = createInterface({ input: proc.stdout! });
  lines.on("line", (line) => {
    log.write(`${line}\n`);
    narrate(id, line);
  });
  proc.stderr!.on("data", (chunk: Buffer) =>
    process.stderr.write(`[node ${id}] ${chunk.toString()}`),
  );
  proc.on("exit", (code, signal) => {
    child.exited = true;
    log.end();
    console.log(`${time()}  node ${id} exited (${signal ?? `code ${code}`})`);
  });
  return child;
}

/** Prints the log lines a person watching a fail-over cares about. */
function narrate(id: number, line: string): void {
  let entry: { event?: string; msg?: string; role?: string; failoverMs?: number | null };
  try {
    entry = JSON.parse(line) as typeof entry;
  } catch {
    return;
  }
  const interesting = ["role", "state_transfer", "fatal", "serving", "recovery"];
  if (entry.event === undefined || !interesting.includes(entry.event)) return;
  if (entry.event === "role" && entry.role === "candidate") return;
  console.log(`${time()}  node ${id}: ${entry.msg}`);
}

function time(): string {
  return new Date().toISOString().slice(11, 23);
}

async function stopAll(children: readonly Child[]): Promise<void> {
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exited) return resolve();
          const force = setTimeout(() => child.process.kill("SIGKILL"), 5000);
          child.process.once("exit", () => {
            clearTimeout(force);
            resolve();
          });
          child.process.kill("SIGTERM");
        }),
    ),
  );
}
