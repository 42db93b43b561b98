/**
 * Builds what the two published packages hold, from a clean folder each time so that a file
 * removed from src never lingers in a tarball:
 *
 *   dist/              baton-ha, the server, the CLI and the library: tsc's ES modules and
 *                      declarations, the dashboard's static files, and for CommonJS callers
 *                      dist/cjs/index.cjs, dist/cjs/client.cjs and dist/cjs/session-store.cjs
 *                      (bundles of src/index.ts, src/client/index.ts and the express-session
 *                      store, their dependencies left to node_modules) with .d.cts
 *                      declarations beside every .d.ts.
 *   packages/client/dist/  baton-ha-client, the client alone: one CommonJS bundle with undici
 *                      inside (so the package has no dependency at all), the session store
 *                      beside it, an ES module face of each, and the declarations of both
 *                      and of what they import, as .d.ts and .d.cts.
 *
 * The session store's CommonJS bundle takes the error classes it tests with `instanceof`
 * from the client's bundle next to it, not from a copy of its own: a lease the client
 * reports gone must be the LeaseNotFoundError the store looks for.
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
  await bundleSessionStore(join(DIST, "cjs/session-store.cjs"), "./client.cjs", {
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

/**
 * The express-session store as CommonJS at `outfile`, its error classes (and the lock's
 * timing constant) required from the client bundle `clientBundle` (a path relative to it)
 * rather than bundled again.
 */
async function bundleSessionStore(outfile, clientBundle, options = {}) {
  const result = await bundleCommonJs("src/client/session-store.ts", outfile, {
    ...options,
    plugins: [
      {
        name: "errors-from-the-client-bundle",
        setup(esbuild) {
          // Its imports of the error classes and of the lock's constant: both in the client.
          esbuild.onResolve({ filter: /^(\.\.\/shared\/errors|\.\/lock)\.js$/ }, () => ({
            path: clientBundle,
            external: true,
          }));
        },
      },
    ],
  });
  const copied = Object.keys(result.metafile.inputs).filter((f) =>
    /errors\.ts$|lock\.ts$|client\.ts$/.test(f),
  );
  if (copied.length > 0) throw new Error(`the session store bundled ${copied.join(", ")}`);
}

/** An ES module that re-exports the CommonJS bundle `file`: one copy either way. */
function writeEsmFace(file, face) {
  // The names to re-export, from the bundle itself (a CommonJS metafile lists none).
  const names = Object.keys(createRequire(import.meta.url)(join(CLIENT_DIST, file)));
  writeFileSync(
    join(CLIENT_DIST, face),
    `// The ES module face of ${file}: one copy of the code, so instanceof holds either way.\nimport bundle from "./${file}";\n\nexport const { ${names.join(", ")} } = bundle;\n`,
  );
}

/** packages/client/dist: the client and session store bundles, their ES module faces and declarations. */
async function buildClientPackage() {
  // Everything inside, undici included: the package has no dependency.
  await bundleCommonJs("src/client/index.ts", join(CLIENT_DIST, "index.cjs"));
  await bundleSessionStore(join(CLIENT_DIST, "session-store.cjs"), "./index.cjs");
  writeEsmFace("index.cjs", "index.js");
  writeEsmFace("session-store.cjs", "session-store.js");
  const declarations = [
    ...new Set([
      ...declarationClosure(join(DIST, "client/index.d.ts")),
      ...declarationClosure(join(DIST, "client/session-store.d.ts")),
    ]),
  ].sort();
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
