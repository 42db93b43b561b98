/**
 * `baton certs`: makes what a secure cluster needs, as files, and says what to do next.
 *
 *   baton certs ca --out DIR                                  the cluster CA (ca.crt, ca.key)
 *   baton certs node --id N --ca DIR --host H… --out DIR      a node's certificate and key
 *   baton certs token --name N --role R --tokens FILE         a bearer token for the HTTP API
 *
 * It owns the file names, refusing to overwrite (unless --force), private keys written
 * readable by their owner only, and the messages; issuing is cert-issuer.ts's, loaded only
 * when a certificate is made, so that no other command pays for the X.509 library.
 */

import { existsSync } from "node:fs";
import { chmod, chown, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { isIP } from "node:net";
import { dirname, join, resolve } from "node:path";
import { type Command, InvalidArgumentError } from "commander";
import {
  formatTokensFile,
  hashToken,
  newToken,
  parseTokensFile,
  TOKEN_NAME_PATTERN,
  TOKEN_ROLES,
  type TokenRecord,
  type TokenRole,
} from "../../http/tokens.js";
import { makeDirectory } from "../../shared/make-directory.js";
import type { IssuedPair } from "./cert-issuer.js";
import { type CliIo, processIo } from "./cli-io.js";
import { ExitCode } from "./exit-code.js";

/** The files `baton certs` writes, by what they hold. */
export const CERT_FILES = {
  caCert: "ca.crt",
  caKey: "ca.key",
  nodeCert: "node.crt",
  nodeKey: "node.key",
} as const;

const CA_DAYS_DEFAULT = 3650;
const NODE_DAYS_DEFAULT = 365;

interface CaOptions {
  readonly out: string;
  readonly days: number;
  readonly force?: boolean;
}

interface NodeOptions {
  readonly id: number;
  readonly ca: string;
  readonly host: string[];
  readonly out: string;
  readonly clusterId?: string;
  readonly days: number;
  readonly force?: boolean;
}

interface TokenOptions {
  readonly name: string;
  readonly role: TokenRole;
  readonly tokens: string;
  /** Write the token to this file (0600) instead of printing it. */
  readonly tokenFile?: string;
}

/** Adds `certs` with its subcommands `ca`, `node` and `token` to `program`. */
export function register(program: Command, io: CliIo = processIo()): void {
  const certs = program
    .command("certs")
    .description("make the CA, node certificates and API tokens of a secure cluster")
    .addHelpText(
      "after",
      `
A secure cluster, step by step (docs/security.md has the whole story):
  baton certs ca --out ./pki
  baton certs node --id 1 --ca ./pki --host node1.example.net --host 10.0.0.1 --out ./pki/node1
  baton certs token --name ops --role admin --tokens ./pki/tokens.json`,
    );
  registerCa(certs, io);
  registerNode(certs, io);
  registerToken(certs, io);
}

function registerCa(certs: Command, io: CliIo): void {
  certs
    .command("ca")
    .description("make a cluster CA: ca.crt (give it to every node and client) and ca.key")
    .requiredOption("--out <dir>", "directory to write ca.crt and ca.key to")
    .option("--days <n>", "validity in days", days, CA_DAYS_DEFAULT)
    .option("--force", "overwrite existing files")
    .action(async (options: CaOptions) => {
      io.exitCode = await run(io, () => makeCa(io, options));
    });
}

function registerNode(certs: Command, io: CliIo): void {
  certs
    .command("node")
    .description("make a node's certificate (for peer mTLS and HTTPS), signed by the cluster CA")
    .requiredOption("--id <n>", "the node's member id", memberId)
    .requiredOption("--ca <dir>", "the CA directory (ca.crt and ca.key from `baton certs ca`)")
    .requiredOption(
      "--host <names...>",
      "every DNS name and IP address clients and peers use for this node",
      hosts,
    )
    .requiredOption("--out <dir>", "directory to write node.crt, node.key and ca.crt to")
    .option("--cluster-id <name>", "name the cluster in the certificate (nodes then check it)")
    .option("--days <n>", "validity in days", days, NODE_DAYS_DEFAULT)
    .option("--force", "overwrite existing files")
    .action(async (options: NodeOptions) => {
      io.exitCode = await run(io, () => makeNode(io, options));
    });
}

function registerToken(certs: Command, io: CliIo): void {
  certs
    .command("token")
    .description("make an HTTP API token, add its hash to a tokens file, print the token once")
    .requiredOption(
      "--name <name>",
      "who the token is for, 1 to 100 printable ASCII characters without spaces (shown in logs, never the token)",
      tokenName,
    )
    .requiredOption(`--role <role>`, `${TOKEN_ROLES.join(", ")}`, role)
    .requiredOption("--tokens <file>", "the tokens file (created if missing)")
    .option(
      "--token-file <file>",
      "write the token to this new file (readable by its owner alone) instead of printing it; what --token-file of every other command reads",
    )
    .action(async (options: TokenOptions) => {
      io.exitCode = await run(io, () => makeToken(io, options));
    });
}

async function makeCa(io: CliIo, options: CaOptions): Promise<number> {
  const out = resolve(options.out);
  const files = [join(out, CERT_FILES.caCert), join(out, CERT_FILES.caKey)] as const;
  if (!options.force && refuseOverwrite(io, files)) return ExitCode.usage;
  const { issueCa } = await import("./cert-issuer.js");
  const ca = await issueCa({ validDays: options.days });
  await writePair(out, files, ca);
  io.stdout.write(
    `wrote ${files[0]} (the CA certificate: every node and client trusts it)\n` +
      `wrote ${files[1]} (the CA key: keep it off the nodes, it signs certificates)\n\n` +
      `Next: a certificate for each node, naming every address it is reached at:\n` +
      `  baton certs node --id 1 --ca ${options.out} --host <node 1's name or IP> --out ${join(options.out, "node1")}\n`,
  );
  return ExitCode.ok;
}

async function makeNode(io: CliIo, options: NodeOptions): Promise<number> {
  const caDir = resolve(options.ca);
  const ca = await readCa(io, caDir);
  if (ca === null) return ExitCode.usage;
  const out = resolve(options.out);
  const files = [join(out, CERT_FILES.nodeCert), join(out, CERT_FILES.nodeKey)] as const;
  const caCopy = join(out, CERT_FILES.caCert);
  if (!options.force && refuseOverwrite(io, [...files, caCopy])) return ExitCode.usage;
  const { issueNodeCert } = await import("./cert-issuer.js");
  const pair = await issueNodeCert(ca, {
    memberId: options.id,
    hosts: options.host,
    clusterId: options.clusterId ?? null,
    validDays: options.days,
  });
  await writePair(out, files, pair);
  await writeFile(caCopy, ca.certPem);
  const dir = options.out;
  io.stdout.write(
    `wrote ${files[0]} (node ${options.id}, for ${options.host.join(", ")})\n` +
      `wrote ${files[1]} (its private key, readable by its owner only)\n` +
      `wrote ${caCopy} (the cluster CA certificate)\n\n` +
      `Next: copy ${dir} to node ${options.id} and start it with\n` +
      `  --tls-ca ${join(dir, CERT_FILES.caCert)} --tls-cert ${join(dir, CERT_FILES.nodeCert)} --tls-key ${join(dir, CERT_FILES.nodeKey)} \\\n` +
      `  --http-tls-cert ${join(dir, CERT_FILES.nodeCert)} --http-tls-key ${join(dir, CERT_FILES.nodeKey)} --tokens <tokens file>\n` +
      `(a running node picks up renewed files on SIGHUP).\n`,
  );
  return ExitCode.ok;
}

async function makeToken(io: CliIo, options: TokenOptions): Promise<number> {
  const file = resolve(options.tokens);
  let records: TokenRecord[] = [];
  if (existsSync(file)) {
    try {
      records = parseTokensFile(await readFile(file, "utf8"));
    } catch (error) {
      io.stderr.write(`baton: ${file}: ${(error as Error).message}\n`);
      return ExitCode.usage;
    }
  }
  if (records.some((record) => record.name === options.name)) {
    io.stderr.write(
      `baton: ${file} already has a token named "${options.name}": choose another --name, or remove that line first\n`,
    );
    return ExitCode.usage;
  }
  // Checked before the tokens file changes: a token that could not be stored would be lost.
  const tokenFile = options.tokenFile === undefined ? null : resolve(options.tokenFile);
  if (tokenFile === file) {
    io.stderr.write(
      `baton: --token-file and --tokens are both ${file}: the token goes to a file of its own\n`,
    );
    return ExitCode.usage;
  }
  if (tokenFile !== null && existsSync(tokenFile)) {
    io.stderr.write(
      `baton: --token-file ${tokenFile} already exists: a token is written to a new file only (remove it first, or choose another)\n`,
    );
    return ExitCode.usage;
  }
  const token = newToken();
  records.push({ name: options.name, role: options.role, sha256: hashToken(token) });
  const text = formatTokensFile(records);
  // Whatever is written must load: every node reads this file at start and on SIGHUP.
  parseTokensFile(text);
  // A directory that is missing is the user's to make (and own): say so before anything is
  // written, rather than fail half-way with a bare ENOENT.
  for (const [flag, path] of [
    ["--tokens", file],
    ["--token-file", tokenFile],
  ] as const) {
    if (path === null || existsSync(dirname(path))) continue;
    io.stderr.write(
      `baton: ${flag} ${path}: the directory ${dirname(path)} does not exist: create it first (mkdir -p ${dirname(path)}), or give another ${flag}\n`,
    );
    return ExitCode.usage;
  }
  // As installed for the nodes (root:baton 0640, say): the new file must stay readable by
  // them, so it takes the old one's mode, and its owner and group when root can give them.
  const installed = existsSync(file) ? await stat(file) : null;
  // Written whole under another name, then renamed: a node reloading on SIGHUP never
  // reads half a file.
  const partial = `${file}.tmp-${process.pid}`;
  if (tokenFile !== null) await writeFile(tokenFile, `${token}\n`, { mode: 0o600, flag: "wx" });
  try {
    await writeFile(partial, text, { mode: 0o600 });
    if (installed !== null) {
      if (process.getuid?.() === 0) await chown(partial, installed.uid, installed.gid);
      await chmod(partial, installed.mode & 0o7777);
    }
    await rename(partial, file);
  } catch (error) {
    // A token no node will accept is of no use, and its file would refuse the retry.
    if (tokenFile !== null) await rm(tokenFile, { force: true });
    await rm(partial, { force: true }).catch(() => {});
    throw error;
  }
  const where =
    tokenFile === null
      ? `${token}\n\nadded "${options.name}" (role ${options.role}) to ${file}; the line above is the token, shown only this once: store it now.\n`
      : `added "${options.name}" (role ${options.role}) to ${file}; the token is in ${tokenFile} (readable by you alone).\n`;
  io.stdout.write(
    where +
      `Next: give every node the same file (--tokens ${options.tokens}) and send running nodes SIGHUP;\n` +
      `clients pass the token with --token, --token-file or BATON_TOKEN (header Authorization: Bearer <token>).\n`,
  );
  return ExitCode.ok;
}

/** The CA in `dir`, or null (having said what is missing). */
async function readCa(io: CliIo, dir: string): Promise<IssuedPair | null> {
  try {
    return {
      certPem: await readFile(join(dir, CERT_FILES.caCert), "utf8"),
      keyPem: await readFile(join(dir, CERT_FILES.caKey), "utf8"),
    };
  } catch (error) {
    io.stderr.write(
      `baton: cannot read the CA in ${dir} (${(error as Error).message}): make one with \`baton certs ca --out ${dir}\`\n`,
    );
    return null;
  }
}

async function writePair(
  dir: string,
  [certFile, keyFile]: readonly [string, string],
  pair: IssuedPair,
): Promise<void> {
  makeDirectory(dir);
  await writeFile(certFile, pair.certPem);
  await writeFile(keyFile, pair.keyPem, { mode: 0o600 });
  // writeFile keeps the mode of a file it overwrites (--force).
  await chmod(keyFile, 0o600);
}

function refuseOverwrite(io: CliIo, files: readonly string[]): boolean {
  const existing = files.filter((file) => existsSync(file));
  if (existing.length === 0) return false;
  io.stderr.write(`baton: ${existing.join(", ")} already exist(s); pass --force to overwrite\n`);
  return true;
}

async function run(io: CliIo, action: () => Promise<number>): Promise<number> {
  try {
    return await action();
  } catch (error) {
    io.stderr.write(`baton: ${(error as Error).message}\n`);
    return ExitCode.failed;
  }
}

function days(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError("expected whole days >= 1");
  return n;
}

function memberId(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1 || n > 0xffff_ffff) {
    throw new InvalidArgumentError("expected a member id, 1..4294967295");
  }
  return n;
}

/**
 * Collects --host values, each of which may be a comma-separated list: DNS names (a
 * leading `*.` allowed) and IP addresses, IPv6 with or without brackets; never a port.
 */
function hosts(value: string, previous: string[] | undefined): string[] {
  const added = value
    .split(",")
    .map((host) => host.trim())
    .filter((host) => host !== "")
    .map(hostName);
  if (added.length === 0) throw new InvalidArgumentError("expected a DNS name or an IP address");
  return [...(previous ?? []), ...added];
}

/** A DNS name (a leading `*.` allowed); `_` too, as container names use it, and a final dot. */
const DNS_NAME =
  /^(\*\.)?([a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?\.)*[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9_])?\.?$/;

function hostName(text: string): string {
  const unbracketed = /^\[(.*)\]$/.exec(text)?.[1] ?? text;
  if (isIP(unbracketed) !== 0) return unbracketed;
  if (/^[^:]+:\d+$/.test(text) || /^\[.*\]:\d+$/.test(text)) {
    throw new InvalidArgumentError(
      `${text}: a certificate names hosts, not ports; give the host alone`,
    );
  }
  if (text.length > 253 || !DNS_NAME.test(text)) {
    throw new InvalidArgumentError(`${text}: not a DNS name or an IP address`);
  }
  return text;
}

function tokenName(value: string): string {
  // A name the tokens file's parser refuses would make every node refuse the file.
  if (!TOKEN_NAME_PATTERN.test(value)) {
    throw new InvalidArgumentError(
      "expected 1 to 100 printable ASCII characters without spaces, such as ops-team",
    );
  }
  return value;
}

function role(value: string): TokenRole {
  if (!TOKEN_ROLES.includes(value as TokenRole)) {
    throw new InvalidArgumentError(`expected one of ${TOKEN_ROLES.join(", ")}`);
  }
  return value as TokenRole;
}
