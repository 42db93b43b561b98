import { X509Certificate } from "node:crypto";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect, createServer } from "node:tls";
import { Command } from "commander";
import { afterEach, describe, expect, it } from "vitest";
import { hashToken, parseTokensFile } from "../../http/tokens.js";
import { readPem } from "../../server/create-node.js";
import { pemProblem } from "../../shared/pem.js";
import { certificateIdentity } from "../../transport/peer-tls.js";
import { register } from "./certs.js";
import type { CliIo } from "./cli-io.js";

/** Runs `baton certs …` in-process; returns its exit code and output. */
async function certs(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const toOut = (text: string | Uint8Array): void => {
    out += String(text);
  };
  const toErr = (text: string | Uint8Array): void => {
    err += String(text);
  };
  const io: CliIo = {
    stdout: { write: toOut },
    stderr: { write: toErr },
    stdin: (async function* () {})(),
    env: {},
    exitCode: 0,
  };
  const program = new Command("baton").exitOverride().configureOutput({
    writeOut: toOut,
    writeErr: toErr,
  });
  register(program, io);
  try {
    await program.parseAsync(["certs", ...args], { from: "user" });
  } catch {
    return { code: 2, out, err };
  }
  return { code: io.exitCode, out, err };
}

describe("baton certs", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });
  function tempDir(): string {
    const dir = mkdtempSync(join(tmpdir(), "baton-certs-"));
    dirs.push(dir);
    return dir;
  }

  it("certs: a node certificate chains to the CA and names its member id, cluster and hosts", async () => {
    const dir = tempDir();
    const ca = await certs(["ca", "--out", join(dir, "pki")]);
    expect(ca).toMatchObject({ code: 0, out: expect.stringMatching(/Next: .*baton certs node/s) });
    const node = await certs([
      "node",
      ...["--id", "2", "--ca", join(dir, "pki"), "--out", join(dir, "n2")],
      ...["--host", "10.0.0.2", "--host", "db2.example.net,localhost", "--cluster-id", "prod"],
    ]);
    expect(node).toMatchObject({ code: 0, out: expect.stringMatching(/--tls-ca .*ca\.crt/) });
    const caCert = new X509Certificate(readFileSync(join(dir, "pki", "ca.crt")));
    const cert = new X509Certificate(readFileSync(join(dir, "n2", "node.crt")));
    expect(cert.checkIssued(caCert)).toBe(true);
    expect(cert.verify(caCert.publicKey)).toBe(true);
    expect(caCert.ca).toBe(true);
    expect(cert.ca).toBe(false);
    expect(certificateIdentity(cert)).toEqual({ memberIds: [2], clusterIds: ["prod"] });
    expect(cert.subjectAltName).toMatch(/IP Address:10\.0\.0\.2.*DNS:db2\.example\.net/);
    expect(statSync(join(dir, "n2", "node.key")).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "pki", "ca.key")).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, "n2", "ca.crt"), "utf8")).toBe(
      readFileSync(join(dir, "pki", "ca.crt"), "utf8"),
    );
  });

  it("certs: a CA bundle joined with cat trusts both CAs (a rotation); blocks sharing a line are refused", async () => {
    const dir = tempDir();
    await certs(["ca", "--out", join(dir, "old")]);
    await certs(["ca", "--out", join(dir, "new")]);
    await certs([
      "node",
      ...["--id", "1", "--ca", join(dir, "new"), "--out", join(dir, "n1"), "--host", "127.0.0.1"],
    ]);
    const oldCa = readFileSync(join(dir, "old", "ca.crt"), "utf8");
    const newCa = readFileSync(join(dir, "new", "ca.crt"), "utf8");
    expect(oldCa.endsWith("\n")).toBe(true);
    const bundle = oldCa + newCa; // cat old/ca.crt new/ca.crt
    expect(pemProblem(bundle)).toBeNull();
    // A peer holding a certificate of the new CA is trusted through the bundle.
    const server = createServer({
      cert: readFileSync(join(dir, "n1", "node.crt")),
      key: readFileSync(join(dir, "n1", "node.key")),
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const authorized = await new Promise<boolean>((resolve, reject) => {
        const socket = connect({ host: "127.0.0.1", port, ca: bundle }, () => {
          resolve(socket.authorized);
          socket.destroy();
        });
        socket.on("error", reject);
      });
      expect(authorized).toBe(true);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    // Files without their final newline, joined: Node.js would keep the first CA only.
    const joined = join(dir, "joined.crt");
    writeFileSync(joined, oldCa.trimEnd() + newCa);
    expect(() => readPem(joined, "--tls-ca")).toThrow(/two PEM blocks share a line.*awk 1/);
  });

  it("certs: --host takes DNS names and IP addresses (IPv6 with or without brackets), never a port or a space", async () => {
    const dir = tempDir();
    await certs(["ca", "--out", join(dir, "pki")]);
    const node = (out: string, host: string) =>
      certs([
        "node",
        "--id",
        "1",
        "--ca",
        join(dir, "pki"),
        "--out",
        join(dir, out),
        "--host",
        host,
      ]);
    expect((await node("a", "[::1],db1.example.net,*.baton.svc")).code).toBe(0);
    const cert = new X509Certificate(readFileSync(join(dir, "a", "node.crt")));
    expect(cert.subjectAltName).toMatch(/IP Address:0:0:0:0:0:0:0:1|IP Address:::1/);
    expect(cert.subjectAltName).toContain("DNS:*.baton.svc");
    const withPort = await node("b", "10.0.0.1:8101");
    expect(withPort.code).not.toBe(0);
    expect(withPort.err).toMatch(/10\.0\.0\.1:8101: a certificate names hosts, not ports/);
    const spaced = await node("c", "bad name");
    expect(spaced.code).not.toBe(0);
    expect(spaced.err).toMatch(/bad name: not a DNS name or an IP address/);
  });

  it("certs: refuses to overwrite a CA without --force, and says how to make a missing one", async () => {
    const dir = tempDir();
    expect((await certs(["ca", "--out", dir])).code).toBe(0);
    const again = await certs(["ca", "--out", dir]);
    expect(again).toMatchObject({ code: 2, err: expect.stringMatching(/--force/) });
    expect((await certs(["ca", "--out", dir, "--force"])).code).toBe(0);
    const missing = await certs([
      "node",
      "--id",
      "1",
      "--ca",
      join(dir, "none"),
      "--host",
      "h",
      "--out",
      join(dir, "n"),
    ]);
    expect(missing).toMatchObject({ code: 2, err: expect.stringMatching(/baton certs ca --out/) });
  });

  it("certs: token prints a token once and stores only its hash", async () => {
    const file = join(tempDir(), "tokens.json");
    const first = await certs(["token", "--name", "ops", "--role", "admin", "--tokens", file]);
    const second = await certs(["token", "--name", "app", "--role", "read", "--tokens", file]);
    expect(first.code).toBe(0);
    const token = first.out.split("\n")[0] as string;
    expect(token).toMatch(/^baton_[\w-]{43}$/);
    const text = readFileSync(file, "utf8");
    expect(text).not.toContain(token);
    expect(parseTokensFile(text)).toEqual([
      { name: "ops", role: "admin", sha256: hashToken(token) },
      { name: "app", role: "read", sha256: hashToken(second.out.split("\n")[0] as string) },
    ]);
    const duplicate = await certs(["token", "--name", "ops", "--role", "read", "--tokens", file]);
    expect(duplicate).toMatchObject({ code: 2, err: expect.stringMatching(/already has/) });
    // A name the file's parser refuses would have made every node refuse the file.
    for (const name of ["ops team", "Zoë", "x".repeat(101)]) {
      const refused = await certs(["token", "--name", name, "--role", "read", "--tokens", file]);
      expect(refused).toMatchObject({
        code: 2,
        err: expect.stringContaining("printable ASCII characters without spaces"),
      });
    }
    expect(parseTokensFile(readFileSync(file, "utf8"))).toHaveLength(2);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it("certs: token keeps an existing tokens file's mode, and its owner and group when run as root", async () => {
    const file = join(tempDir(), "tokens.json");
    expect(
      (await certs(["token", "--name", "ops", "--role", "admin", "--tokens", file])).code,
    ).toBe(0);
    // As installed for the nodes: root:baton 0640, read by the baton user through its group.
    chmodSync(file, 0o640);
    const root = process.getuid?.() === 0;
    if (root) chownSync(file, 4242, 4343);
    const added = await certs(["token", "--name", "app", "--role", "read", "--tokens", file]);
    expect(added.code).toBe(0);
    expect(parseTokensFile(readFileSync(file, "utf8"))).toHaveLength(2);
    const after = statSync(file);
    expect(after.mode & 0o777).toBe(0o640);
    if (root) expect([after.uid, after.gid]).toEqual([4242, 4343]);
  });

  it("certs: token --token-file with a tokens file in a missing directory names --tokens and the directory, and leaves no token file behind", async () => {
    const dir = tempDir();
    const missing = join(dir, "pki");
    const file = join(missing, "tokens.json");
    const tokenFile = join(dir, "ops.token");
    const args = ["token", "--name", "ops", "--role", "admin", "--tokens", file];
    const refused = await certs([...args, "--token-file", tokenFile]);
    expect(refused).toMatchObject({
      code: 2,
      err: `baton: --tokens ${file}: the directory ${missing} does not exist: create it first (mkdir -p ${missing}), or give another --tokens\n`,
    });
    // No token that no node accepts, and nothing that refuses the retry.
    expect(existsSync(tokenFile)).toBe(false);
    mkdirSync(missing);
    // The tokens file cannot be written (its work file's name is taken by a directory): the
    // token file written before it is removed again.
    const blocker = `${file}.tmp-${process.pid}`;
    mkdirSync(blocker);
    const failed = await certs([...args, "--token-file", tokenFile]);
    expect(failed.code).toBe(1);
    expect(existsSync(tokenFile)).toBe(false);
    expect(existsSync(file)).toBe(false);
    rmSync(blocker, { recursive: true });
    const retried = await certs([...args, "--token-file", tokenFile]);
    expect(retried.code).toBe(0);
    expect(parseTokensFile(readFileSync(file, "utf8"))).toEqual([
      { name: "ops", role: "admin", sha256: hashToken(readFileSync(tokenFile, "utf8").trim()) },
    ]);
  });

  it("certs: token --token-file writes the token to a new file of its owner's alone, never over one", async () => {
    const dir = tempDir();
    const file = join(dir, "tokens.json");
    const tokenFile = join(dir, "ops.token");
    const args = ["token", "--role", "admin", "--tokens", file, "--token-file", tokenFile];
    const made = await certs([...args, "--name", "ops"]);
    expect(made.code).toBe(0);
    expect(made.out).toContain(`the token is in ${tokenFile} (readable by you alone)`);
    const token = readFileSync(tokenFile, "utf8").trim();
    expect(made.out).not.toContain(token);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(parseTokensFile(readFileSync(file, "utf8"))).toEqual([
      { name: "ops", role: "admin", sha256: hashToken(token) },
    ]);
    // Run again (another name), it keeps the first token and adds nothing to the file.
    const again = await certs([...args, "--name", "ops-2"]);
    expect(again).toMatchObject({ code: 2, err: expect.stringMatching(/already exists/) });
    expect(readFileSync(tokenFile, "utf8").trim()).toBe(token);
    expect(parseTokensFile(readFileSync(file, "utf8"))).toHaveLength(1);
    // The token file is not the tokens file, even a tokens file not made yet.
    const fresh = join(dir, "fresh-tokens.json");
    const same = await certs([
      "token",
      "--role",
      "read",
      "--tokens",
      fresh,
      "--token-file",
      fresh,
      "--name",
      "x",
    ]);
    expect(same).toMatchObject({ code: 2, err: expect.stringMatching(/are both/) });
  });
});
