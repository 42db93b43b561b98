/**
 * The report of a fault campaign: a folder with the history (history.jsonl, one operation
 * a line), the verdicts (verdict.json), and a timeline picture in the manner of Jepsen's
 * latency plots (timeline.svg, and timeline.html, a self-contained page around it). It
 * owns the drawing: x is time, y is latency on a log scale, one dot per operation coloured
 * by outcome, each fault window shaded in its kind's colour, and a vertical line wherever a
 * node became master, labelled with node and term. It reads the record and never changes it.
 */

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { FaultWindow, NemesisKind } from "./nemesis.js";
import type { RoleEvent } from "./processes.js";
import type { OpOutcome, OpRecord } from "./workload.js";

const WIDTH = 1200;
const HEIGHT = 520;
const MARGIN = { left: 64, right: 16, top: 54, bottom: 96 };
const LATENCY_MS_MIN = 0.5;
const LATENCY_MS_MAX = 10_000;

const OUTCOME_COLOURS: Readonly<Record<OpOutcome, string>> = {
  ok: "#1c7ed6",
  failed: "#f08c00",
  indeterminate: "#e03131",
};

const FAULT_COLOURS: Readonly<Record<NemesisKind, string>> = {
  "kill-master": "#868e96",
  "kill-any": "#adb5bd",
  "pause-master": "#be4bdb",
  "isolate-master": "#fab005",
  split: "#fd7e14",
  "one-way": "#40c057",
  flap: "#15aabf",
  "wipe-restart": "#7950f2",
  replace: "#5f3dc4",
  switchover: "#82c91e",
  "rolling-restart": "#e64980",
  "host-down": "#343a40",
};

export interface TimelineInput {
  readonly title: string;
  readonly subtitle: string;
  readonly durationMs: number;
  readonly history: readonly OpRecord[];
  readonly windows: readonly FaultWindow[];
  readonly roles: readonly RoleEvent[];
  /** When the network was healed for good, or null. */
  readonly healedAt: number | null;
}

/** The timeline as a standalone SVG document. */
export function timelineSvg(input: TimelineInput): string {
  const plotW = WIDTH - MARGIN.left - MARGIN.right;
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
  const end = Math.max(1, input.durationMs);
  const x = (ms: number): number => MARGIN.left + (Math.min(Math.max(ms, 0), end) / end) * plotW;
  const logMin = Math.log10(LATENCY_MS_MIN);
  const logMax = Math.log10(LATENCY_MS_MAX);
  const y = (ms: number): number => {
    const clamped = Math.min(Math.max(ms, LATENCY_MS_MIN), LATENCY_MS_MAX);
    return MARGIN.top + plotH - ((Math.log10(clamped) - logMin) / (logMax - logMin)) * plotH;
  };
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="system-ui, sans-serif" font-size="11">`,
    `<title>${esc(`${input.title}. ${input.subtitle}`)}</title>`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#fff"/>`,
    `<text x="${MARGIN.left}" y="20" font-size="15" font-weight="600">${esc(input.title)}</text>`,
    `<text x="${MARGIN.left}" y="38" fill="#495057">${esc(input.subtitle)}</text>`,
  );
  // Fault windows first, so that dots and lines are drawn over them.
  for (const w of input.windows) {
    const x0 = x(w.start);
    const x1 = x(Number.isNaN(w.end) ? end : w.end);
    out.push(
      `<rect x="${f(x0)}" y="${MARGIN.top}" width="${f(Math.max(1, x1 - x0))}" height="${plotH}" fill="${FAULT_COLOURS[w.kind]}" fill-opacity="0.22"><title>${esc(`${w.kind}: ${w.detail} (${(w.start / 1000).toFixed(1)}-${(w.end / 1000).toFixed(1)} s)`)}</title></rect>`,
    );
    // The kind's name inside the window when it fits; the legend names every colour anyway.
    if (x1 - x0 > w.kind.length * 5.5 + 4) {
      out.push(
        `<text x="${f(x0 + 2)}" y="${MARGIN.top + plotH - 4}" fill="#495057" font-size="9">${esc(w.kind)}</text>`,
      );
    }
  }
  if (input.healedAt !== null) {
    const hx = x(input.healedAt);
    out.push(
      `<line x1="${f(hx)}" x2="${f(hx)}" y1="${MARGIN.top}" y2="${MARGIN.top + plotH}" stroke="#2b8a3e" stroke-width="1.5"/>`,
      `<text x="${f(hx - 3)}" y="${MARGIN.top + plotH - 16}" fill="#2b8a3e" text-anchor="end">healed</text>`,
    );
  }
  // Axes and grid.
  for (let decade = Math.ceil(logMin); decade <= logMax; decade++) {
    const ms = 10 ** decade;
    const gy = y(ms);
    out.push(
      `<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${f(gy)}" y2="${f(gy)}" stroke="#dee2e6"/>`,
      `<text x="${MARGIN.left - 6}" y="${f(gy + 4)}" text-anchor="end">${ms >= 1000 ? `${ms / 1000} s` : `${ms} ms`}</text>`,
    );
  }
  const stepS = niceStep(end / 1000);
  for (let s = 0; s * 1000 <= end; s += stepS) {
    const gx = x(s * 1000);
    out.push(
      `<line x1="${f(gx)}" x2="${f(gx)}" y1="${MARGIN.top + plotH}" y2="${MARGIN.top + plotH + 4}" stroke="#495057"/>`,
      `<text x="${f(gx)}" y="${MARGIN.top + plotH + 16}" text-anchor="middle">${s} s</text>`,
    );
  }
  out.push(
    `<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#495057"/>`,
    `<text transform="translate(16 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle">latency (log scale)</text>`,
  );
  // One dot per completed operation; indeterminate ones last, so they stay visible.
  for (const outcome of ["ok", "failed", "indeterminate"] as const) {
    const dots: string[] = [];
    for (const op of input.history) {
      if (op.outcome !== outcome || op.completedAt === null || op.final === true) continue;
      dots.push(`M${f(x(op.invokedAt))} ${f(y(op.completedAt - op.invokedAt))}h0`);
    }
    out.push(
      `<path d="${dots.join("")}" stroke="${OUTCOME_COLOURS[outcome]}" stroke-width="3" stroke-linecap="round" stroke-opacity="${outcome === "ok" ? 0.45 : 0.8}" fill="none"/>`,
    );
  }
  // A node becoming master: a line with its id and term.
  let labelRow = 0;
  for (const role of input.roles) {
    if (role.role !== "master" || role.at < 0) continue;
    const rx = x(role.at);
    labelRow = (labelRow + 1) % 3;
    out.push(
      `<line x1="${f(rx)}" x2="${f(rx)}" y1="${MARGIN.top}" y2="${MARGIN.top + plotH}" stroke="#212529" stroke-dasharray="3 2"/>`,
      `<text x="${f(rx + 2)}" y="${MARGIN.top + 11 + 11 * labelRow}" fill="#212529">n${role.node} T${role.term}</text>`,
    );
  }
  out.push(legend(MARGIN.left, MARGIN.top + plotH + 34, input.windows));
  out.push("</svg>");
  return out.join("\n");
}

function legend(left: number, top: number, windows: readonly FaultWindow[]): string {
  const parts: string[] = [];
  let cx = left;
  const item = (swatch: string, label: string): void => {
    parts.push(
      swatch.replace(/@X/g, f(cx)),
      `<text x="${f(cx + 16)}" y="${top + 4}">${esc(label)}</text>`,
    );
    cx += 24 + label.length * 6.2;
  };
  for (const outcome of ["ok", "failed", "indeterminate"] as const) {
    const colour = OUTCOME_COLOURS[outcome];
    item(
      `<circle cx="@X" cy="${top}" r="4" transform="translate(6 0)" fill="${colour}"/>`,
      outcome,
    );
  }
  item(
    `<line x1="@X" x2="@X" y1="${top - 7}" y2="${top + 7}" transform="translate(6 0)" stroke="#212529" stroke-dasharray="3 2"/>`,
    "new master (node, term)",
  );
  cx = left;
  top += 22;
  const kinds = [...new Set(windows.map((w) => w.kind))];
  for (const kind of kinds) {
    item(
      `<rect x="@X" y="${top - 6}" width="12" height="12" fill="${FAULT_COLOURS[kind]}" fill-opacity="0.4"/>`,
      kind,
    );
  }
  return parts.join("\n");
}

/** The SVG inside a page with the run's summary beside it. */
export function timelineHtml(svg: string, title: string, summary: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:system-ui,sans-serif;margin:24px;color:#212529}pre{background:#f8f9fa;padding:12px;overflow:auto}</style>
</head><body>
${svg}
<pre>${esc(summary)}</pre>
</body></html>
`;
}

export interface ReportFiles {
  readonly dir: string;
  readonly history: readonly OpRecord[];
  readonly verdict: unknown;
  readonly svg: string;
  readonly html: string;
}

export function writeReport(files: ReportFiles): void {
  writeFileSync(
    join(files.dir, "history.jsonl"),
    files.history.map((op) => JSON.stringify(op)).join("\n") +
      (files.history.length > 0 ? "\n" : ""),
  );
  writeFileSync(join(files.dir, "verdict.json"), `${JSON.stringify(files.verdict, null, 2)}\n`);
  writeFileSync(join(files.dir, "timeline.svg"), files.svg);
  writeFileSync(join(files.dir, "timeline.html"), files.html);
}

function niceStep(seconds: number): number {
  for (const step of [1, 2, 5, 10, 15, 30, 60, 120, 300, 600])
    if (seconds / step <= 16) return step;
  return 1200;
}

function f(n: number): string {
  return n.toFixed(1);
}

function esc(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
