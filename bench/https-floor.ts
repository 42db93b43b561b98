/**
 * The floor Node.js itself sets on the cost of HTTPS: a bare `node:http` / `node:https`
 * server that answers every request with a small JSON body, and an undici Pool (the load
 * generator's client) with 64 connections, in one process, for a few seconds each way.
 * Nothing of Baton runs; the CPU time per request of the two runs shows what TLS costs a
 * client and a server of this machine before any replication, so that the cost measured
 * through a Baton cluster (`npm run bench -- --tls`) can be read against it.
 *
 *   npx tsx bench/https-floor.ts --pki /tmp/bench-pki [--seconds 5] [--rounds 3]
 *
 * `--pki` is a directory made by `baton certs ca` and `baton certs node --id 1`.
 */

import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Pool } from "undici";

interface FloorRun {
  readonly tls: boolean;
  readonly requestsPerSecond: number;
  readonly cpuUsPerRequest: number;
}

async function runOnce(tls: boolean, pki: string, seconds: number): Promise<FloorRun> {
  const handler = (request: http.IncomingMessage, response: http.ServerResponse): void => {
    request.resume();
    request.on("end", () => {
      response.writeHead(200, { "content-type": "application/json" });
      response.end('{"revision":12345}');
    });
  };
  const server = tls
    ? https.createServer(
        {
          cert: readFileSync(join(pki, "node1", "node.crt")),
          key: readFileSync(join(pki, "node1", "node.key")),
        },
        handler,
      )
    : http.createServer(handler);
  await new Promise<void>((listening) => server.listen(0, "127.0.0.1", listening));
  const { port } = server.address() as AddressInfo;
  const pool = new Pool(`${tls ? "https" : "http"}://127.0.0.1:${port}`, {
    connections: 64,
    pipelining: 1,
    ...(tls ? { connect: { ca: readFileSync(join(pki, "ca.crt")) } } : {}),
  });
  const body = Buffer.alloc(100, 97);
  let answered = 0;
  const cpuAtStart = process.cpuUsage();
  const endAt = performance.now() + seconds * 1000;
  try {
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (performance.now() < endAt) {
          const response = await pool.request({ method: "PUT", path: "/v1/kv/k", body });
          await response.body.arrayBuffer();
          answered++;
        }
      }),
    );
  } finally {
    await pool.close();
    await new Promise((closed) => server.close(closed));
  }
  const cpu = process.cpuUsage(cpuAtStart);
  return {
    tls,
    requestsPerSecond: answered / seconds,
    cpuUsPerRequest: (cpu.user + cpu.system) / answered,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      pki: { type: "string" },
      seconds: { type: "string", default: "5" },
      rounds: { type: "string", default: "3" },
    },
  });
  if (values.pki === undefined) {
    throw new Error(
      "--pki <dir> is required: a directory made by `baton certs ca` and `baton certs node --id 1`",
    );
  }
  const seconds = Number(values.seconds);
  const rounds = Number(values.rounds);
  process.stdout.write("| round | TLS | requests/s | CPU µs per request (client and server) |\n");
  process.stdout.write("| ---: | --- | ---: | ---: |\n");
  for (let round = 1; round <= rounds; round++) {
    for (const tls of [false, true]) {
      const r = await runOnce(tls, values.pki, seconds);
      process.stdout.write(
        `| ${round} | ${tls ? "on" : "off"} | ${Math.round(r.requestsPerSecond).toLocaleString("en-US")} | ${r.cpuUsPerRequest.toFixed(0)} |\n`,
      );
    }
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`https-floor: ${(error as Error).message}\n`);
  process.exitCode = 1;
});
