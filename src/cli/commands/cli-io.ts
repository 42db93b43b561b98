/**
 * The streams, environment and exit code a command works with. Commands never touch
 * `process` directly, so tests run them in-process against captured output, and the
 * embedding program decides what an exit code means for the process.
 */

export interface CliOutput {
  write(chunk: string | Uint8Array): unknown;
  /** Whether the output is a terminal (colours and screen refreshes only then). */
  readonly isTTY?: boolean | undefined;
}

export interface CliIo {
  readonly stdout: CliOutput;
  readonly stderr: CliOutput;
  readonly stdin: AsyncIterable<Uint8Array | string>;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Set by a command: 0 ok, 1 failed, 2 usage, 3 unavailable (see exit-code.ts). */
  exitCode: number;
}

/** The real process's streams and environment; `exitCode` is `process.exitCode`. */
export function processIo(): CliIo {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    get exitCode(): number {
      return Number(process.exitCode ?? 0);
    },
    set exitCode(code: number) {
      process.exitCode = code;
    },
  };
}

/**
 * Every byte of standard input, joined before anything decodes them. On a terminal it
 * first says on stderr that it waits for `what` and how to end it: a command that reads a
 * terminal in silence looks hung.
 */
export async function readStandardInput(io: CliIo, what: string): Promise<Uint8Array> {
  if ((io.stdin as { isTTY?: boolean }).isTTY === true) {
    io.stderr.write(`baton: reading ${what} from standard input; end it with Ctrl-D\n`);
  }
  const chunks: Uint8Array[] = [];
  for await (const chunk of io.stdin) {
    chunks.push(typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk);
  }
  return new Uint8Array(Buffer.concat(chunks));
}

/** Whether to colour `output`: only on a terminal, and never when NO_COLOR is set. */
export function colourEnabled(io: CliIo, output: CliOutput = io.stdout): boolean {
  const noColor = io.env.NO_COLOR;
  return output.isTTY === true && (noColor === undefined || noColor === "");
}
