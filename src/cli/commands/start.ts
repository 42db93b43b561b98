/**
 * `baton start`: runs one node of a cluster in this process until SIGINT or SIGTERM.
 * Flags or a JSON config file (flags win) give the node's identity, addresses, peers and
 * data directory; every bad field is reported at once. Logs are JSON lines on stdout.
 *
 * Secure by default: on an address other machines can reach it refuses to start without
 * mutual TLS between nodes, HTTPS and tokens (unless --insecure), and says how to make
 * them; on loopback it runs as it always did. SIGHUP re-reads certificates and tokens.
 */

import { readFileSync } from "node:fs";
import { type Command, InvalidArgumentError } from "commander";
import pino from "pino";
import { KvNode } from "../../app/kv-node.js";
import {
  insecureExposure,
  type NodeConfig,
  type NodeConfigInput,
  parseNodeConfig,
  parsePeers,
} from "../../server/node-config.js";
import { type CliIo, processIo } from "./cli-io.js";

interface StartFlags {
  id?: number;
  listen?: string;
  http?: string;
  peers?: string;
  data?: string;
  memory?: boolean;
  config?: string;
  clusterId?: string;
  heartbeatMs?: number;
  electionMs?: [number, number];
  tickMs?: number;
  snapshotEntries?: number;
  snapshotKeepEntries?: number;
  join?: boolean;
  logLevel: string;
  allowFaultInjection?: boolean;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  httpTlsCert?: string;
  httpTlsKey?: string;
  tokens?: string;
  insecure?: boolean;
}

function positive(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError("expected a positive number");
  return n;
}

function nonNegative(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError("expected an integer >= 0");
  return n;
}

function range(value: string): [number, number] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(value);
  if (m === null)
    throw new InvalidArgumentError('expected "<min>-<max>" milliseconds, e.g. 300-600');
  const min = Number(m[1]);
  return [min, m[2] === undefined ? min * 2 : Number(m[2])];
}

/** Merges a config file (JSON with the same names as the flags) under the flags. */
function configInput(flags: StartFlags): NodeConfigInput {
  const file =
    flags.config === undefined
      ? {}
      : (JSON.parse(readFileSync(flags.config, "utf8")) as Record<string, unknown>);
  const pick = <T>(flag: T | undefined, key: string): T | undefined =>
    flag ?? (file[key] as T | undefined);
  const peersText = pick(flags.peers, "peers");
  const peers =
    typeof peersText === "string"
      ? parsePeers(peersText)
      : ((peersText as NodeConfigInput["peers"] | undefined) ?? []);
  const election =
    flags.electionMs ?? (typeof file.electionMs === "string" ? range(file.electionMs) : undefined);
  const data = pick(flags.data, "data");
  const input: Record<string, unknown> = {
    id: pick(flags.id, "id") ?? 0,
    peers,
    listen: pick(flags.listen, "listen"),
    http: pick(flags.http, "http") ?? null,
    dataDir: flags.memory === true ? null : (data ?? null),
    clusterId: pick(flags.clusterId, "clusterId"),
    heartbeatMs: pick(flags.heartbeatMs, "heartbeatMs"),
    electionMsMin: election?.[0],
    electionMsMax: election?.[1],
    tickMs: pick(flags.tickMs, "tickMs"),
    snapshotEntries: pick(flags.snapshotEntries, "snapshotEntries"),
    snapshotKeepEntries: pick(flags.snapshotKeepEntries, "snapshotKeepEntries"),
    join: pick(flags.join, "join"),
    tlsCa: pick(flags.tlsCa, "tlsCa"),
    tlsCert: pick(flags.tlsCert, "tlsCert"),
    tlsKey: pick(flags.tlsKey, "tlsKey"),
    httpTlsCert: pick(flags.httpTlsCert, "httpTlsCert"),
    httpTlsKey: pick(flags.httpTlsKey, "httpTlsKey"),
    tokens: pick(flags.tokens, "tokens"),
    insecure: pick(flags.insecure, "insecure"),
  };
  return input as unknown as NodeConfigInput;
}

/** Adds `start` to `program`; it sets `io.exitCode` when it ends. */
export function register(program: Command, io: CliIo = processIo()): void {
  program
    .command("start")
    .description("run one node of a Baton cluster (a replicated key-value store with an HTTP API)")
    .option("--id <n>", "this node's id, one of the ids in --peers", positive)
    .option(
      "--listen <host:port>",
      "node-to-node address (default: this node's address in --peers)",
    )
    .option("--http <host:port>", "client HTTP API address")
    .option("--peers <list>", "every member: 1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103")
    .option("--data <dir>", "data directory (write-ahead log, snapshots, hard state)")
    .option("--memory", "keep everything in memory (no durability: tests and demos only)")
    .option(
      "--config <file>",
      "JSON file with the same settings (id, listen, http, peers, data, ...); flags win",
    )
    // No commander default here: it would override a config file's clusterId.
    .option(
      "--cluster-id <name>",
      'cluster name; nodes of another cluster are refused (default "baton")',
    )
    .option("--heartbeat-ms <ms>", "master heartbeat interval (default 50)", positive)
    .option("--election-ms <min-max>", "election timeout range (default 300-600)", range)
    .option("--tick-ms <ms>", "timer resolution (default 10)", positive)
    .option("--snapshot-entries <n>", "snapshot every n applied entries (default 10000)", positive)
    .option(
      "--snapshot-keep-entries <n>",
      "entries kept in the log behind a snapshot, for backups slightly behind (default 5000)",
      nonNegative,
    )
    .option(
      "--join",
      "this node's data directory was wiped: rejoin the cluster without voting until a master has caught it up (ignored when the directory holds state)",
    )
    .option("--log-level <level>", "fatal, error, warn, info, debug", "info")
    .option(
      "--allow-fault-injection",
      "serve POST /v1/faults/{kill,pause,partition,heal} (demos and teaching only: anyone who can reach the HTTP port can then crash this node)",
    )
    .option(
      "--tls-ca <file>",
      "cluster CA certificate for mutual TLS between nodes (baton certs ca)",
    )
    .option("--tls-cert <file>", "this node's certificate for mutual TLS (baton certs node)")
    .option("--tls-key <file>", "this node's private key for mutual TLS")
    .option("--http-tls-cert <file>", "serve the HTTP API over HTTPS with this certificate")
    .option("--http-tls-key <file>", "the HTTPS certificate's private key")
    .option("--tokens <file>", "require API tokens from this file (baton certs token)")
    .option(
      "--insecure",
      "allow addresses other machines can reach without TLS and tokens (trusted networks only)",
    )
    .addHelpText(
      "after",
      `
Example (three nodes on one machine, one command each):
  baton start --id 1 --listen 127.0.0.1:7101 --http 127.0.0.1:8101 \\
    --peers 1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103 --data ./data/n1

Or let "baton demo" start three for you.

On addresses other machines can reach, a node needs mutual TLS, HTTPS and tokens (or
--insecure); "baton certs --help" makes them, and SIGHUP reloads them.`,
    )
    .action(async (flags: StartFlags) => {
      io.exitCode = await start(flags);
    });
}

async function start(flags: StartFlags): Promise<number> {
  if (flags.data === undefined && flags.memory !== true && flags.config === undefined) {
    console.error(
      "baton start: --data <dir> is required (or --memory for a node without durability)",
    );
    return 2;
  }
  let config: ReturnType<typeof parseNodeConfig>;
  try {
    config = parseNodeConfig(configInput(flags));
  } catch (error) {
    console.error(`baton start: ${(error as Error).message}`);
    return 2;
  }
  const exposure = insecureExposure(config);
  if (exposure !== null) {
    console.error(`baton start: ${exposure}`);
    return 2;
  }
  const logger = pino({ name: "baton", level: flags.logLevel, base: { node: config.id } });
  let kv: KvNode;
  try {
    kv = await KvNode.start(config, logger, {
      allowFaultInjection: flags.allowFaultInjection === true,
    });
  } catch (error) {
    const err = error as Error & { code?: string };
    logger.fatal({ event: "fatal", err }, err.message);
    console.error(`baton start: node ${config.id} could not start: ${err.message}`);
    return 1;
  }
  logger.info(
    { event: "serving", http: config.http, listen: config.listen },
    `node ${config.id} serving${config.http === null ? "" : ` on http://${config.http}`}`,
  );
  if (flags.allowFaultInjection === true) {
    logger.warn(
      { event: "fault_injection" },
      "fault injection is on: anyone who can reach the HTTP port can kill, pause or partition this node",
    );
  }
  if (config.insecure) {
    logger.warn(
      { event: "insecure" },
      "--insecure: peers and clients are not authenticated and traffic is not encrypted",
    );
  }
  if (isReloadable(config)) process.on("SIGHUP", () => reload(kv, logger));
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string, code: number): void => {
      if (stopping) return;
      stopping = true;
      logger.info({ event: "shutdown", signal }, `stopping on ${signal}`);
      // SIGTERM is a planned stop: a master hands its role over first, so that a rolling
      // restart costs no fail-over. SIGINT (Ctrl-C, which stops every node of a demo at
      // once) and a fatal error stop at once.
      void kv.stop({ handOver: signal === "SIGTERM" }).then(() => resolve(code));
    };
    process.on("SIGINT", () => stop("SIGINT", 0));
    process.on("SIGTERM", () => stop("SIGTERM", 0));
    kv.node.on("fatal", (error) => {
      console.error(`baton start: node ${config.id} stopped: ${error.message}`);
      stop("fatal", 1);
    });
  });
}

/**
 * Whether the node has certificate or token files that SIGHUP reloads. Only such a node
 * takes SIGHUP over: elsewhere it keeps its default meaning (the terminal went away: stop),
 * which nodes started from a shell, demos included, rely on.
 */
function isReloadable(config: NodeConfig): boolean {
  return [config.tlsCa, config.httpTlsCert, config.tokens].some((file) => file !== null);
}

/** Re-reads certificates and tokens; a part that fails keeps what it had and is logged. */
function reload(kv: KvNode, logger: pino.Logger): void {
  const { reloaded, failed } = kv.reload();
  for (const problem of failed) {
    logger.error({ event: "reload_failed", detail: problem }, `SIGHUP: kept the old ${problem}`);
  }
  const what = reloaded.join(", ") || "nothing";
  logger.info({ event: "reloaded", reloaded }, `SIGHUP: reloaded ${what}`);
}
