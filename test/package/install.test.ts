/**
 * The published packages, as a user gets them. `npm pack` of baton-ha holds only the
 * product (no simulator, harness, test double, test file or source map); installed into an
 * empty project it runs `npx baton --version` and a short fault campaign, and the server and
 * its client import with their types from ES modules and from CommonJS. baton-ha-client,
 * installed alone, stays under 2 MB with no dependency and imports the same two ways. It
 * needs the npm registry for the server's dependencies.
 */

import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, posix, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = resolve(import.meta.dirname, "..", "..");
const TSC = join(ROOT, "node_modules", "typescript", "bin", "tsc");
const work = mkdtempSync(join(tmpdir(), "baton-pack-"));
const version = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version as string;

afterAll(() => rmSync(work, { recursive: true, force: true }));

const execFileAsync = promisify(execFile);

/**
 * Runs `command` and returns its stdout; throws with its stderr when it fails. Asynchronous
 * on purpose: a synchronous child blocks the test worker, whose runner then times out.
 */
async function run(command: string, args: string[], cwd: string): Promise<string> {
  const { stdout } = await execFileAsync(command, args, { cwd, maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

/** Runs `command` and returns its exit code and stderr, whatever the code. */
async function runStatus(command: string, args: string[], cwd: string) {
  try {
    await execFileAsync(command, args, { cwd });
    return { status: 0, stderr: "" };
  } catch (error) {
    const failed = error as { code?: number; stderr?: string };
    return { status: failed.code ?? -1, stderr: failed.stderr ?? "" };
  }
}

interface Packed {
  filename: string;
  files: { path: string }[];
}

/** Packs the package in `dir` into the work folder; `build` false skips its prepack. */
async function pack(dir: string, build: boolean): Promise<Packed> {
  const args = [
    "pack",
    "--json",
    "--pack-destination",
    work,
    ...(build ? [] : ["--ignore-scripts"]),
  ];
  return (JSON.parse(await run("npm", args, dir)) as Packed[])[0]!;
}

/** An empty ES module project with `tarball` installed. */
async function projectWith(name: string, tarball: string): Promise<string> {
  const project = join(work, name);
  mkdirSync(project);
  writeFileSync(join(project, "package.json"), `{"name":"${name}","private":true,"type":"module"}`);
  await run("npm", ["install", "--no-audit", "--no-fund", join(work, tarball)], project);
  return project;
}

/**
 * Type-checks and runs `esm` (as check.mts) and `cjs` (as check.cts) in `project`, as a
 * TypeScript user with Node's types would, and returns what each printed.
 */
async function importBothWays(
  project: string,
  esm: string,
  cjs: string,
): Promise<[string, string]> {
  writeFileSync(join(project, "check.mts"), esm);
  writeFileSync(join(project, "check.cts"), cjs);
  const tsconfig = {
    compilerOptions: {
      module: "nodenext",
      moduleResolution: "nodenext",
      target: "es2022",
      strict: true,
      outDir: "out",
      typeRoots: [join(ROOT, "node_modules", "@types")],
      types: ["node"],
    },
    files: ["check.mts", "check.cts"],
  };
  writeFileSync(join(project, "tsconfig.json"), JSON.stringify(tsconfig));
  await run("node", [TSC, "-p", "."], project);
  return [
    await run("node", ["out/check.mjs"], project),
    await run("node", ["out/check.cjs"], project),
  ];
}

/** Bytes under `dir`, as a user's disk counts them (file sizes, no block rounding). */
function bytesUnder(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) total += readFileSync(join(entry.parentPath, entry.name)).length;
  }
  return total;
}

/**
 * The relative links of the packed Markdown files (README, docs) that reach no packed file:
 * the README a user reads in node_modules/baton-ha links the docs, which must be there.
 */
function brokenLinks(files: readonly string[]): string[] {
  const packed = new Set(files);
  const broken: string[] = [];
  for (const file of files.filter((f) => f.endsWith(".md"))) {
    const text = readFileSync(join(ROOT, file), "utf8");
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^([a-z]+:|#)/.test(target!)) continue;
      const path = posix.normalize(posix.join(posix.dirname(file), target!.split("#")[0]!));
      const found =
        packed.has(path) || files.some((f) => f.startsWith(`${path.replace(/\/$/, "")}/`));
      if (!found) broken.push(`${file}: ${target}`);
    }
  }
  return broken;
}

describe("package", () => {
  it("package: baton-ha holds only the product, installs, runs baton and chaos, imports as ESM and CJS", async () => {
    const packed = await pack(ROOT, true);
    const files = packed.files.map((f) => f.path);
    expect(files).toEqual(
      // The systemd unit too: docs/operations.md installs it from the installed package.
      expect.arrayContaining([
        "LICENSE",
        "dist/cli/main.js",
        "dist/cjs/index.cjs",
        "deploy/systemd/baton.service",
      ]),
    );
    expect(files).toContain("dist/chaos/main.js");
    expect(
      brokenLinks(files),
      "every link of a packed Markdown file reaches a packed file",
    ).toEqual([]);
    const notProduct = files.filter(
      (f) =>
        /(^|\/)(harness|test|scripts)\/|^bench\/|\.test\.|fake-|capture-io|\.map$/.test(f) ||
        (f.startsWith("dist/sim/") && !f.startsWith("dist/sim/checkers/linearizability.")),
    );
    expect(notProduct, "no simulator, harness, test double, test or map").toEqual([]);

    const project = await projectWith("app", packed.filename);
    expect((await run("npx", ["baton", "--version"], project)).trim()).toBe(version);
    const sim = await runStatus("npx", ["baton", "sim", "--seed", "7"], project);
    expect(sim.status).toBe(2);
    expect(sim.stderr).toContain("npm run sim");
    // The shortest campaign (room for one fault): its nodes are the installed CLI's own
    // `baton start`.
    const campaign = await run(
      join(project, "node_modules", ".bin", "baton"),
      ["chaos", "--duration", "12", "--nemesis", "kill-master", "--out", join(work, "chaos")],
      project,
    );
    expect(campaign).toContain("ok   linearizable");
    expect(campaign).toMatch(/ok {3}faults: ran: kill-master [1-9]/);

    const [esm, cjs] = await importBothWays(
      project,
      `import { createNode, KvNode, type NodeConfig } from "baton-ha";
import { createClient, type BatonClient } from "baton-ha/client";
const client: BatonClient = createClient({ endpoints: ["http://127.0.0.1:1"] });
const id: NodeConfig["id"] = 1;
console.log(typeof createNode, typeof KvNode, id);
await client.close();`,
      `import { createNode, KvNode, type NodeConfig } from "baton-ha";
import { createClient } from "baton-ha/client";
import { createSessionStore } from "baton-ha/session-store";
const id: NodeConfig["id"] = 1;
void createClient({ endpoints: ["http://127.0.0.1:1"] }).close();
console.log(typeof createNode, typeof KvNode, id, typeof createSessionStore);`,
    );
    expect(esm.trim()).toBe("function function 1");
    // An express application written in CommonJS gets the session store too.
    expect(cjs.trim()).toBe("function function 1 function");
  }, 300_000);

  it("package: baton-ha-client installs alone under 2 MB with no dependency, imports as ESM and CJS", async () => {
    // The server's pack above (or an earlier build) made packages/client/dist.
    const packed = await pack(join(ROOT, "packages", "client"), false);
    expect(packed.files.map((f) => f.path)).toContain("dist/index.cjs");
    const project = await projectWith("web", packed.filename);
    const installed = readdirSync(join(project, "node_modules")).filter((n) => !n.startsWith("."));
    expect(installed, "the client's only package is itself").toEqual(["baton-ha-client"]);
    expect(bytesUnder(join(project, "node_modules"))).toBeLessThan(2_000_000);

    const [esm, cjs] = await importBothWays(
      project,
      `import { createClient, NoMasterError, type BatonClient } from "baton-ha-client";
const client: BatonClient = createClient({ endpoints: ["http://127.0.0.1:1"], deadlineMs: 300 });
console.log(typeof NoMasterError, (await client.members().catch((e: Error) => e.name)));
await client.close();`,
      `import { createClient, InvalidInputError } from "baton-ha-client";
import { createSessionStore } from "baton-ha-client/session-store";
try { createClient({ endpoints: [] }); } catch (e) { console.log(e instanceof InvalidInputError); }
// The store's errors are the client's own classes, not copies.
try { createSessionStore(class {} as never, null as never); } catch (e) { console.log(e instanceof InvalidInputError); }`,
    );
    expect(esm.trim()).toMatch(/^function \w+Error$/);
    expect(cjs.trim()).toBe("true\ntrue");
  }, 120_000);
});
