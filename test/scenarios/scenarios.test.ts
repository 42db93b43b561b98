/**
 * Runs the core scenario scripts in this folder: commands in, expected trace out.
 * `UPDATE=1 npm test` rewrites the expectations; read the diff before committing it.
 */

import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import type { ReplicaConfig } from "../../src/core/config.js";
import { Harness } from "./harness.js";

const here = dirname(fileURLToPath(import.meta.url));

interface Case {
  commands: string[];
  expected: string[];
}

function parse(text: string): Case[] {
  const cases: Case[] = [];
  const lines = text.split("\n");
  let i = 0;
  while (i < lines.length) {
    while (i < lines.length && (lines[i]!.trim() === "" || lines[i]!.startsWith("#"))) i++;
    if (i >= lines.length) break;
    const commands: string[] = [];
    while (i < lines.length && lines[i] !== "----") commands.push(lines[i++]!);
    i++;
    const expected: string[] = [];
    while (i < lines.length && lines[i]!.trim() !== "") expected.push(lines[i++]!);
    cases.push({ commands, expected });
  }
  return cases;
}

function render(cases: Case[], outputs: string[][], comments: Map<number, string[]>): string {
  return `${cases
    .map((c, k) => [...(comments.get(k) ?? []), ...c.commands, "----", ...outputs[k]!].join("\n"))
    .join("\n\n")}\n`;
}

function leadingComments(text: string): Map<number, string[]> {
  const map = new Map<number, string[]>();
  const blocks = text.split(/\n\s*\n/);
  let k = 0;
  for (const block of blocks) {
    const lines = block.split("\n");
    const comments = lines.filter((l) => l.startsWith("#"));
    if (lines.some((l) => l === "----")) {
      map.set(k++, comments);
    } else if (comments.length > 0) {
      map.set(k, [...(map.get(k) ?? []), ...comments]);
    }
  }
  return map;
}

function ids(args: string[]): number[] {
  return args.filter((a) => a !== "|").map(Number);
}

function options(args: string[]): Partial<ReplicaConfig> {
  const out: Record<string, number | boolean> = {};
  for (const arg of args) {
    const [key, value] = arg.split("=");
    out[key!] = value === "true" ? true : value === "false" ? false : Number(value);
  }
  return out as Partial<ReplicaConfig>;
}

function execute(h: Harness, line: string): void {
  const [command, ...args] = line.trim().split(/\s+/);
  const n = (k: number): number => Number(args[k]);
  switch (command) {
    case "add-nodes":
      return h.addNodes(n(0), options(args.slice(1)));
    case "campaign":
      return h.campaign(n(0));
    case "stabilize":
      return h.stabilize();
    case "deliver":
      h.deliver(args[0] === undefined ? undefined : n(0));
      return;
    case "tick":
      return h.tick(n(0), args[1] === undefined ? 1 : n(1));
    case "tick-all":
      return h.tickAll(n(0));
    case "propose":
      return h.propose(n(0), args.slice(1).join(" "));
    case "partition": {
      const groups: number[][] = [[]];
      for (const a of args) {
        if (a === "|") groups.push([]);
        else groups[groups.length - 1]!.push(Number(a));
      }
      return h.partition(groups);
    }
    case "cut":
      return h.cutOneWay(n(0), n(1));
    case "heal":
      return h.heal();
    case "crash":
      return h.crash(n(0));
    case "restart":
      return h.restart(n(0));
    case "wipe":
      return h.wipe(n(0));
    case "rejoin":
      return h.restart(n(0), { join: true });
    case "freeze":
      h.frozen.add(n(0));
      return;
    case "thaw":
      h.frozen.delete(n(0));
      return;
    case "switchover": {
      const r = h.node(n(0)).transferMastership(args[1] === undefined ? null : n(1));
      h.out.push(
        r.ok ? `${n(0)} hands over to ${r.target}` : `${n(0)} switchover refused: ${r.reason}`,
      );
      return h.process(n(0));
    }
    case "unreachable":
      h.node(n(0)).peerUnreachable(n(1));
      return h.process(n(0));
    case "read": {
      const r = h.node(n(0)).readIndex(n(1));
      h.out.push(
        r.ok ? `${n(0)} read ${n(1)} registered` : `${n(0)} read ${n(1)} refused: ${r.reason}`,
      );
      return h.process(n(0));
    }
    case "reads": {
      const reads = h.reads.get(n(0))!.splice(0);
      h.out.push(
        `${n(0)} reads: ${reads.map((r) => `${r.requestId}@${r.index ?? "aborted"}`).join(" ") || "(none)"}`,
      );
      return;
    }
    case "status":
      for (const id of args.length > 0 ? ids(args) : [...h.nodes.keys()]) h.out.push(h.status(id));
      return;
    case "log":
      for (const id of args.length > 0 ? ids(args) : [...h.nodes.keys()]) h.out.push(h.logOf(id));
      return;
    case "applied":
      for (const id of ids(args)) {
        h.out.push(
          `${id} applied: ${
            h.applied
              .get(id)!
              .map((e) => `${e.index}:${e.term}`)
              .join(" ") || "(none)"
          }`,
        );
      }
      return;
    default:
      throw new Error(`unknown scenario command: ${line}`);
  }
}

const files = readdirSync(here).filter((f) => f.endsWith(".txt"));

for (const file of files) {
  describe(`scenario: ${file.replace(/\.txt$/, "")}`, () => {
    it("matches its expected trace", () => {
      const path = join(here, file);
      const text = readFileSync(path, "utf8");
      const cases = parse(text);
      const h = new Harness();
      const outputs = cases.map((c) => {
        h.out.length = 0;
        for (const line of c.commands) if (!line.startsWith("#")) execute(h, line);
        return [...h.out];
      });
      if (process.env.UPDATE === "1") {
        writeFileSync(
          path,
          render(
            cases.map((c) => ({ ...c, commands: c.commands.filter((l) => !l.startsWith("#")) })),
            outputs,
            leadingComments(text),
          ),
        );
        return;
      }
      cases.forEach((c, k) => {
        expect(outputs[k], `${file}: after\n${c.commands.join("\n")}`).toEqual(c.expected);
      });
    });
  });
}
