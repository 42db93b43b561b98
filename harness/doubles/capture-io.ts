/**
 * A test double (in harness/, never published): a CliIo that records what a command writes,
 * feeds it a fixed standard input, and can pretend to be a terminal.
 */

import type { CliIo } from "../../src/cli/commands/cli-io.js";

export interface CapturedIo extends CliIo {
  /** Everything written to stdout, decoded as UTF-8. */
  out(): string;
  /** Everything written to stdout, as bytes. */
  outBytes(): Uint8Array;
  err(): string;
}

export function captureIo(
  options: {
    stdin?: Uint8Array;
    env?: Record<string, string>;
    tty?: boolean;
    /** Standard input is a terminal. */
    stdinTty?: boolean;
  } = {},
): CapturedIo {
  const out: Uint8Array[] = [];
  const err: Uint8Array[] = [];
  const sink = (chunks: Uint8Array[], isTTY: boolean) => ({
    isTTY,
    write: (chunk: string | Uint8Array) =>
      chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : Uint8Array.from(chunk)),
  });
  const stdin = options.stdin ?? new Uint8Array();
  return {
    stdout: sink(out, options.tty === true),
    stderr: sink(err, false),
    stdin: Object.assign(
      (async function* () {
        yield stdin;
      })(),
      { isTTY: options.stdinTty === true },
    ),
    env: options.env ?? {},
    exitCode: 0,
    out: () => Buffer.concat(out).toString("utf8"),
    outBytes: () => new Uint8Array(Buffer.concat(out)),
    err: () => Buffer.concat(err).toString("utf8"),
  };
}
