/**
 * The same load as bench/load-generator.ts, sent by wrk (a C load generator, Debian's
 * `wrk` package) instead of Node.js and undici: `npm run bench -- --generator wrk`.
 *
 * Why a second generator: the benchmark runs on the same machine as the nodes, so the
 * generator's own CPU per request is taken from them. undici spends about 100 µs of CPU
 * per request, and over HTTPS about 55 µs more; wrk spends a few. Where a figure is
 * about what the cluster costs (TLS on or off, a backup's forwarding), the C generator
 * leaves the nodes the CPU they would have with their clients on other machines.
 *
 * The requests are the ones kv-protocol.ts builds, rendered once per key into a Lua script
 * that wrk runs: one wrk thread per target (the clients spread over the targets as the
 * undici generator spreads them), `clients` connections in all, each a closed loop. A
 * warm-up run of `warmupMs` comes first and is not counted. wrk records latency from a
 * request's write to its answer's last byte, in microseconds. Reads need the keys to
 * exist: the caller preloads them first (load-generator.ts does it with undici).
 */

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { LatencySummary } from "../harness/stats.js";
import { processCpuMs } from "./bench-cluster.js";
import { type KvRequest, KvRequests } from "./kv-protocol.js";
import type { LoadResult, LoadSpec } from "./load-generator.js";

/** What wrk's done() reports, in its own units (microseconds). */
interface WrkReport {
  readonly requests: number;
  readonly durationUs: number;
  readonly errors: {
    readonly connect: number;
    readonly read: number;
    readonly write: number;
    readonly status: number;
    readonly timeout: number;
  };
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  /** Answers in each second of the run, when the spec asked for them (else empty). */
  readonly perSecond: readonly number[];
  readonly connections: number;
}

const REPORT_MARK = "WRK-REPORT ";

/**
 * With `perSecond`: each thread counts its answers per second since it started (a
 * monotonic clock through LuaJIT's FFI), and done() sums them. It makes wrk hand every
 * answer to Lua, a little more of its CPU per request, so it is off unless asked for.
 */
const PER_SECOND_LUA = `
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } baton_timespec;
int clock_gettime(int clock, baton_timespec *ts);
]]
local clock = ffi.new("baton_timespec")
local function now()
  ffi.C.clock_gettime(1, clock)
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) / 1e9
end
answered = {}
local startedAt = nil
function response(status, headers, body)
  local t = now()
  startedAt = startedAt or t
  local second = math.floor(t - startedAt) + 1
  answered[second] = (answered[second] or 0) + 1
end
`;

/** A Lua string literal holding `bytes` exactly (every byte escaped as \ddd when needed). */
function luaString(bytes: Buffer | string): string {
  const buffer = typeof bytes === "string" ? Buffer.from(bytes, "utf8") : bytes;
  let out = '"';
  for (const byte of buffer) {
    const printable = byte >= 0x20 && byte < 0x7f && byte !== 0x22 && byte !== 0x5c;
    out += printable ? String.fromCharCode(byte) : `\\${byte.toString().padStart(3, "0")}`;
  }
  return `${out}"`;
}

/**
 * A Lua expression for `body`, with every occurrence of a shared text (the value, or its
 * base64) referring to a variable instead of repeating it for every key.
 */
function luaBody(body: string | Buffer, shared: readonly (readonly [string, string])[]): string {
  const text = typeof body === "string" ? body : body.toString("latin1");
  for (const [needle, variable] of shared) {
    const at = needle.length === 0 ? -1 : text.indexOf(needle);
    if (at < 0) continue;
    const before = text.slice(0, at);
    const after = luaBody(text.slice(at + needle.length), shared);
    const head = before === "" ? "" : `${luaString(Buffer.from(before, "latin1"))} .. `;
    return `${head}${variable}${after === '""' ? "" : ` .. ${after}`}`;
  }
  return luaString(Buffer.from(text, "latin1"));
}

function luaRequest(request: KvRequest, shared: readonly (readonly [string, string])[]): string {
  const headers = Object.entries(request.headers)
    .map(([name, value]) => `[${luaString(name)}] = ${luaString(value)}`)
    .join(", ");
  const body = request.body === null ? "nil" : luaBody(request.body, shared);
  return `wrk.format(${luaString(request.method)}, ${luaString(request.path)}, { ${headers} }, ${body})`;
}

/** The connections each thread opens: wrk gives every thread `connections / threads`. */
export function wrkConnections(clients: number, targets: number): number {
  return Math.max(1, Math.floor(clients / targets)) * targets;
}

/**
 * The Lua script: every key's write and read rendered once in init(), thread i sent to
 * target i, and a done() that prints one line of JSON after REPORT_MARK.
 */
export function wrkScript(spec: LoadSpec, value: Buffer): string {
  const requests = new KvRequests(spec.system, value);
  const keys = Array.from({ length: spec.keyCount }, (_, i) => `${spec.keyPrefix}-${i}`);
  const targets = spec.targets.map((t) => new URL(t));
  const writeShare = spec.mix === "write" ? 1 : spec.mix === "90/10" ? 0.1 : 0;
  const valueText = value.toString("latin1");
  const valueB64 = value.toString("base64");
  const shared = [
    [valueB64, "value64"],
    [valueText, "value"],
  ] as const;
  return `-- generated by bench/wrk-load.ts
local value = ${luaString(value)}
local value64 = ${luaString(valueB64)}
local targets = { ${targets.map((u) => `{ ${luaString(u.hostname)}, ${luaString(u.port)} }`).join(", ")} }
local created = 0
local threads = {}
function setup(thread)
  local target = targets[(created % #targets) + 1]
  thread.addr = wrk.lookup(target[1], target[2])[1]
  thread:set("client", created)
  created = created + 1
  table.insert(threads, thread)
end
${spec.perSecond === true ? PER_SECOND_LUA : ""}
local puts, gets = {}, {}
local n, i = ${keys.length}, 0
function init(args)
${keys.map((key, k) => `  puts[${k}] = ${luaRequest(requests.put(key), shared)}\n  gets[${k}] = ${luaRequest(requests.get(key), shared)}`).join("\n")}
  i = client * 7919
end

function request()
  i = i + 1
  local k = (i * 104729) % n
  if ${writeShare} >= 1 or (${writeShare} > 0 and math.random() < ${writeShare}) then
    return puts[k]
  end
  return gets[k]
end

function done(summary, latency, requests)
  local e = summary.errors
  local perSecond = {}
  for _, thread in ipairs(threads) do
    local counts = thread:get("answered") or {}
    for second, n in pairs(counts) do perSecond[second] = (perSecond[second] or 0) + n end
  end
  local seconds = {}
  for second = 1, #perSecond do seconds[second] = tostring(perSecond[second] or 0) end
  io.write(string.format(
    '${REPORT_MARK}{"requests":%d,"durationUs":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"p50":%d,"p90":%d,"p99":%d,"max":%d,"perSecond":[%s]}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    table.concat(seconds, ",")))
end
`;
}

/** Runs wrk once; resolves with its report, rejects with its output when it failed. */
function runWrk(
  script: string,
  spec: LoadSpec,
  durationMs: number,
): Promise<{ report: WrkReport; cpuMs: number }> {
  const connections = wrkConnections(spec.clients, spec.targets.length);
  const args = [
    "--threads",
    String(spec.targets.length),
    "--connections",
    String(connections),
    "--duration",
    `${Math.max(1, Math.round(durationMs / 1000))}s`,
    "--timeout",
    "30s",
    "--script",
    script,
    spec.targets[0]!,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn("wrk", args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString("utf8");
    });
    child.stderr.on("data", (chunk: Buffer) => {
      out += chunk.toString("utf8");
    });
    child.on("error", (error) =>
      reject(new Error(`wrk could not start (${error.message}): apt-get install wrk`)),
    );
    child.on("exit", (code) => {
      const line = out.split("\n").find((l) => l.startsWith(REPORT_MARK));
      if (code !== 0 || line === undefined) {
        reject(new Error(`wrk exited ${code}: ${out.trim().slice(-2000)}`));
        return;
      }
      const report = JSON.parse(line.slice(REPORT_MARK.length)) as Omit<WrkReport, "connections">;
      resolve({ report: { ...report, connections }, cpuMs: childrenCpuMs() });
    });
  });
}

/** The CPU time of this process's waited-for children so far (wrk's, once it exited), ms. */
function childrenCpuMs(): number {
  return processCpuMs("self", "children") ?? 0;
}

function summary(report: WrkReport): LatencySummary {
  const ms = (us: number): number => us / 1000;
  return { p50: ms(report.p50), p90: ms(report.p90), p99: ms(report.p99), max: ms(report.max) };
}

/** Runs `spec` through wrk: a warm-up run, then the measured run. */
export async function runWrkLoad(
  spec: LoadSpec,
  value: Buffer,
  preloaded: number,
): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), "baton-wrk-"));
  try {
    const script = join(dir, "load.lua");
    writeFileSync(script, wrkScript(spec, value));
    const connections = wrkConnections(spec.clients, spec.targets.length);
    if (connections !== spec.clients) {
      process.stderr.write(
        `  ${spec.label}: wrk opens ${connections} connections, ${connections / spec.targets.length} to each of ${spec.targets.length} nodes\n`,
      );
    }
    const cpuBefore = childrenCpuMs();
    const warmup = spec.warmupMs > 0 ? (await runWrk(script, spec, spec.warmupMs)).report : null;
    process.stderr.write(`  ${spec.label}: warm-up done, measuring for ${spec.durationMs} ms\n`);
    const { report, cpuMs } = await runWrk(script, spec, spec.durationMs);
    const e = report.errors;
    const errors = e.connect + e.read + e.write + e.status + e.timeout;
    const seconds = report.durationUs / 1e6;
    const ok = report.requests - e.status;
    return {
      ops: ok,
      errors,
      errorSamples:
        errors === 0
          ? []
          : [
              `wrk: ${e.status} answers over 399, ${e.connect} connect, ${e.read} read, ${e.write} write errors, ${e.timeout} timeouts`,
            ],
      seconds,
      opsPerSecond: ok / seconds,
      latencyMs: summary(report),
      completedTotal: preloaded + (warmup?.requests ?? 0) + report.requests,
      ...(spec.perSecond === true ? { perSecond: report.perSecond } : {}),
      cpuMs: cpuMs - cpuBefore,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
