/**
 * The published package, as a user gets it: `npm pack` holds only the product (no
 * harness, test double or test file), and the tarball installed into an empty project
 * runs `baton --version`, the simulator and a short fault campaign, and imports the
 * server and the client. It needs the npm registry for the dependencies.
 */

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "..", "..");
const work = mkdtempSync(join(tmpdir(), "baton-pack-"));

afterAll(() => rmSync(work, { recursive: true, force: true }));

function run(command: string, args: string[], cwd: string): string {
  return execFileSync(command, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

describe("package", () => {
  it("package: the tarball holds only the product, installs, and runs baton, sim and chaos", () => {
    const packed = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", work], ROOT)) as {
      filename: string;
      files: { path: string }[];
    }[];
    const files = packed[0]!.files.map((f) => f.path);
    expect(files).toContain("dist/cli/main.js");
    expect(files).toContain("dist/chaos/main.js");
    const harness = files.filter((f) =>
      /(^|\/)(harness|test|bench|scripts)\/|\.test\.|fake-|capture-io/.test(f),
    );
    expect(harness, "no harness, test double or test file in the tarball").toEqual([]);

    const project = join(work, "app");
    run("mkdir", ["-p", project], work);
    writeFileSync(join(project, "package.json"), '{"name":"app","private":true,"type":"module"}');
    run("npm", ["install", "--no-audit", "--no-fund", join(work, packed[0]!.filename)], project);
    const baton = join(project, "node_modules", ".bin", "baton");
    const version = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version;
    expect(run(baton, ["--version"], project).trim()).toBe(version);
    expect(run(baton, ["sim", "--seed", "7"], project)).toContain("verdict: safe");
    expect(run(baton, ["chaos", "--help"], project)).toContain("fault campaign");
    // A short campaign: its nodes are the installed CLI's own `baton start`.
    const campaign = run(
      baton,
      ["chaos", "--duration", "5", "--nemesis", "kill-master", "--out", join(work, "chaos")],
      project,
    );
    expect(campaign).toContain("ok   linearizable");
    const imports = `
      import { createNode, KvNode } from "baton";
      import { createClient } from "baton/client";
      console.log(typeof createNode, typeof KvNode, typeof createClient);`;
    writeFileSync(join(project, "check.mjs"), imports);
    expect(run("node", ["check.mjs"], project).trim()).toBe("function function function");
  }, 300_000);
});
