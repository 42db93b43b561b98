/**
 * `baton start`: runs one node of a cluster in this process until SIGINT or SIGTERM.
 * Flags, BATON_* variables or a JSON config file (start-config.ts: one schema, flags win)
 * give the node's identity, addresses, peers and data directory; every bad field is reported
 * at once. Logs are JSON lines on stdout.
 *
 * Secure by default: on an address other machines can reach it refuses to start without
 * mutual TLS between nodes, HTTPS and tokens (unless --insecure), and says how to make
 * them; on loopback it runs as it always did. SIGHUP re-reads certificates and tokens.
 */

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { isatty } from "node:tty";
import type { Command } from "commander";
import pino, { type Logger } from "pino";
import { KvNode } from "../../app/kv-node.js";
import { createClient } from "../../client/index.js";
import type { JoinedIdentity } from "../../server/create-node.js";
import { insecureExposure, type NodeConfig } from "../../server/node-config.js";
import { emptyDirectory, makeDirectory } from "../../shared/make-directory.js";
import {
  type DataIdentity,
  decodeIdentity,
  identityFileName,
} from "../../storage/identity-store.js";
import { type CliIo, processIo } from "./cli-io.js";
import { credentialsFrom } from "./cluster-options.js";
import {
  loadStartConfig,
  peerPortNote,
  rawSetting,
  rawSettingLabel,
  readConfigOnce,
  type StartSources,
  settingLabel,
  storeQuotaOf,
  unusablePaths,
} from "./start-config.js";

/** What commander hands over: the settings (as text; start-config checks them) and --config. */
type StartFlags = Record<string, unknown> & { config?: string };

/** Adds `start` to `program`; it sets `io.exitCode` when it ends. */
export function register(program: Command, io: CliIo = processIo()): void {
  program
    .command("start")
    .description("run one node of a Baton cluster (a replicated key-value store with an HTTP API)")
    .option("--id <n>", "this node's id, one of the ids in --peers")
    .option(
      "--listen <host:port>",
      "node-to-node address to bind, 0.0.0.0:<port> for every interface (default: this node's address in --peers)",
    )
    .option("--http <host:port>", "client HTTP API address (required, or --no-http)")
    .option("--no-http", "serve no HTTP API (a node only other members talk to)")
    .option(
      "--advertise-http <host:port>",
      "where clients and members reach the HTTP API, when --http is 0.0.0.0 or behind NAT",
    )
    .option(
      "--advertise-peer <host:port>",
      "where members reach this node (default and required value: its address in --peers)",
    )
    .option("--peers <list>", "every member: 1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103")
    .option("--data <dir>", "data directory (write-ahead log, snapshots, hard state); required")
    .option(
      "--memory",
      "instead of --data: keep everything in memory (no durability: tests, demos)",
    )
    .option(
      "--config <file>",
      "JSON file of settings named like the flags (id, listen, http, peers, data, heartbeatMs, ...); the environment (BATON_*) and flags win over it (default: $BATON_CONFIG)",
    )
    .option(
      "--cluster-id <name>",
      'cluster name; nodes of another cluster are refused (default "baton")',
    )
    .option("--heartbeat-ms <ms>", "master heartbeat interval (default 50)")
    .option("--election-ms <min-max>", "election timeout range (default 300-600)")
    .option("--tick-ms <ms>", "timer resolution (default 10)")
    .option("--snapshot-entries <n>", "snapshot every n applied entries (default 10000)")
    .option(
      "--snapshot-bytes <n>",
      "also snapshot once the commands applied since the last snapshot hold n bytes (default 67108864, 64 MiB)",
    )
    .option(
      "--snapshot-keep-entries <n>",
      "entries kept in the log behind a snapshot, for backups slightly behind (default 5000)",
    )
    .option(
      "--snapshot-keep-bytes <n>",
      "at most n bytes of entries kept behind a snapshot, whatever --snapshot-keep-entries says (default 16777216, 16 MiB)",
    )
    .option(
      "--join [url]",
      "with the URL of any member: start a member added with `baton member add` or `baton member replace` (learns the cluster id, its identity and the members; --peers not needed). Without a URL (the old way back for a wiped node, superseded by `baton member replace`): on an empty directory, join only a cluster that never heard from this member, and catch up before voting (ignored when the directory holds state)",
    )
    .option("--log-level <level>", "fatal, error, warn, info, debug, trace (default info)")
    .option(
      "--allow-fault-injection",
      "serve POST /v1/faults/{kill,pause,partition,heal} to callers on this machine that hold the per-run token GET /v1/faults gives them (demos and teaching only: any program on this machine can then crash this node)",
    )
    .option(
      "--quota-keys <n>",
      "most keys the store holds; writes past it answer 507 (default 1000000, 0 for none; give every node the same)",
    )
    .option(
      "--quota-bytes <n>",
      "most bytes of keys and values the store holds (default 268435456, 0 for none; give every node the same)",
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
      "--ca <file>",
      "with --join <https://…>: CA certificate of the member's HTTPS API (default: $BATON_CA, else --tls-ca)",
    )
    .option(
      "--token <token>",
      "with --join <url>: API token with the admin role (default: $BATON_TOKEN)",
    )
    .option("--token-file <file>", "with --join <url>: read the API token from a file")
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

Every setting flag is also a config file key (--heartbeat-ms: "heartbeatMs") and an
environment variable (BATON_HEARTBEAT_MS); flags win over variables, variables over the
file. --config (or BATON_CONFIG), --ca, --token, --token-file and --join's URL are not
keys of the file. An unknown key is an error. "baton config check <file>" prints what a node would run with.

On addresses other machines can reach, a node needs mutual TLS, HTTPS and tokens (or
--insecure); "baton certs --help" makes them, and SIGHUP reloads them.`,
    )
    .action(async (flags: StartFlags) => {
      io.exitCode = await start(flags, io);
    });
}

/** The identity in `dataDir`, or null when there is none (or no directory). */
function readKnownIdentity(dataDir: string | null): DataIdentity | null {
  if (dataDir === null) return null;
  const path = join(dataDir, identityFileName);
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch {
    return null;
  }
  return decodeIdentity(bytes, path);
}

/**
 * Asks a member (`GET /v1/members/{id}/join`) what node `id`, added as a learner, must
 * know to start: its incarnation and the members. A member that has not received the
 * addition yet answers 409 (it still sees the old configuration): ask again for a few
 * seconds. Throws an Error saying what to do.
 */
async function learnJoin(
  url: string,
  id: number,
  credentials: { ca?: string; token?: string },
): Promise<{ readonly identity: JoinedIdentity; readonly clusterName: string | null }> {
  const client = createClient({
    endpoints: [url],
    ...credentials,
    deadlineMs: 10_000,
    attemptTimeoutMs: 5_000,
  });
  const deadline = Date.now() + 10_000;
  try {
    for (;;) {
      try {
        const info = await client.joinInfo(id);
        const identity = {
          clusterId: info.clusterId,
          incarnation: info.incarnation,
          members: info.members,
        };
        return { identity, clusterName: info.clusterName };
      } catch (error) {
        if ((error as { code?: string }).code !== "ERR_CONFLICT" || Date.now() > deadline) {
          throw new Error(`--join ${url}: ${(error as Error).message}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  } finally {
    await client.close();
  }
}

/**
 * The member incarnation the cluster lists for node `id`, asked once of the member at
 * `url`, or null when it cannot say in a few seconds: a restart must not depend on the
 * cluster being reachable, so this only catches a directory left over from before a
 * replacement.
 */
async function listedIncarnation(
  url: string,
  id: number,
  credentials: { ca?: string; token?: string },
): Promise<number | null> {
  const client = createClient({
    endpoints: [url],
    ...credentials,
    deadlineMs: 3_000,
    attemptTimeoutMs: 3_000,
  });
  try {
    return (await client.joinInfo(id)).incarnation;
  } catch {
    return null;
  } finally {
    await client.close();
  }
}

/**
 * The CA and token `--join <url>` asks with: the client's own options (`--ca`, else
 * BATON_CA, else the cluster CA of `--tls-ca`; `--token`, else `--token-file`, else
 * BATON_TOKEN), read by the same code as every `baton` command that talks to a cluster.
 */
function joinCredentials(
  flags: StartFlags,
  sources: StartSources,
  io: CliIo,
): { ca?: string; token?: string } {
  const text = (value: unknown) => (typeof value === "string" ? value : undefined);
  const envCa = io.env.BATON_CA !== undefined && io.env.BATON_CA !== "";
  // The cluster CA as the node reads it: --tls-ca, BATON_TLS_CA or tlsCa in the file.
  const ca = text(flags.ca) ?? (envCa ? undefined : text(rawSetting(sources, "tlsCa")));
  const token = text(flags.token);
  const tokenFile = text(flags.tokenFile);
  // A file that cannot be read is named as the user gave it, which is --ca only for --ca.
  const caGiven = text(flags.ca) !== undefined ? "--ca" : rawSettingLabel(sources, "tlsCa");
  return credentialsFrom(
    {
      ...(ca === undefined ? {} : { ca }),
      ...(token === undefined ? {} : { token }),
      ...(tokenFile === undefined ? {} : { tokenFile }),
    },
    io,
    caGiven,
  );
}

async function start(given: StartFlags, io: CliIo): Promise<number> {
  // `--join <url>`: a member added to a running cluster. It learns its incarnation and the
  // members from the member at the URL (or, on a restart, from its own data directory),
  // which stand in for --peers; the setting itself means the wiped-directory rejoin.
  let flags = given;
  let joined: JoinedIdentity | null = null;
  const configFile = given.config ?? nonEmpty(io.env.BATON_CONFIG);
  // SIGHUP is taken over before anything slow (asking the member of --join, recovering a
  // long log): a reload asked meanwhile (systemctl reload) would otherwise kill the
  // process by default, which systemd does not restart. It runs once the node is up.
  const sources = readConfigOnce({ flags: given, env: io.env, configFile });
  let started: { kv: KvNode; logger: Logger } | null = null;
  let reloadAsked = false;
  let logQueued: (() => void) | null = null;
  const onHangup = (): void => {
    if (started !== null) reload(started.kv, started.logger);
    else if (!reloadAsked) {
      reloadAsked = true;
      logQueued?.();
    }
  };
  const text = (value: unknown) => (typeof value === "string" ? value : null);
  const early = {
    tlsCa: text(rawSettingQuietly(sources, "tlsCa")),
    httpTlsCert: text(rawSettingQuietly(sources, "httpTlsCert")),
    tokens: text(rawSettingQuietly(sources, "tokens")),
  };
  let hangupTaken = takesSighup(early, io.env, isatty(0));
  if (hangupTaken) process.on("SIGHUP", onHangup);
  /** A start that ends before the node runs gives SIGHUP back. */
  const ended = (code: number): number => {
    if (hangupTaken) process.off("SIGHUP", onHangup);
    return code;
  };
  if (typeof given.join === "string") {
    // The id and the data directory may come from the environment or the config file. The
    // id is asked of the cluster first, so it is checked here, before anything is sent.
    const rawId = rawSetting(sources, "id");
    const id = Number(rawId);
    if (rawId === undefined || rawId === "" || !Number.isSafeInteger(id) || id < 1) {
      const found = rawId === undefined ? "none was given" : `not ${JSON.stringify(rawId)}`;
      io.stderr.write(
        `baton start: --join needs this node's id, a positive integer: give --id <n> (or "id" in the config file, or BATON_ID); ${found}\n`,
      );
      return ended(2);
    }
    try {
      const data = rawSetting(sources, "data");
      const known = readKnownIdentity(typeof data === "string" ? data : null);
      let clusterName: string | null = null;
      if (known === null) {
        const learned = await learnJoin(given.join, id, joinCredentials(given, sources, io));
        joined = learned.identity;
        clusterName = learned.clusterName;
        // The cluster's name, which every peer checks at the handshake: taken from the
        // cluster when this node names none, refused when it names another.
        const configured = rawSetting(sources, "clusterId");
        if (clusterName !== null && configured !== undefined && configured !== clusterName) {
          io.stderr.write(
            `baton start: --join ${given.join}: the cluster is named ${JSON.stringify(clusterName)}, but this node is set to ${JSON.stringify(configured)} (--cluster-id, BATON_CLUSTER_ID or clusterId in the config file): its peers would refuse it; give the cluster's name, or none to take it from the cluster\n`,
          );
          return ended(1);
        }
        if (configured !== undefined) clusterName = null;
      } else {
        const listed = await listedIncarnation(given.join, id, joinCredentials(given, sources, io));
        if (listed !== null && listed !== known.incarnation) {
          io.stderr.write(
            `baton start: --join ${given.join}: the cluster lists node ${id} as member incarnation ${listed} (it was replaced), but ${String(data)} holds incarnation ${known.incarnation}, whose votes and acknowledgements the cluster ignores: empty the data directory and start again with --join\n`,
          );
          return ended(1);
        }
      }
      const members = joined?.members ?? known?.appliedConfig?.config ?? known?.joinedConfig ?? [];
      flags = {
        ...given,
        join: false,
        peers: given.peers ?? members.map((m) => `${m.id}=${m.peerAddress}`).join(","),
        ...(clusterName === null ? {} : { clusterId: clusterName }),
      };
    } catch (error) {
      io.stderr.write(`baton start: ${(error as Error).message}\n`);
      // A --ca or --token-file that cannot be read is bad usage (2), as for every command;
      // what the cluster answered (or did not) is 1.
      return ended((error as { code?: unknown }).code === "ERR_INVALID_INPUT" ? 2 : 1);
    }
  }
  const loaded = loadStartConfig({ ...sources, flags });
  if (!loaded.ok) {
    io.stderr.write(`baton start: invalid configuration:\n  - ${loaded.problems.join("\n  - ")}\n`);
    return ended(2);
  }
  const { config, settings, origins } = loaded;
  const unusable = unusablePaths(config, origins);
  if (unusable.length > 0) {
    io.stderr.write(`baton start: invalid configuration:\n  - ${unusable.join("\n  - ")}\n`);
    return ended(2);
  }
  // Refused before the data directory is made: a refused start leaves nothing behind.
  const exposure = insecureExposure(config);
  if (exposure !== null) {
    io.stderr.write(`baton start: ${exposure}\n`);
    return ended(2);
  }
  if (config.dataDir !== null) {
    try {
      makeDirectory(config.dataDir, 0o700);
    } catch (error) {
      io.stderr.write(
        `baton start: invalid configuration:\n  - ${settingLabel("data", origins)}: ${(error as Error).message}; give a directory this user can create or write\n`,
      );
      return ended(2);
    }
  }
  // An empty directory must stay empty when the bootstrap gate refuses the node: what the
  // refused start wrote (an identity, a hard state, an empty log) would let the next start,
  // a supervisor's restart a few seconds later, skip the gate and run as a member the
  // cluster does not know (the master ignores its new incarnation).
  const startedEmpty = config.dataDir !== null && readdirSync(config.dataDir).length === 0;
  const allowFaultInjection = settings.allowFaultInjection === true;
  const logger = pino({
    name: "baton",
    level: settings.logLevel ?? "info",
    base: { node: config.id },
  });
  const queued = (): void =>
    logger.info({ event: "reload_queued" }, "SIGHUP while starting: reloading once started");
  if (reloadAsked) queued();
  logQueued = queued;
  if (!hangupTaken && takesSighup(config, io.env, isatty(0))) {
    hangupTaken = true;
    process.on("SIGHUP", onHangup);
  }
  let kv: KvNode;
  try {
    kv = await KvNode.start(config, logger, {
      allowFaultInjection,
      joined,
      quota: storeQuotaOf(settings),
    });
  } catch (error) {
    const err = error as Error & { code?: string };
    logger.fatal({ event: "fatal", err }, err.message);
    console.error(`baton start: node ${config.id} could not start: ${err.message}`);
    if (startedEmpty && err.code === REFUSED) await emptyAgain(config.dataDir!, logger);
    return ended(1);
  }
  logger.info(
    { event: "serving", http: config.http, listen: config.listen },
    `node ${config.id} serving${config.http === null ? "" : ` on ${config.httpTlsCert === null ? "http" : "https"}://${config.http}`}`,
  );
  if (allowFaultInjection) {
    logger.warn(
      { event: "fault_injection" },
      "fault injection is on: any program on this machine can kill, pause or partition this node",
    );
  }
  const portNote = peerPortNote(config);
  if (portNote !== null) logger.warn({ event: "peer_port" }, portNote);
  if (config.insecure) {
    logger.warn(
      { event: "insecure" },
      "--insecure: peers and clients are not authenticated and traffic is not encrypted",
    );
  }
  started = { kv, logger };
  if (reloadAsked) reload(kv, logger);
  return new Promise<number>((resolve) => {
    let stopping = false;
    let exitCode = 0;
    let refused = false;
    const stop = (signal: string, code: number): void => {
      // A fatal error during a stop already under way still makes the exit code 1.
      exitCode = Math.max(exitCode, code);
      if (stopping) {
        // A second Ctrl-C or SIGTERM while a stop (a master's hand-over) is under way: the
        // operator does not want to wait. The process ends as a crash would, which loses
        // nothing acknowledged.
        if (signal === "SIGINT" || signal === "SIGTERM") {
          logger.warn({ event: "shutdown", signal }, `${signal} again: stopping without waiting`);
          resolve(Math.max(exitCode, 1));
        }
        return;
      }
      stopping = true;
      logger.info({ event: "shutdown", signal }, `stopping on ${signal}`);
      // SIGTERM is a planned stop: a master hands its role over first, so that a rolling
      // restart costs no fail-over. SIGINT (Ctrl-C, which stops every node of a demo at
      // once) and a fatal error stop at once.
      kv.stop({ handOver: signal === "SIGTERM" }).then(
        async () => {
          if (refused) await emptyAgain(config.dataDir!, logger);
          resolve(exitCode);
        },
        (error: unknown) => {
          logger.error({ event: "stop_failed", err: error }, "stopping failed");
          resolve(1);
        },
      );
    };
    process.on("SIGINT", () => stop("SIGINT", 0));
    process.on("SIGTERM", () => stop("SIGTERM", 0));
    const onFatal = (error: Error): void => {
      io.stderr.write(`baton start: node ${config.id} stopped: ${error.message}\n`);
      refused = startedEmpty && (error as { code?: unknown }).code === REFUSED;
      stop("fatal", 1);
    };
    kv.node.on("fatal", onFatal);
    // A node that failed while its HTTP API was starting, before this listener, must stop
    // too: it would serve on with a dead node, and never exit for its supervisor to see.
    const failedEarly = kv.node.fatalError;
    if (failedEarly !== null) onFatal(failedEarly);
  });
}

/** BootstrapRefusedError's code: the cluster knows another incarnation of this empty node. */
const REFUSED = "ERR_BOOTSTRAP_REFUSED";

/**
 * Removes what a start refused by the bootstrap gate wrote into a data directory that was
 * empty before it (the node has stopped and released it), so that the next start meets
 * the gate again instead of running as a stranger to its cluster.
 */
async function emptyAgain(dataDir: string, logger: Logger): Promise<void> {
  await emptyDirectory(dataDir);
  logger.info(
    { event: "refused_cleanup", dataDir },
    `${dataDir} is empty again, as before this start: a restart is refused the same way until the member is replaced`,
  );
}

/** A setting's raw value, or undefined when its sources cannot be read yet (the full load says why). */
function rawSettingQuietly(
  sources: StartSources,
  name: "tlsCa" | "httpTlsCert" | "tokens",
): unknown {
  try {
    return rawSetting(sources, name);
  } catch {
    return undefined;
  }
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

/**
 * Whether `baton start` takes SIGHUP over as "reload" instead of leaving it its default
 * meaning (the terminal went away: stop), which nodes started from a shell, demos included,
 * rely on. It does when the node has certificate or token files to reload, and when a
 * service manager runs it: systemd sets INVOCATION_ID for a service's processes and gives
 * them no terminal, and `systemctl reload` sends SIGHUP whatever the configuration. Left
 * to its default there, SIGHUP killed a node without such files, and since systemd counts
 * death by SIGHUP as a clean exit, Restart=on-failure did not bring it back. (A shell in
 * a terminal started by a systemd user service inherits INVOCATION_ID, but has a terminal.)
 */
export function takesSighup(
  config: Pick<NodeConfig, "tlsCa" | "httpTlsCert" | "tokens">,
  env: Record<string, string | undefined>,
  stdinIsTty: boolean,
): boolean {
  if ([config.tlsCa, config.httpTlsCert, config.tokens].some((file) => file !== null)) return true;
  return nonEmpty(env.INVOCATION_ID) !== undefined && !stdinIsTty;
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
