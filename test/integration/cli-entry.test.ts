/**
 * The `baton` entry script run as a real process, the way `npm run baton` runs it: it must
 * notice it is the program to run (not a module a test imports) and find package.json from
 * its own location. Everything else about the program is tested in-process
 * (src/cli/main.test.ts).
 */

import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

describe("cli entry", () => {
  it("cli entry: `tsx src/cli/main.ts --version` prints package.json's version (exit 0)", async () => {
    const { version } = JSON.parse(readFileSync(`${ROOT}package.json`, "utf8")) as {
      version: string;
    };
    // From another directory, so that only the module's own location can lead to the file.
    const { stdout, stderr } = await promisify(execFile)(
      `${ROOT}node_modules/.bin/tsx`,
      [`${ROOT}src/cli/main.ts`, "--version"],
      { cwd: "/", timeout: 30_000 },
    );
    expect({ stdout, stderr }).toEqual({ stdout: `${version}\n`, stderr: "" });
  });
});
