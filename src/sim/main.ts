/**
 * `baton sim`, the simulator's command line: sweep many seeds (in parallel child
 * processes), replay one seed with a readable trace, or show a short demonstration run.
 * Every failure prints its seed and the exact command that replays it. The command adds
 * itself to the `baton` program (src/cli/main.ts), which is also what a sweep's child
 * processes run.
 *
 *   npm run sim -- --seeds 10000 [--from 1] [--jobs 2]   (progress on stderr, seeds/s at the end)
 *   npm run sim -- --seed 1234 --trace
 *   npm run sim -- --demo
 */

import { fork } from "node:child_process";
import { cpus } from "node:os";
import { type Command, InvalidArgumentError, Option } from "commander";
import { parseElectionMs } from "../server/node-config.js";
import { type RunResult, runSeed } from "./run.js";
import { runWholeNode } from "./whole-node.js";

interface SweepSummary {
  seeds: number;
  failures: { seed: number; violation: string }[];
  operations: number;
  indeterminate: number;
  elections: number;
  failovers: number;
  crashes: number;
  tornWrites: number;
  transfers: number;
  corruptionsDetected: number;
  wipes: number;
  retriesAnswered: number;
  refused: number;
  messages: number;
  dropped: number;
  faults: Record<string, number>;
  checks: Record<string, number>;
}

function integer(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new InvalidArgumentError("expected a non-negative integer");
  return n;
}

/** A count that must be at least one (`--jobs 0` would otherwise run one process silently). */
function positive(value: string): number {
  const n = integer(value);
  if (n < 1) throw new InvalidArgumentError("expected an integer of at least 1");
  return n;
}

/** `--election-ms` as `baton start` reads it ("<min>-<max>", or "<min>" for min to 2×min). */
function electionRange(value: string): { min: number; max: number } {
  const range = parseElectionMs(value);
  if (range === null || range.min < 1 || range.max < range.min)
    throw new InvalidArgumentError('expected "<min>-<max>" milliseconds, e.g. "150-300"');
  return range;
}

function emptySummary(): SweepSummary {
  return {
    seeds: 0,
    failures: [],
    operations: 0,
    indeterminate: 0,
    elections: 0,
    failovers: 0,
    crashes: 0,
    tornWrites: 0,
    transfers: 0,
    corruptionsDetected: 0,
    wipes: 0,
    retriesAnswered: 0,
    refused: 0,
    messages: 0,
    dropped: 0,
    faults: {},
    checks: {},
  };
}

function add(summary: SweepSummary, r: RunResult | SweepSummary): void {
  if ("seed" in r) {
    summary.seeds++;
    if (!r.ok) summary.failures.push({ seed: r.seed, violation: r.violation ?? "?" });
  } else {
    summary.seeds += r.seeds;
    summary.failures.push(...r.failures);
  }
  summary.operations += r.operations;
  summary.indeterminate += r.indeterminate;
  summary.elections += r.elections;
  summary.failovers += r.failovers;
  summary.crashes += r.crashes;
  summary.tornWrites += r.tornWrites;
  summary.transfers += r.transfers;
  summary.corruptionsDetected += r.corruptionsDetected;
  summary.wipes += r.wipes;
  summary.retriesAnswered += r.retriesAnswered;
  summary.refused += r.refused;
  summary.messages += r.messages;
  summary.dropped += r.dropped;
  for (const [kind, count] of Object.entries(r.faults)) {
    summary.faults[kind] = (summary.faults[kind] ?? 0) + count;
  }
  for (const [kind, count] of Object.entries(r.checks ?? {})) {
    summary.checks[kind] = (summary.checks[kind] ?? 0) + count;
  }
}

/** A deliberate bug of either simulator (`keep_identity`: core; `no_join`: whole node). */
type AnyNegativeControl = NegativeControl | "no_join";

/** Which simulator runs a seed, and how: everything a sweep's workers and a replay repeat. */
interface Choice {
  readonly wholeNode: boolean;
  readonly negativeControl?: AnyNegativeControl;
  /** A healthy cluster under slowness only (see WholeNodeOptions.calm); whole node only. */
  readonly calm: boolean;
  /** Every node's election timeout range (see WholeNodeOptions.electionMs); whole node only. */
  readonly electionMs?: { readonly min: number; readonly max: number };
}

/** The command-line flags that make the same choice (a sweep's workers, a replay). */
function choiceFlags(c: Choice): string[] {
  return [
    ...(c.wholeNode ? ["--whole-node"] : []),
    ...(c.calm ? ["--calm"] : []),
    ...(c.electionMs === undefined
      ? []
      : ["--election-ms", `${c.electionMs.min}-${c.electionMs.max}`]),
    ...(c.negativeControl === undefined ? [] : ["--negative-control", c.negativeControl]),
  ];
}

/** Runs one seed as `c` chooses. */
function runOne(seed: number, c: Choice, trace = false): Promise<RunResult> {
  if (c.wholeNode) {
    return runWholeNode(seed, {
      trace,
      calm: c.calm,
      ...(c.electionMs === undefined ? {} : { electionMs: c.electionMs }),
      ...(c.negativeControl === "no_join" ? { negativeControl: c.negativeControl } : {}),
    });
  }
  const control = c.negativeControl;
  if (control === "no_join") throw new Error("no_join is a whole-node control");
  return Promise.resolve(
    runSeed(seed, { trace, ...(control === undefined ? {} : { negativeControl: control }) }),
  );
}

/** Runs seeds [from, from + count) in this process; `onProgress` after every seed. */
async function sweepHere(
  from: number,
  count: number,
  c: Choice,
  onProgress?: (done: number) => void,
  onViolation?: (violation: { seed: number; violation: string }) => void,
): Promise<SweepSummary> {
  const summary = emptySummary();
  for (let seed = from; seed < from + count; seed++) {
    const r = await runOne(seed, c);
    add(summary, r);
    if (!r.ok) onViolation?.({ seed, violation: r.violation ?? "violation" });
    onProgress?.(seed - from + 1);
    // A turn of the event loop between seeds (never inside one), so that progress
    // messages and output leave while a long sweep runs.
    await new Promise((resolve) => setImmediate(resolve));
  }
  return summary;
}

/**
 * A sweep's progress on stderr: seeds done, seeds per second and the time left; on a
 * terminal one line rewritten at most once a second, elsewhere (a CI log) a line every
 * 30 seconds.
 */
class SweepProgress {
  private printedAt: number;
  private printed = false;
  private readonly tty = process.stderr.isTTY === true;

  constructor(
    private readonly from: number,
    private readonly count: number,
    private readonly started: number,
  ) {
    // The first line after a full interval: a rate over the first seed or two says little.
    this.printedAt = started;
  }

  update(done: number): void {
    const now = Date.now();
    if (done < this.count && now - this.printedAt < (this.tty ? 1000 : 30_000)) return;
    this.printedAt = now;
    this.printed = true;
    const rate = done / Math.max((now - this.started) / 1000, 0.001);
    const left = rate > 0 ? Math.round((this.count - done) / rate) : 0;
    const line = `  seeds ${this.from}..${this.from + this.count - 1}: ${done} done, ${rate.toFixed(1)} seeds/s, about ${left} s left`;
    process.stderr.write(this.tty ? `\r${line}   ` : `${line}\n`);
  }

  end(): void {
    if (this.tty && this.printed) process.stderr.write("\n");
  }

  /**
   * A violation, said at once (on its own line): a long sweep that is stopped, or whose
   * machine goes away, still leaves the seed that failed in its log.
   */
  violation(found: Found): void {
    process.stderr.write(
      `${this.tty && this.printed ? "\n" : ""}  VIOLATION seed ${found.seed}: ${found.violation}\n`,
    );
  }
}

/** A seed that failed, and how. */
interface Found {
  readonly seed: number;
  readonly violation: string;
}

async function sweepParallel(
  from: number,
  count: number,
  jobs: number,
  workerPrefix: readonly string[],
  progress: SweepProgress,
): Promise<SweepSummary> {
  const total = emptySummary();
  const doneBy = new Map<number, number>();
  const share = Math.ceil(count / jobs);
  const children = Array.from({ length: jobs }, (_, j) => {
    const start = from + j * share;
    const n = Math.max(0, Math.min(share, from + count - start));
    return new Promise<void>((resolve, reject) => {
      if (n === 0) return resolve();
      const child = fork(
        process.argv[1]!,
        [...workerPrefix, "--worker", String(start), String(n)],
        {
          stdio: ["ignore", "inherit", "inherit", "ipc"],
        },
      );
      child.on("message", (m: { done?: number; summary?: SweepSummary; violation?: Found }) => {
        if (m.violation !== undefined) progress.violation(m.violation);
        if (m.done !== undefined) {
          doneBy.set(j, m.done);
          progress.update([...doneBy.values()].reduce((a, b) => a + b, 0));
        }
        if (m.summary !== undefined) add(total, m.summary);
      });
      child.on("exit", (code) =>
        code === 0 ? resolve() : reject(new Error(`worker exited with ${code}`)),
      );
    });
  });
  await Promise.all(children);
  return total;
}

function printSummary(summary: SweepSummary, seconds: number, from: number, c: Choice): void {
  const faults = Object.entries(summary.faults)
    .sort()
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  console.log(
    `seeds ${from}..${from + summary.seeds - 1}: ${summary.seeds} runs in ${seconds.toFixed(1)}s`,
  );
  console.log(`  operations ${summary.operations} (${summary.indeterminate} indeterminate)`);
  console.log(
    `  elections ${summary.elections}, fail-overs ${summary.failovers}, crashes ${summary.crashes}, torn writes ${summary.tornWrites}, state transfers ${summary.transfers}, corrupt records detected ${summary.corruptionsDetected}, wiped nodes rejoined ${summary.wipes}`,
  );
  console.log(
    `  exactly-once: ${summary.retriesAnswered} retried writes answered from the table, ${summary.refused} refused (table full)`,
  );
  console.log(`  messages ${summary.messages} (${summary.dropped} dropped)`);
  console.log(`  faults: ${faults}`);
  const checks = Object.entries(summary.checks).sort();
  if (checks.length > 0) console.log(`  also: ${checks.map(([k, v]) => `${k} ${v}`).join(", ")}`);
  if (summary.failures.length === 0) {
    console.log("  verdict: 0 violations");
    return;
  }
  console.log(`  verdict: ${summary.failures.length} VIOLATIONS`);
  for (const f of summary.failures.slice(0, 20)) {
    console.log(`    seed ${f.seed}: ${f.violation}`);
    console.log(
      `      replay: npm run sim -- ${[...choiceFlags(c), "--seed", f.seed, "--trace"].join(" ")}`,
    );
  }
}

function printRun(r: RunResult, trace: boolean, c: Choice): void {
  if (trace) console.log(r.trace.join("\n"));
  console.log(
    `seed ${r.seed}: ${r.nodeCount} nodes, ${r.clientCount} clients, ${r.operations} operations (${r.indeterminate} indeterminate), commit index ${r.commitIndex}`,
  );
  console.log(
    `  elections ${r.elections}, fail-overs ${r.failovers}, crashes ${r.crashes}, torn writes ${r.tornWrites}, state transfers ${r.transfers}, corrupt records detected ${r.corruptionsDetected}, wiped nodes rejoined ${r.wipes}`,
  );
  console.log(
    `  exactly-once: ${r.retriesAnswered} retried writes answered from the table, ${r.refused} refused (table full); clock jumps ${r.clockJumps}`,
  );
  console.log(
    `  messages ${r.messages} (${r.dropped} dropped); master agreed ${r.recoveryMs === null ? "?" : Math.round(r.recoveryMs)}ms after healing`,
  );
  console.log(
    r.ok
      ? "  verdict: safe, live, exactly-once and linearizable"
      : `  verdict: VIOLATION: ${r.violation}`,
  );
  if (!r.ok) {
    console.log(
      `  replay: npm run sim -- ${[...choiceFlags(c), "--seed", r.seed, "--trace"].join(" ")}`,
    );
  }
}

function demo(seed: number): boolean {
  console.log(
    "Baton simulator: a cluster under faults, on a virtual clock (a second of it takes milliseconds).",
  );
  console.log(
    "Clients read, write and compare-and-set while the nemesis crashes, pauses and partitions nodes.\n",
  );
  const r = runSeed(seed, { trace: true, nodeCount: 3, faultPhaseMs: 4000 });
  for (const line of r.trace) {
    if (/master term|nemesis|VIOLATION|tore/.test(line)) console.log(line);
  }
  console.log("");
  printRun(r, false, { wholeNode: false, calm: false });
  console.log(`\nReplay this run with every step: npm run sim -- --seed ${seed} --trace`);
  return r.ok;
}

interface SimOptions {
  seeds?: number;
  from: number;
  jobs: number;
  seed?: number;
  trace?: boolean;
  demo?: boolean;
  wholeNode?: boolean;
  /** A healthy cluster under slowness only (see WholeNodeOptions.calm); implies wholeNode. */
  calm?: boolean;
  /** "<min>-<max>": every node's election timeout range, ms (whole node only). */
  electionMs?: { min: number; max: number };
  /** Set only in a sweep's child process: the first seed and how many to run. */
  worker?: string[];
  /** A deliberate bug the checkers must catch (see ScenarioOptions.negativeControl). */
  negativeControl?: AnyNegativeControl;
}

type NegativeControl = "keep_identity";

/**
 * Adds `sim` to the `baton` program; it sets `io.exitCode` (0 no violation, 1 a violation).
 * A parallel sweep forks the entry script (baton's) as `baton sim --worker <from> <count>`.
 */
export function register(program: Command, io: { exitCode: number }): void {
  program
    .command("sim")
    .description("run Baton's deterministic cluster simulator (virtual clock, network and disks)")
    .option("--seeds <count>", "run this many seeds and report violations", positive)
    .option("--from <seed>", "first seed of a sweep", integer, 1)
    .option(
      "--jobs <count>",
      "parallel processes for a sweep",
      positive,
      Math.max(1, cpus().length),
    )
    .option("--seed <seed>", "run one seed", integer)
    .option("--trace", "with --seed: print what every node did")
    .option("--demo", "a short run with faults, explained")
    .option(
      "--whole-node",
      "run the production node (runtime, DiskStorage, key-value store) over a simulated file system and network",
    )
    .option(
      "--calm",
      "with --whole-node: no crash or partition, only slow disks, network delay and pauses (of a backup, of the whole machine, of the master for less than a backup's timeout); any election after the first fails the seed",
    )
    .option(
      "--election-ms <min-max>",
      "with --whole-node: every node's election timeout range, as `baton start --election-ms` takes it (default 300-600)",
      electionRange,
    )
    .addOption(new Option("--worker <from-and-count...>").hideHelp())
    .addOption(
      new Option(
        "--negative-control <bug>",
        "run with a deliberate bug the checkers must catch (keep_identity: a wiped data directory keeps its identity; with --whole-node, no_join: a node whose data was lost restarts empty without --join or a replacement)",
      ).choices(["keep_identity", "no_join"]),
    )
    .addHelpText(
      "after",
      `
Without --seeds or --seed it sweeps 100 seeds. Exit codes: 0 no violation, 1 a violation
(each printed with the command that replays it), 2 bad usage.

Examples:
  baton sim --demo              a short simulated run with faults, explained
  baton sim --seeds 10000       sweep ten thousand seeds and report any violation
  baton sim --seed 42 --trace   replay one seed, step by step
  baton sim --whole-node --seeds 1000
                                the same with the production node, storage and store
  baton sim --whole-node --calm --election-ms 150-300 --seeds 1000
                                no crash or partition: does this timing depose a live master?
  npm run sim -- --seeds 10000  the same from a clone of the repository`,
    )
    .action(async (options: SimOptions) => {
      io.exitCode = await sim(options);
    });
}

/** Runs what the options ask for and returns the exit code. */
async function sim(o: SimOptions): Promise<number> {
  const control = o.negativeControl;
  const wholeNode = o.wholeNode === true;
  const c: Choice = {
    wholeNode,
    calm: o.calm === true,
    ...(control === undefined ? {} : { negativeControl: control }),
    ...(o.electionMs === undefined ? {} : { electionMs: o.electionMs }),
  };
  if (control !== undefined && wholeNode !== (control === "no_join")) {
    process.stderr.write(
      "baton sim: --negative-control keep_identity is the core simulator's, no_join the whole node's\n",
    );
    return 2;
  }
  if ((c.calm || c.electionMs !== undefined) && !wholeNode) {
    process.stderr.write(`baton sim: --${c.calm ? "calm" : "election-ms"} needs --whole-node\n`);
    return 2;
  }
  if (o.worker !== undefined) {
    // The sweep that forked this worker is gone (stopped, killed): nobody reads its results.
    process.on("disconnect", () => process.exit(2));
    const send = (message: object): void => {
      process.send?.(message, undefined, {}, () => {});
    };
    const [from, count] = o.worker.map(Number);
    const summary = await sweepHere(
      from ?? 1,
      count ?? 0,
      c,
      (done) => send({ done }),
      (violation) => send({ violation }),
    );
    send({ summary });
    return 0;
  }
  if (o.demo === true) return demo(o.seed ?? 7) ? 0 : 1;
  if (o.seed !== undefined) {
    const r = await runOne(o.seed, c, o.trace === true);
    process.exitCode = r.ok ? 0 : 1;
    printRun(r, o.trace === true, c);
    return r.ok ? 0 : 1;
  }
  const count = o.seeds ?? 100;
  const started = Date.now();
  const parallel = o.jobs > 1 && count >= 200;
  const progress = new SweepProgress(o.from, count, started);
  const summary = parallel
    ? await sweepParallel(o.from, count, o.jobs, ["sim", ...choiceFlags(c)], progress)
    : await sweepHere(
        o.from,
        count,
        c,
        (done) => progress.update(done),
        (found) => progress.violation(found),
      );
  progress.end();
  const seconds = (Date.now() - started) / 1000;
  // A worker that ended without its summary would otherwise show as fewer runs, all fine.
  if (summary.seeds !== count) {
    summary.failures.push({
      seed: o.from,
      violation: `only ${summary.seeds} of the ${count} seeds asked for reported a result`,
    });
  }
  const code = summary.failures.length === 0 ? 0 : 1;
  // Set before anything is printed: a reader that closes the pipe early (`| head`) ends the
  // process with this code, not 0.
  process.exitCode = code;
  printSummary(summary, seconds, o.from, c);
  const processes = parallel ? Math.min(o.jobs, count) : 1;
  console.log(
    `  speed: ${(summary.seeds / Math.max(seconds, 0.001)).toFixed(1)} seeds/s, ${processes} process${processes === 1 ? "" : "es"}; the next range starts at --from ${o.from + summary.seeds}`,
  );
  return code;
}
