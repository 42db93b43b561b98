/**
 * What every benchmark's command shares: the description of the machine that goes into
 * its results, and running its main function as the program (exit codes, commander's
 * --help and usage errors, a stack trace for anything else).
 */

import { execFileSync } from "node:child_process";
import { availableParallelism, cpus, loadavg, release, tmpdir, totalmem } from "node:os";

/** The output of a short command on one line, or "unknown" when it fails. */
function shell(command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
      .trim()
      .replace(/\s+/g, " ");
  } catch {
    return "unknown";
  }
}

/** CPUs, memory, Node, kernel, the disk under the temporary folder, the load average. */
export function describeMachine(): Record<string, unknown> {
  return {
    cpus: availableParallelism(),
    cpuModel: cpus()[0]?.model ?? "unknown",
    memoryGiB: Math.round(totalmem() / 1024 ** 3),
    node: process.version,
    kernel: release(),
    disk: `${shell("df", ["--output=source,fstype", tmpdir()])}; ${shell("lsblk", ["-d", "-o", "NAME,ROTA,TYPE,SIZE"])}`,
    loadAverageAtStart: loadavg().map((l) => Number(l.toFixed(2))),
  };
}

/**
 * Runs `main` with the command-line arguments when `file` is the program being run (not
 * when it is imported, by a test say), and sets the exit code from its result: 0 after
 * --help, 2 for a usage error, 1 with the stack trace for a failure.
 */
export function runAsProgram(
  file: string,
  name: string,
  main: (argv: string[]) => Promise<number>,
): void {
  if (process.argv[1]?.endsWith(file) !== true) return;
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      const e = error as { code?: string; stack?: string };
      if (e.code?.startsWith("commander.") === true) {
        process.exitCode = e.code === "commander.helpDisplayed" ? 0 : 2;
        return;
      }
      process.stderr.write(`${name}: ${e.stack ?? String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
