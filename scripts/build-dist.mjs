/**
 * Builds what the two published packages hold, from a clean folder each time so that a file
 * removed from src never lingers in a tarball:
 *
 *   dist/              baton-ha, the server, the CLI and the library: tsc's ES modules and
 *                      declarations, the dashboard's static files, and for CommonJS callers
 *                      dist/cjs/index.cjs and dist/cjs/client.cjs (bundles of src/index.ts
 *                      and src/client/index.ts, their dependencies left to node_modules) with
 *                      .d.cts declarations beside every .d.ts.
 *   packages/client/dist/  baton-ha-client, the client alone: one CommonJS bundle with undici
 *                      inside (so the package has no dependency at all), an ES module that
 *                      re-exports it, and the declarations of src/client/index.ts and of what
 *                      they import, as .d.ts and .d.cts.
 *
 * Plain JavaScript on purpose: `prepack` runs it before anything is compiled.
 */

import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const DIST = join(ROOT, "dist");
const CLIENT_DIST = join(ROOT, "packages", "client", "dist");

rmSync(DIST, { recursive: true, force: true });
rmSync(CLIENT_DIST, { recursive: true, force: true });
execFileSync(
  process.execPath,
  [createRequire(import.meta.url).resolve("typescript/bin/tsc"), "-p", "tsconfig.build.json"],
  {
    cwd: ROOT,
    stdio: "inherit",
  },
);
cpSync(join(ROOT, "src/dashboard/public"), join(DIST, "dashboard/public"), { recursive: true });

await buildServerCommonJs();
writeCommonJsDeclarations(listFiles(DIST).filter((f) => f.endsWith(".d.ts")));
await buildClientPackage();

/**
 * dist/cjs/index.cjs: src/index.ts for `require("baton-ha")`. The only `import.meta.url` in
 * what src/index.ts reaches is the dashboard's, which finds its files next to
 * dist/dashboard/assets.js; the bundle gets that file's URL instead (the build fails if
 * another one appears).
 */
async function buildServerCommonJs() {
  const result = await bundleCommonJs("src/index.ts", join(DIST, "cjs/index.cjs"), {
    packages: "external",
    define: { "import.meta.url": "__batonDashboardModuleUrl" },
    banner: {
      js: 'const __batonDashboardModuleUrl = require("node:url").pathToFileURL(require("node:path").join(__dirname, "../dashboard/assets.js")).href;',
    },
  });
  // baton-ha/client for require(): the client alone, its dependency (undici) left outside.
  await bundleCommonJs("src/client/index.ts", join(DIST, "cjs/client.cjs"), {
    packages: "external",
  });
  const users = Object.keys(result.metafile.inputs).filter((input) =>
    readFileSync(join(ROOT, input), "utf8").includes("import.meta.url"),
  );
  if (users.join() !== "src/dashboard/assets.ts") {
    throw new Error(
      `import.meta.url in the CommonJS bundle beyond the dashboard: ${users.join(", ")}`,
    );
  }
}

/** One CommonJS file for Node.js 20 from `entry` (relative to the root) and what it imports. */
function bundleCommonJs(entry, outfile, options = {}) {
  return build({
    entryPoints: [join(ROOT, entry)],
    outfile,
    bundle: true,
    platform: "node",
    target: "node20",
    format: "cjs",
    metafile: true,
    logLevel: "warning",
    ...options,
  });
}

/** packages/client/dist: the client bundle, its ES module face and its declarations. */
async function buildClientPackage() {
  // Everything inside, undici included: the package has no dependency.
  await bundleCommonJs("src/client/index.ts", join(CLIENT_DIST, "index.cjs"));
  // The names to re-export, from the bundle itself (a CommonJS metafile lists none).
  const names = Object.keys(createRequire(import.meta.url)(join(CLIENT_DIST, "index.cjs")));
  writeFileSync(
    join(CLIENT_DIST, "index.js"),
    `// The ES module face of index.cjs: one copy of the client, so instanceof holds either way.\nimport client from "./index.cjs";\n\nexport const { ${names.join(", ")} } = client;\n`,
  );
  const declarations = declarationClosure(join(DIST, "client/index.d.ts"));
  for (const file of declarations) {
    const target = join(CLIENT_DIST, "types", relative(DIST, file));
    mkdirSync(dirname(target), { recursive: true });
    cpSync(file, target);
  }
  writeCommonJsDeclarations(
    declarations.map((file) => join(CLIENT_DIST, "types", relative(DIST, file))),
  );
}

/** `entry` and every declaration file it imports, transitively. */
function declarationClosure(entry) {
  const seen = new Set();
  const pending = [entry];
  while (pending.length > 0) {
    const file = pending.pop();
    if (seen.has(file)) continue;
    seen.add(file);
    for (const specifier of relativeSpecifiers(readFileSync(file, "utf8"))) {
      pending.push(join(dirname(file), specifier.replace(/\.js$/, ".d.ts")));
    }
  }
  return [...seen].sort();
}

function relativeSpecifiers(text) {
  return [...text.matchAll(/(?:from|import\()\s*"(\.{1,2}\/[^"]+)"/g)].map((m) => m[1]);
}

/**
 * A .d.cts beside each .d.ts, its relative imports pointing at .cjs, so that TypeScript
 * types a `require` of the package as CommonJS (a .d.ts in a "type": "module" package is
 * read as an ES module, which a CommonJS file may not require).
 */
function writeCommonJsDeclarations(files) {
  for (const file of files) {
    const text = readFileSync(file, "utf8").replace(
      /((?:from|import\()\s*")(\.{1,2}\/[^"]+)\.js"/g,
      '$1$2.cjs"',
    );
    writeFileSync(
      file.replace(/\.d\.ts$/, ".d.cts"),
      text.replace(/\n\/\/# sourceMappingURL=.*\n?$/, "\n"),
    );
  }
}

function listFiles(dir) {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name));
}
