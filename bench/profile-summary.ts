/**
 * Where the time goes in a `node --cpu-prof` profile (what `npm run bench -- --profile`
 * writes for every Baton node): the share of busy time spent inside each part of a node
 * (inclusive of callees, so parts overlap), then self time per file and per function,
 * heaviest first, with node_modules packages grouped by package. It reads the .cpuprofile
 * files and writes tables; it changes nothing.
 *
 *   npx tsx bench/profile-summary.ts <file.cpuprofile>... [--top 30]
 */

import { readFileSync } from "node:fs";

interface ProfileNode {
  readonly id: number;
  readonly children?: readonly number[];
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
  };
}

interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** A short place name: src/... or the node_modules package, or a node: builtin. */
export function placeOf(url: string): string {
  if (url === "") return "(native/VM)";
  const modules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (modules !== null) return `npm:${modules[1]}`;
  const ours = /\/(src|dist|bench)\/(.*)$/.exec(url);
  if (ours !== null) return `${ours[1]}/${ours[2]}`;
  if (url.startsWith("node:")) return url;
  return url;
}

export function summarizeProfile(profile: Profile): {
  totalMs: number;
  byFunction: Map<string, number>;
  byPlace: Map<string, number>;
} {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const byFunction = new Map<string, number>();
  const byPlace = new Map<string, number>();
  let totalMs = 0;
  profile.samples.forEach((id, i) => {
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    const node = byId.get(id);
    if (node === undefined) return;
    totalMs += ms;
    const { functionName, url, lineNumber } = node.callFrame;
    const place = placeOf(url);
    const fn = `${functionName || "(anonymous)"} ${place}${url === "" ? "" : `:${lineNumber + 1}`}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + ms);
    byPlace.set(place, (byPlace.get(place) ?? 0) + ms);
  });
  return { totalMs, byFunction, byPlace };
}

/** The parts of a node, each matched against every frame of a sample's stack. */
const PARTS: readonly (readonly [string, RegExp])[] = [
  ["HTTP: fastify and node:http", /fastify|_http_server|_http_incoming|_http_outgoing|find-my-way/],
  ["kv-routes and kv-node (request handling)", /kv-routes|kv-node/],
  ["server/node (the runtime)", /server\/node\.[jt]s/],
  ["transport send (outbound-link)", /transport\/outbound-link|transport\/tcp-transport/],
  ["transport receive (inbound, decode)", /transport\/inbound-connection|frame-codec|frame-schema/],
  ["storage (WAL, hard state)", /\/storage\//],
  ["core (replica)", /\/core\//],
  ["kv state machine", /\/kv\//],
  ["msgpackr", /msgpackr/],
  ["prom-client", /prom-client/],
  ["http-metrics", /http-metrics/],
  ["pino", /pino/],
  ["start-up: compiling modules", /wrapSafe|compileSourceTextModule|compileForInternalLoader/],
];

/** Share of busy (non-idle, non-GC) samples whose stack passes through each part. */
export function partsOf(profile: Profile): {
  busyMs: number;
  gcMs: number;
  parts: Map<string, number>;
} {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stacks = new Map<number, string>();
  const stackOf = (id: number): string => {
    let stack = stacks.get(id);
    if (stack !== undefined) return stack;
    const frames: string[] = [];
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const f = byId.get(at)?.callFrame;
      if (f !== undefined) frames.push(`${f.url} ${f.functionName}`);
    }
    stack = frames.join("\n");
    stacks.set(id, stack);
    return stack;
  };
  const parts = new Map<string, number>();
  let busyMs = 0;
  let gcMs = 0;
  profile.samples.forEach((id, i) => {
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    const name = byId.get(id)?.callFrame.functionName;
    if (name === "(idle)") return;
    busyMs += ms;
    if (name === "(garbage collector)") {
      gcMs += ms;
      return;
    }
    const stack = stackOf(id);
    for (const [part, pattern] of PARTS) {
      if (pattern.test(stack)) parts.set(part, (parts.get(part) ?? 0) + ms);
    }
  });
  return { busyMs, gcMs, parts };
}

function top(map: Map<string, number>, total: number, count: number): string {
  return [...map.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([name, ms]) => `${((100 * ms) / total).toFixed(1).padStart(5)}%  ${name}`)
    .join("\n");
}

const isMain = process.argv[1]?.endsWith("profile-summary.ts") === true;
if (isMain) {
  const args = process.argv.slice(2);
  const at = args.indexOf("--top");
  const count = at >= 0 ? Number(args[at + 1]) : 30;
  const files = args.filter((a, i) => !a.startsWith("--") && (at < 0 || i !== at + 1));
  for (const file of files) {
    const s = summarizeProfile(JSON.parse(readFileSync(file, "utf8")) as Profile);
    const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
    const idle = s.byFunction.get("(idle) (native/VM)") ?? 0;
    const p = partsOf(profile);
    process.stdout.write(
      `\n== ${file}: ${(s.totalMs / 1000).toFixed(1)} s sampled, ${((100 * idle) / s.totalMs).toFixed(0)}% idle\n` +
        `-- share of busy time (${(p.busyMs / 1000).toFixed(1)} s) inside each part, callees included; GC ${((100 * p.gcMs) / p.busyMs).toFixed(1)}%\n${top(p.parts, p.busyMs, count)}\n` +
        `-- by file or package (self time)\n${top(s.byPlace, s.totalMs, count)}\n` +
        `-- by function (self time)\n${top(s.byFunction, s.totalMs, count)}\n`,
    );
  }
}
