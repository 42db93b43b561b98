/**
 * The options every command that talks to a cluster shares (`--endpoints`, `--timeout`,
 * and for a secure cluster `--ca`, `--token`, `--token-file`), their defaults
 * (BATON_ENDPOINTS, then the three nodes `baton demo` starts; BATON_CA, BATON_TOKEN), and
 * making a client from them. A command reads its defaults here and nowhere else.
 */

import { readFileSync } from "node:fs";
import { type Command, InvalidArgumentError } from "commander";
import { type BatonClient, createClient, InvalidInputError } from "../../client/index.js";
import { pemProblem } from "../../shared/pem.js";
import type { CliIo } from "./cli-io.js";
import { inCommandTerms, reportError } from "./exit-code.js";

/** The HTTP addresses of the three nodes `baton demo` starts. */
export const DEFAULT_ENDPOINTS =
  "http://127.0.0.1:8101,http://127.0.0.1:8102,http://127.0.0.1:8103";

export interface ClusterOptions {
  readonly endpoints?: string;
  readonly timeout?: number;
  readonly ca?: string;
  readonly token?: string;
  readonly tokenFile?: string;
}

/** The longest a timer waits, in ms: Node.js fires a longer one at once (and warns). */
export const TIMER_MS_MAX = 2_147_483_647;

/**
 * Parses a whole number from `min` to `max` for commander, or explains the mistake. A
 * duration in ms that a timer waits gets `TIMER_MS_MAX` as its `max`.
 */
export function integerArgument(
  min: number,
  max: number = Number.MAX_SAFE_INTEGER,
): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(
        max === Number.MAX_SAFE_INTEGER
          ? `expected a whole number of at least ${min}`
          : `expected a whole number from ${min} to ${max}`,
      );
    }
    return n;
  };
}

/** Adds `--endpoints` and `--timeout` (with `timeoutMsDefault` in the help) to `command`. */
export function addClusterOptions(command: Command, timeoutMsDefault: number): Command {
  return command
    .option(
      "--endpoints <list>",
      "comma-separated node HTTP addresses (default: $BATON_ENDPOINTS, else the three `baton demo` nodes)",
    )
    .option(
      "--timeout <ms>",
      `give up after this many milliseconds (default: ${timeoutMsDefault})`,
      integerArgument(1, TIMER_MS_MAX),
    )
    .option("--ca <file>", "CA certificate for https:// endpoints (default: $BATON_CA)")
    .option("--token <token>", "API token for a cluster that requires one (default: $BATON_TOKEN)")
    .option("--token-file <file>", "read the API token from a file");
}

/**
 * The TLS and token settings of a client: the CA file's text (`--ca`, else BATON_CA) and the
 * token (`--token`, else `--token-file`, else BATON_TOKEN). Throws InvalidInputError naming
 * the option or variable the user gave when a file cannot be read; `caGiven` names where
 * `options.ca` came from when it is not `--ca` (`baton start --join` uses `--tls-ca`).
 */
export function credentialsFrom(
  options: ClusterOptions,
  io: CliIo,
  caGiven = "--ca",
): { ca?: string; token?: string } {
  const out: { ca?: string; token?: string } = {};
  const [caSource, caFile] =
    options.ca !== undefined ? [caGiven, options.ca] : ["BATON_CA", nonEmpty(io.env.BATON_CA)];
  if (caFile !== undefined) {
    out.ca = readOption(caSource, caFile);
    const problem = pemProblem(out.ca);
    if (problem !== null) throw new InvalidInputError(caSource, `${caFile}: ${problem}`);
  }
  // Every source trimmed alike: a secret injected into the environment often keeps the
  // newline its file ended with, and the file's own was already dropped.
  const source = tokenSource(options);
  const raw =
    options.token !== undefined
      ? options.token
      : options.tokenFile !== undefined
        ? readOption("--token-file", options.tokenFile)
        : nonEmpty(io.env.BATON_TOKEN);
  if (raw !== undefined) {
    const token = raw.trim();
    if (token === "") throw new InvalidInputError(source, "is empty: give the API token");
    out.token = token;
  }
  return out;
}

/** Where the token comes from, as the user gave it: `--token`, else `--token-file`, else BATON_TOKEN. */
function tokenSource(options: ClusterOptions): string {
  if (options.token !== undefined) return "--token";
  if (options.tokenFile !== undefined) return `--token-file ${options.tokenFile}`;
  return "BATON_TOKEN";
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

function readOption(option: string, file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (error) {
    throw new InvalidInputError(option, `cannot read ${file}: ${(error as Error).message}`);
  }
}

/** The endpoints to use: `--endpoints`, else BATON_ENDPOINTS, else DEFAULT_ENDPOINTS. */
export function endpointsFrom(options: ClusterOptions, io: CliIo): string[] {
  const fromEnv = io.env.BATON_ENDPOINTS;
  const list =
    options.endpoints ?? (fromEnv !== undefined && fromEnv !== "" ? fromEnv : DEFAULT_ENDPOINTS);
  return list
    .split(",")
    .map((e) => e.trim())
    .filter((e) => e !== "");
}

/**
 * A client for the chosen endpoints whose operations give up after `--timeout` ms. Each
 * attempt is capped at `attemptTimeoutMsMax` so that a silent node costs at most that
 * before the next node is tried.
 */
export function clientFrom(
  options: ClusterOptions,
  io: CliIo,
  timeoutMsDefault: number,
  attemptTimeoutMsMax = 1000,
): BatonClient {
  const deadlineMs = options.timeout ?? timeoutMsDefault;
  const credentials = credentialsFrom(options, io);
  try {
    return createClient({
      endpoints: endpointsFrom(options, io),
      ...credentials,
      deadlineMs,
      attemptTimeoutMs: Math.min(attemptTimeoutMsMax, deadlineMs),
    });
  } catch (error) {
    // The client names its own options; the user gave a flag or a variable.
    throw inCommandTerms(error, {
      endpoints: { given: options.endpoints !== undefined ? "--endpoints" : "BATON_ENDPOINTS" },
      token: { given: tokenSource(options) },
    });
  }
}

/**
 * Runs `body` with a client made from `options` and closes it after; an error becomes its
 * message on stderr and its exit code. Returns the exit code.
 */
export async function withClient(
  io: CliIo,
  options: ClusterOptions,
  timeoutMsDefault: number,
  body: (client: BatonClient) => Promise<number>,
  attemptTimeoutMsMax = 1000,
): Promise<number> {
  let client: BatonClient;
  try {
    client = clientFrom(options, io, timeoutMsDefault, attemptTimeoutMsMax);
  } catch (error) {
    return reportError(io, error);
  }
  try {
    return await body(client);
  } catch (error) {
    return reportError(io, error);
  } finally {
    await client.close();
  }
}
