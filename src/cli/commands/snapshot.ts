/**
 * `baton snapshot save FILE` and `baton snapshot restore FILE --data DIR`: backing a cluster
 * up and seeding a new one from the backup.
 *
 * `save` finds the master through any node, asks it for a snapshot (`POST /v1/snapshot`: it
 * holds every write acknowledged before the request) and writes it as a snapshot file, the
 * format of a data directory's `snapshots/*.snap` (header with the log index and term it
 * covers, the data, a CRC-32 trailer), checking the length and checksum the master announced.
 * The file appears under its name only once complete and on disk.
 *
 * `restore` checks every byte of such a file and makes DIR the data directory of a node that
 * starts from it: the snapshot, an empty log after it, a hard state at its term and a new
 * member identity. It refuses a DIR that holds anything, so it never overwrites a node's own
 * data. Restore the same file into each member's directory of a new cluster before its
 * first start.
 */

import { rmSync, type Stats } from "node:fs";
import { open, readdir, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { Command } from "commander";
import { Agent, request } from "undici";
import { normalizeEndpoint } from "../../client/server-pool.js";
import { drawIncarnation } from "../../server/create-node.js";
import { emptyDirectory } from "../../shared/make-directory.js";
import { DiskStorage } from "../../storage/disk-storage.js";
import { SnapshotCorruptError } from "../../storage/errors.js";
import { nodeFileSystem } from "../../storage/file-system.js";
import { IdentityStore } from "../../storage/identity-store.js";
import { readSnapshotData, SnapshotStore, snapshotMagic } from "../../storage/snapshot-store.js";
import { readU64 } from "../../storage/wal-format.js";
import type { CliIo } from "./cli-io.js";
import {
  addClusterOptions,
  type ClusterOptions,
  credentialsFrom,
  endpointsFrom,
  withClient,
} from "./cluster-options.js";
import { ExitCode } from "./exit-code.js";

const SAVE_TIMEOUT_MS_DEFAULT = 60_000;
/** How long `snapshot save` waits silently before saying that it is waiting, in ms. */
const SAVE_NOTICE_MS = 3000;

/** Adds `snapshot save` and `snapshot restore` to `program`; each sets `io.exitCode`. */
export function register(program: Command, io: CliIo): void {
  const snapshot = program
    .command("snapshot")
    .description("back a cluster up to a file, or seed a new cluster's data directory from one");
  addClusterOptions(
    snapshot
      .command("save")
      .description("save a consistent snapshot of the whole store from the master to FILE")
      .argument("<file>", "where to write the snapshot (written whole, then renamed into place)")
      .option("--force", "overwrite FILE if it exists"),
    SAVE_TIMEOUT_MS_DEFAULT,
  )
    .addHelpText(
      "after",
      `
Needs an admin token on a cluster with tokens. Prints the log index the snapshot covers
(every write whose revision is at most that index), its term, size and CRC-32. FILE's
directory must exist; an existing FILE is kept unless --force.

Example:
  baton snapshot save ./backup-$(date +%F).snap --endpoints https://10.0.0.1:8101 \\
    --ca ./pki/ca.crt --token-file ./admin.token`,
    )
    .action(async (file: string, options: SaveOptions) => {
      io.exitCode = await save(file, options, io);
    });
  snapshot
    .command("restore")
    .description("make an empty DIR the data directory of a new cluster's node, from FILE")
    .argument("<file>", "a file written by `baton snapshot save`")
    .requiredOption("--data <dir>", "the data directory to seed; must be empty or absent")
    .addHelpText(
      "after",
      `
Restore the same file into every member's directory of the new cluster, then start the
members as usual (baton start ... --data DIR). Never into a running node's directory.

Example:
  baton snapshot restore ./backup.snap --data /var/lib/baton`,
    )
    .action(async (file: string, options: { data: string }) => {
      io.exitCode = await restore(file, options.data, io);
    });
}

interface SnapshotAnswer {
  readonly index: number;
  readonly term: number;
  readonly bytes: number;
  readonly crc32: number;
  readonly body: AsyncIterable<Uint8Array>;
  readonly from: string;
}

interface SaveOptions extends ClusterOptions {
  readonly force?: boolean;
}

async function save(file: string, options: SaveOptions, io: CliIo): Promise<number> {
  let credentials: { ca?: string; token?: string };
  try {
    credentials = credentialsFrom(options, io);
  } catch (error) {
    io.stderr.write(`baton snapshot save: ${(error as Error).message}\n`);
    return ExitCode.usage;
  }
  // Checked before the master is asked: a snapshot costs it, and one with nowhere to go
  // would be taken for nothing.
  const refusal = await targetProblem(file, options.force === true);
  if (refusal !== null) {
    io.stderr.write(`baton snapshot save: ${refusal}\n`);
    return ExitCode.usage;
  }
  const timeoutMs = options.timeout ?? SAVE_TIMEOUT_MS_DEFAULT;
  const deadline = Date.now() + timeoutMs;
  const agent = new Agent(credentials.ca === undefined ? {} : { connect: { ca: credentials.ca } });
  let unreachable: { id: number; from: string; text: string } | null = null;
  // A cluster without a master (or no cluster at all) is waited for until the deadline: say
  // so, rather than sit silent for a minute.
  const notice = setTimeout(() => {
    io.stderr.write(
      `baton snapshot save: no snapshot yet; waiting for a master and its answer, up to ${Math.round(timeoutMs / 1000)} s in all (--timeout)\n`,
    );
  }, SAVE_NOTICE_MS);
  try {
    return await withClient(io, options, SAVE_TIMEOUT_MS_DEFAULT, async (client) => {
      // Checked already: the client was made from them.
      const given = endpointsFrom(options, io).map(normalizeEndpoint);
      for (;;) {
        const status = await client.status();
        const master = status.members.find((m) => m.id === status.master);
        // The master's own status names its HTTP API, or null when it serves none; another
        // node's may not know it yet (ask again).
        if (master !== undefined && master.httpUrl == null && status.id === status.master) {
          io.stderr.write(
            `baton snapshot save: the master, node ${master.id}, serves no HTTP API (--no-http), so it cannot send a snapshot\n`,
          );
          return ExitCode.failed;
        }
        let answer =
          master?.httpUrl == null
            ? null
            : await fetchSnapshot(master.httpUrl, agent, credentials, deadline);
        if (master !== undefined && answer !== null && "text" in answer && answer.unreachable) {
          // The address the master advertises may not be reachable from here (a port
          // forward, NAT, a load balancer) while an address given is: only the master
          // answers with a snapshot, the others 503.
          unreachable = { id: master.id, from: answer.from, text: answer.text };
          answer =
            (await fromEndpoints(given, master.httpUrl!, agent, credentials, deadline)) ?? answer;
        }
        if (answer !== null && "index" in answer) {
          clearTimeout(notice);
          const written = await writeSnapshotFile(file, answer);
          io.stdout.write(
            `saved ${file}: index ${answer.index} (every write up to revision ${answer.index}), term ${answer.term}, ${written} bytes of data, crc32 ${hex(answer.crc32)}, from ${answer.from}\n`,
          );
          return ExitCode.ok;
        }
        if (answer !== null && answer.status !== 503) {
          io.stderr.write(
            `baton snapshot save: ${answer.status} from ${answer.from}: ${answer.text}\n`,
          );
          return answer.status === 401 || answer.status === 403 ? ExitCode.denied : ExitCode.failed;
        }
        if (Date.now() > deadline) {
          io.stderr.write(
            unreachable === null
              ? "baton snapshot save: no master gave a snapshot in time; is the cluster up? (baton status)\n"
              : `baton snapshot save: the master, node ${unreachable.id}, did not answer at the address it advertises, ${unreachable.from} (${unreachable.text}), and no address in --endpoints reached it: give one that reaches the master from this machine (the address the cluster hands out is the master's --advertise-http)\n`,
          );
          return ExitCode.unavailable;
        }
        // No master yet, or it changed between the status and the request: ask again.
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    });
  } finally {
    clearTimeout(notice);
    await agent.close();
  }
}

/**
 * Why `file` cannot take a snapshot, or null: it exists (without `force`: an earlier
 * backup is not replaced by mistake), it is a directory, or its directory is missing
 * (made by hand, as a backup's place is chosen, never by a typo).
 */
async function targetProblem(file: string, force: boolean): Promise<string | null> {
  let found: Stats | null = null;
  try {
    found = await stat(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== "ENOENT" && code !== "ENOTDIR") {
      return `cannot use ${file}: ${(error as Error).message}`;
    }
  }
  if (found?.isDirectory() === true) {
    return `${file} is a directory: give a file name in it, such as ${join(file, "backup.snap")}`;
  }
  if (found !== null && !force) {
    return `${file} already exists: pass --force to overwrite it, or give another FILE`;
  }
  const dir = dirname(file);
  const parent = await stat(dir).catch(() => null);
  if (parent === null) {
    return `the directory ${dir} does not exist: create it first (mkdir -p ${dir}), or save into one that exists`;
  }
  if (!parent.isDirectory()) return `${dir} is not a directory: give a FILE in a directory`;
  return null;
}

/** A snapshot, or a refusal: `unreachable` when no answer came at all (read as a 503). */
type FetchOutcome =
  | SnapshotAnswer
  | { status: number; text: string; from: string; unreachable?: boolean };

/**
 * A snapshot from whichever of `endpoints` (other than `masterUrl`) is the master, or a
 * refusal other than 503 (a token without the role), or null when none gave either.
 */
async function fromEndpoints(
  endpoints: readonly string[],
  masterUrl: string,
  agent: Agent,
  credentials: { token?: string },
  deadline: number,
): Promise<FetchOutcome | null> {
  for (const endpoint of endpoints) {
    if (endpoint === normalizeEndpoint(masterUrl)) continue;
    const answer = await fetchSnapshot(endpoint, agent, credentials, deadline);
    if ("index" in answer || answer.status !== 503) return answer;
  }
  return null;
}

/** Longest a snapshot's body may pause while it streams before the save gives up, ms. */
const BODY_IDLE_MS_MAX = 30_000;

/**
 * Asks `baseUrl` for a snapshot. Its answer must begin (headers) before `deadline`, the
 * save's --timeout; the body that follows may take as long as it needs, as long as it
 * never pauses for BODY_IDLE_MS_MAX.
 */
async function fetchSnapshot(
  baseUrl: string,
  agent: Agent,
  credentials: { token?: string },
  deadline: number,
): Promise<FetchOutcome> {
  const from = baseUrl.replace(/\/$/, "");
  let response: Awaited<ReturnType<typeof request>>;
  try {
    response = await request(`${from}/v1/snapshot`, {
      method: "POST",
      dispatcher: agent,
      headersTimeout: Math.max(1, deadline - Date.now()),
      bodyTimeout: BODY_IDLE_MS_MAX,
      headers:
        credentials.token === undefined ? {} : { authorization: `Bearer ${credentials.token}` },
    });
  } catch (error) {
    // The master went away between the status and the request (a fail-over), or its
    // address does not reach it from here: like a 503, the caller asks again until its
    // deadline, through the addresses it was given too.
    return { status: 503, text: (error as Error).message, from, unreachable: true };
  }
  if (response.statusCode !== 200) {
    return { status: response.statusCode, text: (await response.body.text()).slice(0, 500), from };
  }
  const header = (name: string): number => {
    const value = Number(response.headers[name]);
    if (!Number.isSafeInteger(value) || value < 0) {
      throw new Error(`${from} answered without a valid ${name} header`);
    }
    return value;
  };
  try {
    return {
      index: header("baton-snapshot-index"),
      term: header("baton-snapshot-term"),
      bytes: header("content-length"),
      crc32: header("baton-snapshot-crc32"),
      body: response.body,
      from,
    };
  } catch (error) {
    // The body is not read: end it now, or closing the agent waits for it.
    response.body.destroy();
    throw error;
  }
}

/**
 * Writes `answer` as a snapshot file at `file`: streamed into a folder beside it by the
 * snapshot store (durable, with its header and trailer), checked against the announced
 * length and CRC-32, then renamed into place. Returns the data's size.
 */
async function writeSnapshotFile(file: string, answer: SnapshotAnswer): Promise<number> {
  await removeAbandonedWork(file);
  const work = join(dirname(file), `.${basename(file)}.${process.pid}.partial`);
  // Ctrl-C or a SIGTERM would end the process without the `finally` below: the folder (as
  // large as the store) would stay behind, hidden.
  const onSignal = (signal: NodeJS.Signals): void => {
    rmSync(work, { recursive: true, force: true });
    process.kill(process.pid, signal);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const { store } = await SnapshotStore.open(work, nodeFileSystem, 1);
    const stored = await store.save({ index: answer.index, term: answer.term }, answer.body);
    if (stored.dataBytes !== answer.bytes || stored.dataCrc32 !== answer.crc32) {
      throw new Error(
        `the snapshot from ${answer.from} arrived damaged: ${stored.dataBytes} bytes with crc32 ${hex(stored.dataCrc32)}, announced ${answer.bytes} bytes with crc32 ${hex(answer.crc32)}; nothing was written to ${file}`,
      );
    }
    await rename(stored.path, file);
    // The new name is durable only once its directory is.
    await nodeFileSystem.syncDir(dirname(file));
    return stored.dataBytes;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Removes the work folders (`.FILE.PID.partial`) that earlier saves of `file` left when
 * their process was killed (SIGKILL, a power loss): those whose process is gone.
 */
async function removeAbandonedWork(file: string): Promise<void> {
  const prefix = `.${basename(file)}.`;
  let names: string[];
  try {
    names = await readdir(dirname(file));
  } catch {
    return; // the write below reports a missing or unreadable directory
  }
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith(".partial")) continue;
    const pid = Number(name.slice(prefix.length, -".partial".length));
    if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid || isRunning(pid)) continue;
    await rm(join(dirname(file), name), { recursive: true, force: true });
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * `baton snapshot restore`. `afterCheck` runs between the check of the file and the
 * opening of the directory (tests: another process writing to it meanwhile).
 */
export async function restore(
  file: string,
  dataDir: string,
  io: CliIo,
  afterCheck: () => Promise<void> = async () => {},
): Promise<number> {
  const fail = (message: string, code: number = ExitCode.failed): number => {
    io.stderr.write(`baton snapshot restore: ${message}\n`);
    return code;
  };
  let present: string[];
  try {
    present = await readdir(dataDir).catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return [];
      throw error;
    });
  } catch (error) {
    return fail(`--data ${dataDir}: ${(error as Error).message}`, ExitCode.usage);
  }
  if (present.length > 0) {
    return fail(
      `--data ${dataDir} is not empty: restore seeds a new node's data directory and never writes over one (move it aside, or give an empty directory)`,
      ExitCode.usage,
    );
  }
  let meta: { index: number; term: number };
  try {
    meta = await readSnapshotMeta(file);
    // Every byte is checked before anything is written to the data directory.
    const check = readSnapshotData(nodeFileSystem, file, meta);
    while (!(await check.next()).done);
  } catch (error) {
    // The storage error's advice is a node's (wipe and rejoin); here only a file is damaged.
    if (error instanceof SnapshotCorruptError) {
      return fail(
        `${file} is damaged at byte ${error.offset}: ${error.detail}; nothing was written to ${dataDir}: restore another backup (baton snapshot save makes one from a running cluster)`,
      );
    }
    if (error instanceof NotASnapshotFileError) return fail(error.message, ExitCode.usage);
    return fail(`${(error as Error).message}`);
  }
  await afterCheck();
  let opened: Awaited<ReturnType<typeof DiskStorage.open>>;
  try {
    opened = await DiskStorage.open(dataDir);
  } catch (error) {
    // Nothing of ours is there to remove: another process may hold the directory (a node
    // started on it meanwhile), and what it holds is not restore's to delete.
    return fail(`cannot open ${dataDir}: ${(error as Error).message}`);
  }
  const others = (await readdir(dataDir)).filter((name) => !CREATED_BY_OPEN.has(name));
  if (opened.hardState.term !== 0 || opened.entries.length > 0 || others.length > 0) {
    await opened.storage.close();
    return fail(
      `--data ${dataDir} is no longer empty (${others.join(", ") || "it holds a log"}): something wrote to it while the snapshot was checked; restore writes only into an empty directory`,
      ExitCode.usage,
    );
  }
  try {
    const { storage } = opened;
    try {
      const receiver = await storage.receiveSnapshot(meta);
      let offset = 0;
      for await (const chunk of readSnapshotData(nodeFileSystem, file, meta)) {
        offset = await receiver.write(offset, chunk);
      }
      await receiver.finish();
      storage.setHardState({ term: meta.term, votedFor: null, commitIndex: meta.index });
      await storage.sync();
      // A new member's identity, as a node's first start on an empty directory writes it
      // (without one the node would take the directory for one of Baton 0.1 or 0.2); the
      // cluster id comes with the snapshot's configuration.
      const identity = await IdentityStore.open(dataDir, nodeFileSystem);
      await identity.save({
        clusterId: null,
        incarnation: drawIncarnation(),
        joinedConfig: null,
        appliedConfig: null,
      });
    } finally {
      await storage.close();
    }
  } catch (error) {
    // A half-restored directory would start as an empty node: leave none behind (the
    // directory was empty or absent before).
    await emptyDirectory(dataDir);
    return fail(
      `writing ${dataDir} failed, and what was written is removed: ${(error as Error).message}`,
    );
  }
  io.stdout.write(
    `restored ${file} into ${dataDir}: index ${meta.index}, term ${meta.term}; start the node with --data ${dataDir}\n`,
  );
  return ExitCode.ok;
}

/** What opening storage on an empty directory creates (restore's own, safe to remove). */
const CREATED_BY_OPEN = new Set(["LOCK", "wal", "snapshots"]);

/** The FILE argument of `restore` is not a snapshot file that can be read: bad usage. */
class NotASnapshotFileError extends Error {}

/**
 * The index and term in a snapshot file's header; throws NotASnapshotFileError naming the
 * file when it cannot be read or is not one.
 */
async function readSnapshotMeta(file: string): Promise<{ index: number; term: number }> {
  const notOne = (why: string): NotASnapshotFileError =>
    new NotASnapshotFileError(
      `${file} ${why}: give the path of a file \`baton snapshot save\` wrote (nothing was written)`,
    );
  const handle = await open(file, "r").catch((error: NodeJS.ErrnoException) => {
    throw notOne(`cannot be read (${error.code ?? error.message})`);
  });
  try {
    const header = Buffer.alloc(32);
    const { bytesRead } = await handle
      .read(header, 0, 32, 0)
      .catch((error: NodeJS.ErrnoException) => {
        throw notOne(
          error.code === "EISDIR"
            ? "is a directory"
            : `cannot be read (${error.code ?? error.message})`,
        );
      });
    if (bytesRead < 32 || !header.subarray(0, 8).equals(snapshotMagic)) {
      throw notOne("is not a snapshot file");
    }
    return { index: readU64(header, 16), term: readU64(header, 24) };
  } finally {
    await handle.close();
  }
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, "0")}`;
}
