/**
 * The throughput benchmark's report: medians over runs per case, Baton against etcd with
 * ratios, printed as a table and written as results.json, results.md (the tables, ready
 * for docs/benchmarks.md), one SVG chart per mix and value size, and index.html that
 * holds all of them without any outside file or script.
 *
 * It only formats what it is given; it starts nothing and measures nothing.
 */

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { median } from "../harness/stats.js";
import type { SystemName } from "./bench-cluster.js";
import type { LoadResult, Mix } from "./load-generator.js";

export interface CaseKey {
  readonly mix: Mix;
  readonly valueBytes: number;
  readonly clients: number;
}

export interface CaseRun extends CaseKey {
  readonly system: SystemName;
  readonly run: number;
  readonly result: LoadResult;
  /** os.loadavg() when the run ended. */
  readonly loadAverage: readonly number[];
  /**
   * CPU time (user + system) the system's nodes used while the load generator ran, in
   * milliseconds (warm-up and preload included), or null where it could not be read.
   */
  readonly nodesCpuMs?: number | null;
}

export interface CaseSummary extends CaseKey {
  readonly system: SystemName;
  readonly runs: number;
  /** Medians over the runs. */
  readonly opsPerSecond: number;
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly maxMs: number | null;
  readonly errors: number;
  readonly loadAverage1m: number | null;
  /** CPU time per request answered, in microseconds: the nodes together, and the load generator. */
  readonly nodesCpuUsPerOp: number | null;
  readonly loadGeneratorCpuUsPerOp: number | null;
}

export interface Comparison extends CaseKey {
  readonly baton: CaseSummary | null;
  readonly etcd: CaseSummary | null;
  /** Baton's ops/s divided by etcd's (above 1: Baton serves more). */
  readonly throughputRatio: number | null;
  /** Baton's p99 divided by etcd's (below 1: Baton answers faster). */
  readonly p99Ratio: number | null;
}

/** What every benchmark's results.json starts with: when, how, where and what ran. */
export interface ReportHeader {
  readonly date: string;
  readonly command: string;
  readonly machine: Record<string, unknown>;
  readonly systems: Record<string, string>;
  readonly options: Record<string, unknown>;
}

export interface Report extends ReportHeader {
  readonly runs: readonly CaseRun[];
  readonly comparisons: readonly Comparison[];
  readonly skipped: readonly string[];
}

function sameCase(a: CaseKey, b: CaseKey): boolean {
  return a.mix === b.mix && a.valueBytes === b.valueBytes && a.clients === b.clients;
}

function medianOf(values: readonly (number | null)[]): number | null {
  return median(values.filter((v): v is number => v !== null));
}

/** Microseconds of CPU per request, or null when either figure is missing. */
function perOp(cpuMs: number | null | undefined, requests: number | undefined): number | null {
  return cpuMs == null || requests === undefined || requests === 0
    ? null
    : (cpuMs * 1000) / requests;
}

export function summarizeCase(runs: readonly CaseRun[]): CaseSummary {
  const first = runs[0];
  if (first === undefined) throw new Error("no runs to summarize");
  return {
    system: first.system,
    mix: first.mix,
    valueBytes: first.valueBytes,
    clients: first.clients,
    runs: runs.length,
    opsPerSecond: medianOf(runs.map((r) => r.result.opsPerSecond)) ?? 0,
    p50Ms: medianOf(runs.map((r) => r.result.latencyMs.p50)),
    p99Ms: medianOf(runs.map((r) => r.result.latencyMs.p99)),
    maxMs: medianOf(runs.map((r) => r.result.latencyMs.max)),
    errors: runs.reduce((sum, r) => sum + r.result.errors, 0),
    loadAverage1m: medianOf(runs.map((r) => r.loadAverage[0] ?? null)),
    nodesCpuUsPerOp: medianOf(runs.map((r) => perOp(r.nodesCpuMs, r.result.completedTotal))),
    loadGeneratorCpuUsPerOp: medianOf(
      runs.map((r) => perOp(r.result.cpuMs, r.result.completedTotal)),
    ),
  };
}

/** One comparison per case, in the order the cases first appear in `runs`. */
export function compare(runs: readonly CaseRun[]): Comparison[] {
  const keys: CaseKey[] = [];
  for (const r of runs) if (!keys.some((k) => sameCase(k, r))) keys.push(r);
  return keys.map((key) => {
    const of = (system: SystemName): CaseSummary | null => {
      const mine = runs.filter((r) => r.system === system && sameCase(r, key));
      return mine.length === 0 ? null : summarizeCase(mine);
    };
    const baton = of("baton");
    const etcd = of("etcd");
    const ratio = (a: number | null | undefined, b: number | null | undefined): number | null =>
      a == null || b == null || b === 0 ? null : a / b;
    return {
      mix: key.mix,
      valueBytes: key.valueBytes,
      clients: key.clients,
      baton,
      etcd,
      throughputRatio: ratio(baton?.opsPerSecond, etcd?.opsPerSecond),
      p99Ratio: ratio(baton?.p99Ms, etcd?.p99Ms),
    };
  });
}

export function formatBytes(bytes: number): string {
  if (bytes % 1024 === 0 && bytes >= 1024) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}

function fmt(value: number | null | undefined, digits = 1): string {
  if (value == null) return "-";
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString("en-US");
  return value.toFixed(digits);
}

function ratioText(value: number | null): string {
  return value === null ? "-" : `${value.toFixed(2)}×`;
}

/** The comparison as a Markdown table (also what the terminal shows). */
export function markdownTable(comparisons: readonly Comparison[]): string {
  const header =
    "| mix | value | clients | Baton ops/s | Baton p50 ms | Baton p99 ms | etcd ops/s | etcd p50 ms | etcd p99 ms | ops/s Baton÷etcd | p99 Baton÷etcd | load avg |";
  const rule =
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |";
  const rows = comparisons.map((c) => {
    const errors = (s: CaseSummary | null): string =>
      s !== null && s.errors > 0 ? ` (${s.errors} err)` : "";
    const load = c.baton?.loadAverage1m ?? c.etcd?.loadAverage1m ?? null;
    return `| ${c.mix} | ${formatBytes(c.valueBytes)} | ${c.clients} | ${fmt(c.baton?.opsPerSecond, 0)}${errors(c.baton)} | ${fmt(c.baton?.p50Ms, 2)} | ${fmt(c.baton?.p99Ms, 2)} | ${fmt(c.etcd?.opsPerSecond, 0)}${errors(c.etcd)} | ${fmt(c.etcd?.p50Ms, 2)} | ${fmt(c.etcd?.p99Ms, 2)} | ${ratioText(c.throughputRatio)} | ${ratioText(c.p99Ratio)} | ${fmt(load, 1)} |`;
  });
  return [header, rule, ...rows].join("\n");
}

/**
 * Where the CPU went, per request answered (medians over the runs): the nodes of the
 * system together, and the load generator, which shares the machine with them.
 */
export function cpuTable(comparisons: readonly Comparison[]): string {
  const header =
    "| mix | value | clients | Baton nodes CPU µs/op | Baton load generator CPU µs/op | etcd nodes CPU µs/op | etcd load generator CPU µs/op |";
  const rule = "| --- | ---: | ---: | ---: | ---: | ---: | ---: |";
  const rows = comparisons.map(
    (c) =>
      `| ${c.mix} | ${formatBytes(c.valueBytes)} | ${c.clients} | ${fmt(c.baton?.nodesCpuUsPerOp, 0)} | ${fmt(c.baton?.loadGeneratorCpuUsPerOp, 0)} | ${fmt(c.etcd?.nodesCpuUsPerOp, 0)} | ${fmt(c.etcd?.loadGeneratorCpuUsPerOp, 0)} |`,
  );
  return [header, rule, ...rows].join("\n");
}

// ---------------------------------------------------------------- charts

const COLORS: Record<SystemName, string> = { baton: "#1f6feb", etcd: "#d1242f" };

export interface Series {
  readonly name: string;
  readonly color: string;
  readonly dashed: boolean;
  readonly points: readonly (readonly [number, number])[];
}

export function escapeXml(text: string): string {
  return text.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * A line chart with a log2 x axis (clients, unless `xLabel` says otherwise) and a linear
 * or log10 y axis.
 */
export function lineChart(
  title: string,
  yLabel: string,
  series: readonly Series[],
  logY: boolean,
  xLabel = "concurrent clients",
): string {
  const width = 560;
  const height = 320;
  const left = 70;
  const right = 150;
  const top = 36;
  const bottom = 44;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1])).filter((y) => y > 0);
  if (xs.length === 0 || ys.length === 0) return "";
  const xMin = Math.log2(Math.min(...xs));
  const xMax = Math.max(xMin + 1, Math.log2(Math.max(...xs)));
  const yTop = Math.max(...ys) * 1.1;
  const yBottom = logY ? Math.min(...ys) / 1.5 : 0;
  const ty = (y: number): number => (logY ? Math.log10(Math.max(y, yBottom)) : y);
  const x = (v: number): number =>
    left + ((Math.log2(v) - xMin) / (xMax - xMin)) * (width - left - right);
  const y = (v: number): number =>
    height - bottom - ((ty(v) - ty(yBottom)) / (ty(yTop) - ty(yBottom))) * (height - top - bottom);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${left}" y="20" font-size="14" font-weight="bold">${escapeXml(title)}</text>`,
    `<line x1="${left}" y1="${height - bottom}" x2="${width - right}" y2="${height - bottom}" stroke="#444"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${height - bottom}" stroke="#444"/>`,
    `<text x="${(left + width - right) / 2}" y="${height - 8}" text-anchor="middle">${escapeXml(xLabel)}</text>`,
    `<text x="14" y="${(top + height - bottom) / 2}" text-anchor="middle" transform="rotate(-90 14 ${(top + height - bottom) / 2})">${escapeXml(yLabel)}</text>`,
  ];
  for (const v of [...new Set(xs)].sort((a, b) => a - b)) {
    parts.push(
      `<text x="${x(v)}" y="${height - bottom + 16}" text-anchor="middle">${v}</text>`,
      `<line x1="${x(v)}" y1="${height - bottom}" x2="${x(v)}" y2="${height - bottom + 4}" stroke="#444"/>`,
    );
  }
  const ticks = logY
    ? Array.from(
        { length: Math.ceil(Math.log10(yTop)) - Math.floor(Math.log10(yBottom)) + 1 },
        (_, i) => 10 ** (Math.floor(Math.log10(yBottom)) + i),
      ).filter((t) => t >= yBottom && t <= yTop)
    : Array.from({ length: 6 }, (_, i) => (yTop / 5) * i);
  for (const t of ticks) {
    parts.push(
      `<line x1="${left}" y1="${y(t)}" x2="${width - right}" y2="${y(t)}" stroke="#ddd"/>`,
      `<text x="${left - 6}" y="${y(t) + 4}" text-anchor="end">${fmt(t, t < 1 ? 2 : 0)}</text>`,
    );
  }
  series.forEach((s, i) => {
    const path = s.points.map((p, j) => `${j === 0 ? "M" : "L"}${x(p[0])},${y(p[1])}`).join(" ");
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : "";
    parts.push(`<path d="${path}" fill="none" stroke="${s.color}" stroke-width="2"${dash}/>`);
    for (const p of s.points) {
      parts.push(`<circle cx="${x(p[0])}" cy="${y(p[1])}" r="3" fill="${s.color}"/>`);
    }
    const ly = top + 10 + i * 18;
    parts.push(
      `<line x1="${width - right + 12}" y1="${ly}" x2="${width - right + 36}" y2="${ly}" stroke="${s.color}" stroke-width="2"${dash}/>`,
      `<text x="${width - right + 40}" y="${ly + 4}">${escapeXml(s.name)}</text>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n");
}

export interface Chart {
  readonly file: string;
  readonly svg: string;
}

/** Two charts per mix and value size: throughput, and p50/p99 latency, against clients. */
export function charts(comparisons: readonly Comparison[]): Chart[] {
  const groups: { mix: Mix; valueBytes: number }[] = [];
  for (const c of comparisons) {
    if (!groups.some((g) => g.mix === c.mix && g.valueBytes === c.valueBytes)) groups.push(c);
  }
  const out: Chart[] = [];
  for (const g of groups) {
    const rows = comparisons
      .filter((c) => c.mix === g.mix && c.valueBytes === g.valueBytes)
      .sort((a, b) => a.clients - b.clients);
    const systems = (["baton", "etcd"] as const).filter((s) => rows.some((r) => r[s] !== null));
    const points = (s: SystemName, f: (x: CaseSummary) => number | null): [number, number][] =>
      rows.flatMap((r) => {
        const v = r[s] === null ? null : f(r[s]);
        return v === null || v <= 0 ? [] : [[r.clients, v] as [number, number]];
      });
    const name = `${g.mix.replace("/", "-")}-${g.valueBytes}`;
    const what = `${g.mix}, ${formatBytes(g.valueBytes)} values`;
    out.push({
      file: `throughput-${name}.svg`,
      svg: lineChart(
        `Throughput (${what})`,
        "operations per second",
        systems.map((s) => ({
          name: s,
          color: COLORS[s],
          dashed: false,
          points: points(s, (x) => x.opsPerSecond),
        })),
        false,
      ),
    });
    out.push({
      file: `latency-${name}.svg`,
      svg: lineChart(
        `Latency p50 and p99 (${what})`,
        "ms (log scale)",
        systems.flatMap((s) => [
          { name: `${s} p50`, color: COLORS[s], dashed: true, points: points(s, (x) => x.p50Ms) },
          { name: `${s} p99`, color: COLORS[s], dashed: false, points: points(s, (x) => x.p99Ms) },
        ]),
        true,
      ),
    });
  }
  return out.filter((c) => c.svg !== "");
}

/** A report's machine and systems as Markdown list items. */
export function headerLines(report: ReportHeader): { machine: string; systems: string } {
  const machine = Object.entries(report.machine)
    .map(([k, v]) => `- ${k}: ${Array.isArray(v) ? v.join(" ") : String(v)}`)
    .join("\n");
  const systems = Object.entries(report.systems)
    .map(([k, v]) => `- ${k}: ${v}`)
    .join("\n");
  return { machine, systems };
}

/** Writes results.json, results.md, the SVGs and index.html into `dir`. */
export function writeReport(dir: string, report: Report): string[] {
  const table = markdownTable(report.comparisons);
  const chartList = charts(report.comparisons);
  const files = ["results.json", "results.md", "index.html", ...chartList.map((c) => c.file)];
  writeFileSync(join(dir, "results.json"), `${JSON.stringify(report, null, 2)}\n`);
  const { machine, systems } = headerLines(report);
  const skipped = report.skipped.map((s) => `- skipped: ${s}`).join("\n");
  const md = [
    `# Throughput benchmark, ${report.date}`,
    "",
    `Command: \`${report.command}\``,
    "",
    machine,
    systems,
    skipped,
    "",
    table,
    "",
    "CPU time per request answered (medians; warm-up and preload included):",
    "",
    cpuTable(report.comparisons),
    "",
  ].join("\n");
  writeFileSync(join(dir, "results.md"), md);
  for (const c of chartList) writeFileSync(join(dir, c.file), `${c.svg}\n`);
  const html = [
    "<!doctype html><html><head><meta charset='utf-8'><title>Baton benchmark</title>",
    "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}",
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}svg{margin:8px}</style></head><body>",
    `<h1>Baton benchmark, ${escapeXml(report.date)}</h1>`,
    `<p><code>${escapeXml(report.command)}</code></p>`,
    `<pre>${escapeXml(`${machine}\n${systems}\n${skipped}`)}</pre>`,
    htmlTable(table),
    htmlTable(cpuTable(report.comparisons)),
    ...chartList.map((c) => c.svg),
    "</body></html>",
  ].join("\n");
  writeFileSync(join(dir, "index.html"), html);
  return files;
}

/** A Markdown table (as markdownTable writes them) as an HTML table. */
export function htmlTable(markdown: string): string {
  const lines = markdown.split("\n").filter((_line, i) => i !== 1);
  const cells = (l: string): string[] =>
    l
      .split("|")
      .slice(1, -1)
      .map((c) => escapeXml(c.trim()));
  const [head, ...body] = lines;
  return [
    "<table>",
    `<tr>${cells(head ?? "")
      .map((c) => `<th>${c}</th>`)
      .join("")}</tr>`,
    ...body.map(
      (l) =>
        `<tr>${cells(l)
          .map((c) => `<td>${c}</td>`)
          .join("")}</tr>`,
    ),
    "</table>",
  ].join("\n");
}
