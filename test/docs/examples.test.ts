/**
 * The TypeScript examples of README.md, docs/client.md and docs/embedding.md type-check
 * against the library as it is: an example that no longer compiles (a renamed option, a
 * changed type) fails here instead of in a reader's editor. Examples that are fragments
 * (they use a client or a node made in an earlier example) say what they assume in an
 * HTML comment right above the block, which the rendered page does not show:
 *
 *   <!-- ts-check: import type { BatonClient } from "baton-ha/client"; declare const baton: BatonClient; -->
 *
 * Package names resolve to the sources (`baton-ha`, `baton-ha/client`, `baton-ha-client`,
 * `baton-ha/session-store`), so nothing needs to be built first.
 */

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "..", "..");
const DOCS = ["README.md", "docs/client.md", "docs/embedding.md"];

interface Example {
  readonly doc: string;
  /** The line of the block's first line of code in the doc. */
  readonly line: number;
  readonly preamble: string;
  readonly code: string;
}

function examples(): Example[] {
  const found: Example[] = [];
  for (const doc of DOCS) {
    const text = readFileSync(join(ROOT, doc), "utf8");
    // A preamble is a comment of its own lines, ending right above the fence.
    const block = /(?:^<!-- ts-check:((?:(?!-->)[\s\S])*)-->\n)?^```ts\n([\s\S]*?)^```/gm;
    for (const match of text.matchAll(block)) {
      const fence = match.index + match[0].indexOf("```ts");
      const line = text.slice(0, fence).split("\n").length + 1;
      found.push({ doc, line, preamble: (match[1] ?? "").trim(), code: match[2]! });
    }
  }
  return found;
}

describe("docs", () => {
  it("docs: every TypeScript example type-checks against the library", () => {
    const all = examples();
    expect(all.length).toBeGreaterThanOrEqual(13);
    const dir = mkdtempSync(join(ROOT, ".docs-examples-"));
    try {
      const files = all.map((example, i) => {
        const file = join(dir, `example-${i}.ts`);
        // The preamble shares the first line, so the code's lines map back one to one.
        writeFileSync(file, `export {}; ${example.preamble.replace(/\n/g, " ")}\n${example.code}`);
        return { file, example };
      });
      writeFileSync(
        join(dir, "tsconfig.json"),
        JSON.stringify({
          extends: "../tsconfig.json",
          compilerOptions: {
            noEmit: true,
            rootDir: "..",
            baseUrl: "..",
            paths: {
              "baton-ha": ["src/index.ts"],
              "baton-ha/client": ["src/client/index.ts"],
              "baton-ha-client": ["src/client/index.ts"],
              "baton-ha/session-store": ["src/client/session-store.ts"],
            },
          },
          include: ["*.ts"],
        }),
      );
      const config = ts.getParsedCommandLineOfConfigFile(
        join(dir, "tsconfig.json"),
        {},
        { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} },
      );
      expect(config?.errors ?? []).toEqual([]);
      const program = ts.createProgram(
        files.map((f) => f.file),
        config!.options,
      );
      const problems = ts
        .getPreEmitDiagnostics(program)
        .filter((d) => d.file !== undefined && d.file.fileName.startsWith(dir))
        .map((d) => {
          const { example } = files.find((f) => f.file === d.file!.fileName)!;
          const at = d.file!.getLineAndCharacterOfPosition(d.start ?? 0).line;
          const message = ts.flattenDiagnosticMessageText(d.messageText, "\n");
          return `${example.doc}:${example.line + at - 1}: ${message}`;
        });
      expect(problems, `from ${relative(ROOT, dir)}`).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
