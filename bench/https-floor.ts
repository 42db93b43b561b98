/**
 * The floor Node.js itself sets on the cost of HTTPS: a bare `node:http` / `node:https`
 * server that answers every request with a small JSON body, and an undici Pool (the load
 * generator's client) with 64 connections, in one process, for a few seconds each way.
 * Nothing of Baton runs; the CPU time per request of the two runs shows what TLS costs a
 * client and a server of this machine before any replication, so that the cost measured
 * through a Baton cluster (`npm run bench -- --tls`) can be read against it.
 *
 *   npx tsx bench/https-floor.ts --pki /tmp/bench-pki [--seconds 5] [--rounds 3] [--client wrk] [--defer]
 *
 * With `--client wrk` the requests come from wrk (a C load generator, another process),
 * and the CPU time per request is the server's alone: what TLS costs Node.js's HTTP server
 * per request, the part of Baton's TLS cost no code of Baton's can remove.
 *
 * `--defer` answers as Baton's master does: not in the request's own turn of the event loop,
 * but all the requests that arrived since together, in a later turn (an immediate), as the
 * answers of one committed batch leave.
 *
 * `--pki` is a directory made by `baton certs ca` and `baton certs node --id 1`.
 */

import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Pool } from "undici";

interface FloorRun {
  readonly tls: boolean;
  readonly requestsPerSecond: number;
  readonly cpuUsPerRequest: number;
}

type Client = "undici" | "wrk";

/** Sends 100-byte PUTs over 64 connections with wrk for `seconds`; resolves when it exits. */
function runWrk(url: string, seconds: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "baton-https-floor-"));
  const script = join(dir, "put.lua");
  writeFileSync(
    script,
    `wrk.method = "PUT"\nwrk.path = "/v1/kv/k"\nwrk.body = string.rep("a", 100)\nwrk.headers["content-type"] = "application/octet-stream"\n`,
  );
  return new Promise<void>((resolve, reject) => {
    const args = ["-t1", "-c64", `-d${seconds}s`, "-s", script, url];
    const child = spawn("wrk", args, { stdio: "ignore" });
    child.on("error", (error) => reject(new Error(`wrk: ${error.message} (apt-get install wrk)`)));
    child.on("exit", (code) => {
      rmSync(dir, { recursive: true, force: true });
      if (code === 0) resolve();
      else reject(new Error(`wrk exited ${code}`));
    });
  });
}

async function runOnce(
  tls: boolean,
  pki: string,
  seconds: number,
  client: Client,
  defer: boolean,
): Promise<FloorRun> {
  let served = 0;
  const answer = (response: http.ServerResponse): void => {
    served++;
    response.writeHead(200, { "content-type": "application/json" });
    response.end('{"revision":12345}');
  };
  let waiting: http.ServerResponse[] = [];
  const answerWaiting = (): void => {
    const batch = waiting;
    waiting = [];
    for (const response of batch) answer(response);
  };
  const handler = (request: http.IncomingMessage, response: http.ServerResponse): void => {
    request.resume();
    request.on("end", () => {
      if (!defer) return answer(response);
      if (waiting.length === 0) setImmediate(answerWaiting);
      waiting.push(response);
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
  const url = `${tls ? "https" : "http"}://127.0.0.1:${port}`;
  if (client === "wrk") {
    const cpuAtStart = process.cpuUsage();
    try {
      await runWrk(url, seconds);
    } finally {
      server.closeAllConnections();
      await new Promise((closed) => server.close(closed));
    }
    return floorRun(tls, seconds, served, cpuAtStart);
  }
  const pool = new Pool(url, {
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
  return floorRun(tls, seconds, answered, cpuAtStart);
}

/** A run's figures: `answered` requests in `seconds`, this process's CPU since `cpuAtStart`. */
function floorRun(
  tls: boolean,
  seconds: number,
  answered: number,
  cpuAtStart: NodeJS.CpuUsage,
): FloorRun {
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
      client: { type: "string", default: "undici" },
      defer: { type: "boolean", default: false },
    },
  });
  if (values.pki === undefined) {
    throw new Error(
      "--pki <dir> is required: a directory made by `baton certs ca` and `baton certs node --id 1`",
    );
  }
  const client = values.client;
  if (client !== "undici" && client !== "wrk") throw new Error("--client is undici or wrk");
  const seconds = Number(values.seconds);
  const rounds = Number(values.rounds);
  const whose = client === "wrk" ? "the server's" : "client and server";
  process.stdout.write(`| round | TLS | requests/s | CPU µs per request (${whose}) |\n`);
  process.stdout.write("| ---: | --- | ---: | ---: |\n");
  for (let round = 1; round <= rounds; round++) {
    for (const tls of [false, true]) {
      const r = await runOnce(tls, values.pki, seconds, client, values.defer === true);
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
