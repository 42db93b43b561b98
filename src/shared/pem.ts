import type { X509Certificate } from "node:crypto";

/**
 * Checks of PEM text read from a file (certificates, CA bundles, keys) that the TLS stack
 * does not make: Node.js takes a bundle whose blocks were joined on one line (a file
 * without its final newline followed by another) and silently keeps only the first
 * certificate, so a node told to trust two CAs during a rotation would trust one.
 */

/** Why `text` is not usable PEM, or null when it is. */
export function pemProblem(text: string): string | null {
  if (!text.includes("-----BEGIN ")) return "not a PEM file";
  if (/-----END [A-Z0-9 ]+-----[ \t]*[^\s]/.test(text)) {
    return "two PEM blocks share a line (a file without its final newline was joined to another), so all but the first would be ignored: join PEM files with `awk 1 first.crt second.crt > bundle.crt`";
  }
  return null;
}

/** Each `-----BEGIN …-----` … `-----END …-----` block of `text`, in order. */
export function pemBlocks(text: string): string[] {
  return text.match(/-----BEGIN [A-Z0-9 ]+-----[\s\S]*?-----END [A-Z0-9 ]+-----/g) ?? [];
}

/** When `cert` becomes valid and when it expires, in wall-clock milliseconds. */
export function certificateValidityMs(cert: X509Certificate): { fromMs: number; toMs: number } {
  return { fromMs: Date.parse(cert.validFrom), toMs: Date.parse(cert.validTo) };
}
