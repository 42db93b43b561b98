/**
 * The capacity benchmark's report (bench/capacity.ts measures): three Markdown tables
 * (memory with many keys, restart time against log size, state transfer against the
 * disk's own write rate), printed and written as results.md, with results.json, one SVG
 * chart per table (drawn by report.ts's lineChart) and index.html holding all of them.
 *
 * It only formats what it is given; it starts nothing and measures nothing.
 */

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { DiskWriteRate, MemorySample, WriteResult } from "./capacity-measure.js";
import {
  escapeXml,
  headerLines,
  htmlTable,
  lineChart,
  type ReportHeader,
  type Series,
} from "./report.js";

/** How a cluster of the benchmark takes snapshots. */
export type SnapshotConfig = "default snapshots" | "no snapshots";

export interface MemoryRow {
  readonly config: SnapshotConfig;
  /** Keys written so far (0: the baseline, just after start). */
  readonly keys: number;
  /** The master's last log index when sampled. */
  readonly logEntries: number;
  readonly role: string;
  /** True when this node's process was restarted since the baseline. */
  readonly restarted: boolean;
  readonly sample: MemorySample;
  /** (RSS - the same node's RSS at 0 keys) / keys; null at 0 keys. */
  readonly rssBytesPerKey: number | null;
  /** (V8 heap used - at 0 keys) / keys; null at 0 keys or when /metrics did not answer. */
  readonly heapBytesPerKey: number | null;
  /** Sizes of the node's wal/ and snapshots/ folders, bytes. */
  readonly walBytes: number;
  readonly snapshotBytes: number;
}

export interface RestartRow {
  readonly config: SnapshotConfig;
  readonly signal: "SIGTERM" | "SIGKILL";
  readonly node: number;
  readonly keys: number;
  /** The node's last log index when it was stopped. */
  readonly logEntries: number;
  /** Index of the snapshot it restored (0: none), from its `recovery` log line. */
  readonly snapshotIndex: number;
  /** Entries it applied from its log after the snapshot to catch up. */
  readonly entriesAfterSnapshot: number;
  readonly walBytes: number;
  readonly snapshotBytes: number;
  /** SIGTERM: signal to exit, ms (null for SIGKILL). */
  readonly stopMs: number | null;
  /** From spawn, ms: the first log line (storage opened), the `start` line (log read, core built), `serving` (HTTP listening), applied up to the master's commit index. */
  readonly firstLogLineMs: number | null;
  readonly storageRecoveredMs: number | null;
  readonly listeningMs: number | null;
  readonly caughtUpMs: number;
  /** The master's commit index the node had to reach. */
  readonly targetIndex: number;
  /** The master (id, term) before and after: a restart of a backup should change neither. */
  readonly masterBefore: string;
  readonly masterAfter: string;
  readonly loadAverage1m: number;
}

export interface TransferRow {
  /** Megabytes of values (1 MiB each) written before the empty node started. */
  readonly stateMb: number;
  /** Writing them through HTTP and replication, MB/s. */
  readonly writeMbPerSecond: number;
  /** Size of the snapshot sent, bytes (the master's `state_transfer` line). */
  readonly snapshotBytes: number;
  /** The disk's own rate in the same run: a file of snapshotBytes, fsync at the end. */
  readonly disk: DiskWriteRate;
  /** Empty node: first chunk received → all bytes received (not yet fsynced), ms. */
  readonly streamMs: number;
  /** First chunk received → snapshot adopted (fdatasync and restore included), ms. */
  readonly adoptedMs: number;
  /** fdatasync of the received file and restore of the state from it, ms. */
  readonly restoreMs: number;
  /** Of restoreMs, making the received file durable (fdatasync, rename), ms; null: not logged. */
  readonly durableMs: number | null;
  /** Whether the state was read from the chunks as they arrived (not from the file after). */
  readonly readAsReceived: boolean | null;
  /** The master's own figure: transfer started → last chunk acknowledged, ms. */
  readonly senderMs: number | null;
  /** Empty node spawned → its `serving` line (HTTP listening), ms. */
  readonly listeningMs: number | null;
  /** Empty node spawned → the first chunk of the first transfer session received, ms. */
  readonly firstChunkMs: number;
  /** Transfer sessions node 3 started (1 unless a transfer started over). */
  readonly transferSessions: number;
  /** Empty node spawned → applied up to the master's commit index, ms. */
  readonly caughtUpMs: number;
  readonly streamMbPerSecond: number;
  readonly adoptedMbPerSecond: number;
  /**
   * Elections started on any node (`baton_elections_started_total`) from the first large
   * write to the empty node caught up, and whether the master or its term changed.
   */
  readonly elections: number;
  /** Each candidacy from the nodes' logs: seconds into the phase, stage, node and reason. */
  readonly candidacies: readonly string[];
  /** The longest event-loop delay seen, by "stage: node n", ms. */
  readonly loopDelayMaxMs: Readonly<Record<string, number>>;
  readonly masterChanged: boolean;
  /** adoptedMbPerSecond / disk.mbPerSecond. */
  readonly adoptedToDiskRatio: number;
  readonly loadAverage1m: number;
}

export interface WriteRow {
  readonly phase: string;
  readonly result: WriteResult;
}

export interface CapacityReport extends ReportHeader {
  readonly memory: readonly MemoryRow[];
  readonly restarts: readonly RestartRow[];
  readonly transfers: readonly TransferRow[];
  readonly writes: readonly WriteRow[];
  /**
   * `baton start --help` from spawn to exit, ms (median of a few runs): Node.js starting and loading
   * the CLI's modules, the part of every restart that is not recovery.
   */
  readonly cliBootMs: number | null;
  readonly notes: readonly string[];
}

const MIB = 1024 * 1024;

function count(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

function mib(bytes: number | null): string {
  return bytes === null ? "-" : (bytes / MIB).toFixed(1);
}

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}

function seconds(ms: number | null): string {
  return ms === null ? "-" : (ms / 1000).toFixed(2);
}

function perKey(bytes: number | null): string {
  return bytes === null ? "-" : count(bytes);
}

function table(header: readonly string[], align: readonly ("l" | "r")[], rows: string[][]): string {
  const rule = align.map((a) => (a === "r" ? "---:" : "---"));
  return [header, rule, ...rows].map((cells) => `| ${cells.join(" | ")} |`).join("\n");
}

export function memoryTable(rows: readonly MemoryRow[]): string {
  return table(
    [
      "config",
      "keys",
      "log entries",
      "node",
      "role",
      "RSS MiB",
      "peak RSS MiB",
      "V8 heap used MiB",
      "heap total MiB",
      "external MiB",
      "RSS B/key",
      "heap B/key",
      "WAL MB",
      "snapshots MB",
    ],
    ["l", "r", "r", "r", "l", "r", "r", "r", "r", "r", "r", "r", "r", "r"],
    rows.map((r) => [
      r.config,
      count(r.keys),
      count(r.logEntries),
      String(r.sample.node),
      r.restarted ? `${r.role} (restarted)` : r.role,
      mib(r.sample.rssBytes),
      mib(r.sample.peakRssBytes),
      mib(r.sample.heapUsedBytes),
      mib(r.sample.heapTotalBytes),
      mib(r.sample.externalBytes),
      perKey(r.rssBytesPerKey),
      perKey(r.heapBytesPerKey),
      mb(r.walBytes),
      mb(r.snapshotBytes),
    ]),
  );
}

export function restartTable(rows: readonly RestartRow[]): string {
  return table(
    [
      "config",
      "signal",
      "keys",
      "log entries",
      "snapshot index",
      "entries after snapshot",
      "WAL MB",
      "snapshots MB",
      "stop s",
      "first log line s",
      "storage recovered s",
      "listening s",
      "caught up s",
      "load avg",
    ],
    ["l", "l", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r", "r"],
    rows.map((r) => [
      r.config,
      r.signal,
      count(r.keys),
      count(r.logEntries),
      count(r.snapshotIndex),
      count(r.entriesAfterSnapshot),
      mb(r.walBytes),
      mb(r.snapshotBytes),
      seconds(r.stopMs),
      seconds(r.firstLogLineMs),
      seconds(r.storageRecoveredMs),
      seconds(r.listeningMs),
      seconds(r.caughtUpMs),
      r.loadAverage1m.toFixed(1),
    ]),
  );
}

export function transferTable(rows: readonly TransferRow[]): string {
  return table(
    [
      "state MB",
      "snapshot MB",
      "disk write+fsync MB/s",
      "stream MB/s",
      "to adopted MB/s",
      "adopted ÷ disk",
      "stream s",
      "fsync+restore s",
      "of which fsync s",
      "state read",
      "master's send s",
      "spawn → listening s",
      "spawn → first chunk s",
      "spawn → caught up s",
      "HTTP write MB/s",
      "elections",
      "load avg",
    ],
    ["r", "r", "r", "r", "r", "r", "r", "r", "r", "l", "r", "r", "r", "r", "r", "r", "r"],
    rows.map((r) => [
      count(r.stateMb),
      mb(r.snapshotBytes),
      r.disk.mbPerSecond.toFixed(1),
      r.streamMbPerSecond.toFixed(1),
      r.adoptedMbPerSecond.toFixed(1),
      `${r.adoptedToDiskRatio.toFixed(2)}×`,
      seconds(r.streamMs),
      seconds(r.restoreMs),
      seconds(r.durableMs),
      r.readAsReceived === null ? "-" : r.readAsReceived ? "as received" : "from the file",
      seconds(r.senderMs),
      seconds(r.listeningMs),
      seconds(r.firstChunkMs),
      seconds(r.caughtUpMs),
      r.writeMbPerSecond.toFixed(1),
      `${r.elections}${r.masterChanged ? " (master changed)" : ""}`,
      r.loadAverage1m.toFixed(1),
    ]),
  );
}

/** The tables that have rows, each under a heading. */
export function markdownTables(report: CapacityReport): string {
  const parts: string[] = [];
  if (report.memory.length > 0) {
    parts.push("## Memory per node", "", memoryTable(report.memory), "");
  }
  if (report.restarts.length > 0) {
    parts.push("## Restart time against log size", "", restartTable(report.restarts), "");
    if (report.cliBootMs !== null) {
      parts.push(
        `\`baton start --help\` takes ${seconds(report.cliBootMs)} s from spawn to exit (median): Node.js starting and loading the modules, the part of each restart before recovery begins.`,
        "",
      );
    }
  }
  if (report.transfers.length > 0) {
    parts.push(
      "## State transfer to an empty node, against the disk's own write rate",
      "",
      transferTable(report.transfers),
      "",
    );
  }
  return parts.join("\n");
}

// ---------------------------------------------------------------- charts

const BLUE = "#1f6feb";
const GREEN = "#1a7f37";
const ORANGE = "#bc4c00";
const RED = "#d1242f";

export interface Chart {
  readonly file: string;
  readonly svg: string;
}

function points<T>(
  rows: readonly T[],
  x: (r: T) => number,
  y: (r: T) => number | null,
): [number, number][] {
  return rows
    .map((r): [number, number | null] => [x(r), y(r)])
    .filter((p): p is [number, number] => p[0] > 0 && p[1] !== null && p[1] > 0)
    .sort((a, b) => a[0] - b[0]);
}

export function charts(report: CapacityReport): Chart[] {
  const out: Chart[] = [];
  const series: Series[] = [];
  for (const config of ["default snapshots", "no snapshots"] as const) {
    const rows = report.memory.filter((r) => r.config === config && !r.restarted);
    const master = rows.filter((r) => r.role === "master");
    const dashed = config === "no snapshots";
    const suffix = dashed ? " (no snap.)" : "";
    series.push(
      {
        name: `master RSS${suffix}`,
        color: BLUE,
        dashed,
        points: points(
          master,
          (r) => r.keys,
          (r) => r.sample.rssBytes / MIB,
        ),
      },
      {
        name: `master heap${suffix}`,
        color: GREEN,
        dashed,
        points: points(
          master,
          (r) => r.keys,
          (r) => (r.sample.heapUsedBytes === null ? null : r.sample.heapUsedBytes / MIB),
        ),
      },
    );
    if (!dashed) {
      const backupId = rows.find((r) => r.role === "backup")?.sample.node;
      series.push({
        name: "a backup's RSS",
        color: ORANGE,
        dashed,
        points: points(
          rows.filter((r) => r.sample.node === backupId),
          (r) => r.keys,
          (r) => r.sample.rssBytes / MIB,
        ),
      });
    }
  }
  const memorySeries = series.filter((s) => s.points.length > 0);
  if (memorySeries.length > 0) {
    out.push({
      file: "memory.svg",
      svg: lineChart("Memory per node against keys", "MiB", memorySeries, false, "keys"),
    });
  }
  const restartSeries: Series[] = [];
  const restart = (
    config: string,
    signal: string,
    name: string,
    color: string,
    dashed: boolean,
    y: (r: RestartRow) => number | null,
  ): void => {
    const rows = report.restarts.filter((r) => r.config === config && r.signal === signal);
    const p = points(rows, (r) => r.logEntries, y);
    if (p.length > 0) restartSeries.push({ name, color, dashed, points: p });
  };
  restart("no snapshots", "SIGTERM", "SIGTERM caught up", BLUE, false, (r) => r.caughtUpMs / 1000);
  restart("no snapshots", "SIGKILL", "SIGKILL caught up", RED, false, (r) => r.caughtUpMs / 1000);
  restart("no snapshots", "SIGKILL", "SIGKILL listening", RED, true, (r) =>
    r.listeningMs === null ? null : r.listeningMs / 1000,
  );
  if (restartSeries.length > 0) {
    out.push({
      file: "restart.svg",
      svg: lineChart(
        "Restart of a backup, no snapshots: time from spawn",
        "seconds",
        restartSeries,
        false,
        "log entries",
      ),
    });
  }
  const t = report.transfers;
  const transferSeries: Series[] = [
    {
      name: "disk write+fsync",
      color: ORANGE,
      dashed: true,
      points: points(
        t,
        (r) => r.stateMb,
        (r) => r.disk.mbPerSecond,
      ),
    },
    {
      name: "to adopted",
      color: BLUE,
      dashed: false,
      points: points(
        t,
        (r) => r.stateMb,
        (r) => r.adoptedMbPerSecond,
      ),
    },
    {
      name: "stream",
      color: GREEN,
      dashed: false,
      points: points(
        t,
        (r) => r.stateMb,
        (r) => r.streamMbPerSecond,
      ),
    },
  ].filter((s) => s.points.length > 0);
  if (transferSeries.length > 0) {
    out.push({
      file: "transfer.svg",
      svg: lineChart(
        "State transfer rate against the disk's",
        "MB/s",
        transferSeries,
        false,
        "state (MB)",
      ),
    });
  }
  return out.filter((c) => c.svg !== "");
}

/** Writes results.json, results.md, the SVGs and index.html into `dir`; returns the names. */
export function writeCapacityReport(dir: string, report: CapacityReport): string[] {
  const tables = markdownTables(report);
  const chartList = charts(report);
  writeFileSync(join(dir, "results.json"), `${JSON.stringify(report, null, 2)}\n`);
  const { machine, systems } = headerLines(report);
  const notes = report.notes.map((n) => `- ${n}`).join("\n");
  const header = [`Command: \`${report.command}\``, "", machine, systems, "", notes].join("\n");
  writeFileSync(
    join(dir, "results.md"),
    [`# Capacity benchmark, ${report.date}`, "", header, "", tables].join("\n"),
  );
  for (const c of chartList) writeFileSync(join(dir, c.file), `${c.svg}\n`);
  const htmlTables = tables
    .split(/^## /m)
    .filter((part) => part.trim() !== "")
    .map((part) => {
      const [title = "", ...rest] = part.split("\n");
      const markdown = rest.filter((l) => l.startsWith("|")).join("\n");
      const text = rest.filter((l) => l.trim() !== "" && !l.startsWith("|"));
      return [
        `<h2>${escapeXml(title)}</h2>`,
        htmlTable(markdown),
        ...text.map((l) => `<p>${escapeXml(l)}</p>`),
      ].join("\n");
    });
  const html = [
    "<!doctype html><html><head><meta charset='utf-8'><title>Baton capacity benchmark</title>",
    "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}",
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}svg{margin:8px}</style></head><body>",
    `<h1>Baton capacity benchmark, ${escapeXml(report.date)}</h1>`,
    `<p><code>${escapeXml(report.command)}</code></p>`,
    `<pre>${escapeXml(`${machine}\n${systems}\n${notes}`)}</pre>`,
    ...htmlTables,
    ...chartList.map((c) => c.svg),
    "</body></html>",
  ].join("\n");
  writeFileSync(join(dir, "index.html"), html);
  return ["results.json", "results.md", "index.html", ...chartList.map((c) => c.file)];
}
