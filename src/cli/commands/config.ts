/**
 * `baton config check FILE`: reads a config file the way `baton start --config FILE` would
 * (the BATON_* variables of this shell included), and prints the configuration the node
 * would run with, every default filled in, as a config file. Any problem `baton start`
 * would refuse to start on (a bad or unknown key, a missing setting, an address exposed
 * without TLS, a certificate or tokens file it cannot read) is printed instead, and the exit
 * code is 1. It starts nothing and writes nothing.
 */

import type { Command } from "commander";
import { readHttpTls } from "../../app/kv-node.js";
import { readPeerTls } from "../../server/create-node.js";
import { insecureExposure } from "../../server/node-config.js";
import { rethrowIfBug } from "../../shared/assert.js";
import { type CliIo, processIo } from "./cli-io.js";
import { ExitCode } from "./exit-code.js";
import { effectiveSettings, loadStartConfig, peerPortNote, unusablePaths } from "./start-config.js";

/** Adds `config check` to `program`; it sets `io.exitCode`. */
export function register(program: Command, io: CliIo = processIo()): void {
  const config = program
    .command("config")
    .description("check a node's configuration before starting it");
  config
    .command("check")
    .description(
      "print the configuration `baton start --config FILE` would run with, or every problem (exit 1)",
    )
    .argument("<file>", "the JSON config file")
    .addHelpText(
      "after",
      `
BATON_* variables set in this shell are applied over the file, as baton start would.

Example:
  baton config check /etc/baton/baton.json`,
    )
    .action((file: string) => {
      io.exitCode = check(file, io);
    });
}

function check(file: string, io: CliIo): number {
  const loaded = loadStartConfig({ flags: {}, env: io.env, configFile: file });
  const problems = loaded.ok ? unusablePaths(loaded.config, loaded.origins) : [...loaded.problems];
  if (loaded.ok && problems.length === 0) {
    // What start and a reload read: PEM that parses, a certificate the peers accept, and
    // an HTTPS certificate clients accept (names the host they reach, not expired).
    for (const read of [readPeerTls, readHttpTls]) {
      try {
        read(loaded.config);
      } catch (error) {
        rethrowIfBug(error);
        problems.push((error as Error).message);
      }
    }
  }
  if (loaded.ok) {
    const exposure = insecureExposure(loaded.config);
    if (exposure !== null) problems.push(exposure.replace(/\n/g, "\n    "));
  }
  if (!loaded.ok || problems.length > 0) {
    io.stderr.write(`baton config check: ${file}: ${problems.length} problem(s):\n`);
    io.stderr.write(`  - ${problems.join("\n  - ")}\n`);
    return ExitCode.failed;
  }
  const note = peerPortNote(loaded.config);
  if (note !== null) io.stderr.write(`baton config check: note: ${note}\n`);
  const fromEnv = [...loaded.origins].filter(([, origin]) => origin.kind === "env");
  if (fromEnv.length > 0) {
    const names = fromEnv.map(([name]) => name).join(", ");
    io.stderr.write(`baton config check: from the environment: ${names}\n`);
  }
  io.stdout.write(
    `${JSON.stringify(effectiveSettings(loaded.config, loaded.settings), null, 2)}\n`,
  );
  return ExitCode.ok;
}
