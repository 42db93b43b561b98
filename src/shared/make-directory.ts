/**
 * Creating a directory and its missing parents, one level at a time. Node's
 * `mkdir(path, { recursive: true })` never returns under a file system that answers ENOENT
 * to every mkdir (`/proc`): it retries the parent forever. Walking down from the nearest
 * existing ancestor with plain mkdir calls ends on the first refusal, with its code.
 */

import { mkdirSync, type Stats, statSync } from "node:fs";
import { readdir, rm } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";

/**
 * Makes `path` a directory, creating missing parents, each with `mode` (less the umask; a
 * data directory is made 0700: it holds every key and value in clear). Throws an Error
 * whose message names the path that could not be made and why (the error's `code` is kept).
 */
export function makeDirectory(path: string, mode = 0o777): void {
  const missing: string[] = [];
  let at = resolve(path);
  for (;;) {
    const kind = statOf(at);
    if (kind !== undefined) {
      if (!kind.isDirectory()) throw refusal(at, "ENOTDIR", `${at} is a file, not a directory`);
      break;
    }
    missing.push(at);
    const parent = dirname(at);
    if (parent === at) break;
    at = parent;
  }
  for (const dir of missing.reverse()) {
    try {
      mkdirSync(dir, mode);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? "EIO";
      // Made by someone else meanwhile: fine if it is a directory.
      if (code === "EEXIST" && statOf(dir)?.isDirectory()) continue;
      throw refusal(dir, code, `cannot create ${dir}: ${code}`);
    }
  }
}

/**
 * Removes everything in `dir`, keeping the directory itself (a directory found empty that
 * a failed step wrote into: restore's, a start the bootstrap gate refused).
 */
export async function emptyDirectory(dir: string): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[]);
  await Promise.all(names.map((name) => rm(join(dir, name), { recursive: true, force: true })));
}

/**
 * What is at `path`, or undefined when nothing is: no entry, or a parent that is a file
 * (`statSync`'s throwIfNoEntry covers only the first). Other errors are thrown.
 */
export function statOf(path: string): Stats | undefined {
  try {
    return statSync(path, { throwIfNoEntry: false });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOTDIR") return undefined;
    throw error;
  }
}

function refusal(path: string, code: string, message: string): NodeJS.ErrnoException {
  const error: NodeJS.ErrnoException = new Error(message);
  error.code = code;
  error.path = path;
  return error;
}
