/**
 * The dashboard's files (HTML, CSS, the browser script), read once when a node starts and
 * served from memory. They are plain static files in `public/`, written for the browser as
 * they are (no bundler, no framework, nothing fetched from the network), so the same
 * folder serves under `tsx` from src/ and, copied by `npm run build`, from dist/.
 */

import { existsSync, readdirSync, readFileSync } from "node:fs";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";

export interface DashboardAsset {
  readonly contentType: string;
  readonly body: Buffer;
}

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".svg": "image/svg+xml",
};

/** The folder the files live in, next to this module in src/ or dist/. */
export function dashboardDir(): string {
  return fileURLToPath(new URL("./public/", import.meta.url));
}

/**
 * Every file of the dashboard by name ("index.html", "dashboard.js", ...), or null when
 * the folder is missing (a build that did not copy it).
 */
export function loadDashboardAssets(dir = dashboardDir()): Map<string, DashboardAsset> | null {
  if (!existsSync(dir)) return null;
  const assets = new Map<string, DashboardAsset>();
  for (const name of readdirSync(dir)) {
    const contentType = CONTENT_TYPES[extname(name)];
    if (contentType === undefined) continue;
    assets.set(name, { contentType, body: readFileSync(join(dir, name)) });
  }
  return assets.has("index.html") ? assets : null;
}
