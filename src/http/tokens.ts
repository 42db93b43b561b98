/**
 * Bearer tokens for the HTTP API: their roles, the tokens file that stores their SHA-256
 * hashes (never the tokens), and the store a server checks requests against.
 *
 *   {"tokens":[{"name":"deploy-bot","role":"readwrite","sha256":"<64 hex digits>"}]}
 *
 * A token is a bearer secret: whoever holds one has its role. The file holds only hashes,
 * so reading it does not reveal a token; `baton certs token` makes one, appends its hash
 * and prints the token once. The store never logs or returns a token.
 */

import { createHash, randomBytes } from "node:crypto";

/** What a token may do: `read` < `readwrite` < `admin`, each including the ones before it. */
export type TokenRole = "read" | "readwrite" | "admin";

export const TOKEN_ROLES: readonly TokenRole[] = ["read", "readwrite", "admin"];

/** One line of the tokens file. */
export interface TokenRecord {
  /** Who the token is for; shown in logs and errors instead of the token. */
  readonly name: string;
  readonly role: TokenRole;
  /** The SHA-256 of the token's UTF-8 text, 64 lower-case hex digits. */
  readonly sha256: string;
}

/** Whether `role` includes everything `needed` allows. */
export function roleAllows(role: TokenRole, needed: TokenRole): boolean {
  return TOKEN_ROLES.indexOf(role) >= TOKEN_ROLES.indexOf(needed);
}

/** The hash a tokens file stores for `token`. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** A new random token: "baton_" and 256 bits in base64url. */
export function newToken(): string {
  return `baton_${randomBytes(32).toString("base64url")}`;
}

/** A token's name: 1 to 100 printable ASCII characters, no spaces (logs and files name it). */
export const TOKEN_NAME_PATTERN = /^[\x21-\x7e]{1,100}$/;
const HASH_PATTERN = /^[0-9a-f]{64}$/;

/**
 * Parses the text of a tokens file. Throws one Error listing every problem (with the
 * index of each bad record), so that a typo never silently drops a token.
 */
export function parseTokensFile(text: string): TokenRecord[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`not JSON: ${(error as Error).message}`);
  }
  const list = (parsed as { tokens?: unknown } | null)?.tokens;
  if (!Array.isArray(list)) throw new Error('expected {"tokens": [{"name","role","sha256"}…]}');
  const problems: string[] = [];
  const names = new Set<string>();
  const records = list.map((item: unknown, i): TokenRecord => {
    const { name, role, sha256 } = (item ?? {}) as Record<string, unknown>;
    if (typeof name !== "string" || !TOKEN_NAME_PATTERN.test(name)) {
      problems.push(`tokens[${i}].name: 1 to 100 printable ASCII characters`);
    } else if (names.has(name)) problems.push(`tokens[${i}].name: "${name}" is listed twice`);
    names.add(String(name));
    if (!TOKEN_ROLES.includes(role as TokenRole)) {
      problems.push(`tokens[${i}].role: one of ${TOKEN_ROLES.join(", ")}`);
    }
    if (typeof sha256 !== "string" || !HASH_PATTERN.test(sha256)) {
      problems.push(`tokens[${i}].sha256: 64 lower-case hex digits (the SHA-256 of the token)`);
    }
    return { name: String(name), role: role as TokenRole, sha256: String(sha256) };
  });
  if (problems.length > 0) throw new Error(problems.join("; "));
  return records;
}

/** The text of a tokens file holding `records`. */
export function formatTokensFile(records: readonly TokenRecord[]): string {
  const lines = records.map((record) => `    ${JSON.stringify(record)}`);
  return `{\n  "tokens": [\n${lines.join(",\n")}\n  ]\n}\n`;
}

/** The tokens a server accepts, by hash; `replace` swaps them all at once (a reload). */
export class TokenStore {
  private byHash = new Map<string, TokenRecord>();

  constructor(records: readonly TokenRecord[]) {
    this.replace(records);
  }

  private readonly listeners = new Set<() => void>();

  /** Accepts exactly `records` from now on, and tells those who asked (see `onReplace`). */
  replace(records: readonly TokenRecord[]): void {
    this.byHash = new Map(records.map((record) => [record.sha256, record]));
    for (const listener of [...this.listeners]) listener();
  }

  /** Calls `listener` after every replace (a SIGHUP reload); returns the way to stop. */
  onReplace(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Whether the token whose SHA-256 is `sha256` is accepted with a role that allows `needed`. */
  allows(sha256: string, needed: TokenRole): boolean {
    const record = this.byHash.get(sha256);
    return record !== undefined && roleAllows(record.role, needed);
  }

  /** The record of `token`, or null when no such token is accepted. */
  find(token: string): TokenRecord | null {
    return this.byHash.get(hashToken(token)) ?? null;
  }

  get size(): number {
    return this.byHash.size;
  }
}
