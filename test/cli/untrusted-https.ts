/**
 * An HTTPS server with a node certificate (for 127.0.0.1) from a CA made for it: a node
 * no command trusts unless given that CA, for the tests of what the CLI says about TLS.
 */

import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { captureIo } from "../../harness/doubles/capture-io.js";
import { main } from "../../src/cli/main.js";

export interface UntrustedHttps {
  readonly url: string;
  readonly port: number;
  /** The CA's certificate file, for a command that is to trust the node. */
  readonly caFile: string;
  /** Stops the server and removes the certificates. */
  close(): Promise<void>;
}

export async function startUntrustedHttps(): Promise<UntrustedHttps> {
  const dir = await mkdtemp(join(tmpdir(), "baton-untrusted-"));
  const pki = join(dir, "pki");
  expect(await main(["certs", "ca", "--out", pki], captureIo())).toBe(0);
  const nodeArgs = ["--id", "1", "--ca", pki, "--host", "127.0.0.1", "--out", join(pki, "n1")];
  expect(await main(["certs", "node", ...nodeArgs], captureIo())).toBe(0);
  const server = createServer({
    cert: await readFile(join(pki, "n1", "node.crt")),
    key: await readFile(join(pki, "n1", "node.key")),
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    port,
    caFile: join(pki, "ca.crt"),
    async close() {
      server.closeAllConnections();
      await new Promise((done) => server.close(done));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
