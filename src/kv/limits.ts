/**
 * The bounds of the key-value state machine: sizes of keys and values, the capacity and
 * lifetime of the client-session and idempotency tables, and the size of snapshot chunks.
 *
 * Every limit that changes what `apply` does (all but `snapshotChunkBytesMax`) is part of
 * the replicated behaviour: every node of a cluster must run with the same values, or the
 * replicas diverge. This file never reads configuration from anywhere; the runtime parses
 * it once with `parseKvLimits` and hands the frozen result to the state machine.
 */

export interface KvLimits {
  /**
   * Largest key, in bytes of its UTF-8 encoding. Keys must also be non-empty.
   * @default 1024
   */
  readonly keyBytesMax: number;
  /**
   * Largest value, in bytes.
   * @default 1_048_576 (1 MiB)
   */
  readonly valueBytesMax: number;
  /**
   * Largest client id of a session, in bytes of its UTF-8 encoding.
   * @default 128
   */
  readonly clientIdBytesMax: number;
  /**
   * Largest idempotency key, in bytes of its UTF-8 encoding (Stripe allows 255 characters).
   * @default 255
   */
  readonly idempotencyKeyBytesMax: number;
  /**
   * Most client sessions kept; when a new session would exceed it, the session used least
   * recently (by log time) is evicted.
   * @default 100_000
   */
  readonly sessionCountMax: number;
  /**
   * Milliseconds of log time after its last request that a client session expires. It
   * must be far longer than any client keeps retrying one request, because a retry that
   * arrives after its session expired cannot be deduplicated and is refused instead.
   * @default 3_600_000 (1 hour)
   */
  readonly sessionTtlMs: number;
  /**
   * Most idempotency keys kept; when a new key would exceed it, the oldest is evicted.
   * @default 100_000
   */
  readonly idempotencyKeyCountMax: number;
  /**
   * Milliseconds of log time after its first use that an idempotency key expires; a
   * request that repeats the key later is treated as new (Stripe uses 24 hours).
   * @default 86_400_000 (24 hours)
   */
  readonly idempotencyTtlMs: number;
  /**
   * Most expired table entries removed by one `apply`. Expiry is spread over many applies
   * so that one command never pays for a large batch of expiries; an entry that has
   * expired but is not removed yet is treated as absent.
   * @default 64
   */
  readonly expiryCountMaxPerApply: number;
  /**
   * Largest chunk a snapshot stream yields, in bytes. Only this limit may differ between
   * nodes: `restore` accepts chunks of any size and split at any byte.
   * @default 1_048_576 (1 MiB)
   */
  readonly snapshotChunkBytesMax: number;
}

/** The default limits, frozen. */
export function defaultKvLimits(): KvLimits {
  return Object.freeze({
    keyBytesMax: 1024,
    valueBytesMax: 1_048_576,
    clientIdBytesMax: 128,
    idempotencyKeyBytesMax: 255,
    sessionCountMax: 100_000,
    sessionTtlMs: 3_600_000,
    idempotencyKeyCountMax: 100_000,
    idempotencyTtlMs: 86_400_000,
    expiryCountMaxPerApply: 64,
    snapshotChunkBytesMax: 1_048_576,
  });
}

export type ParseKvLimitsResult =
  | { readonly ok: true; readonly limits: KvLimits }
  | { readonly ok: false; readonly errors: readonly string[] };

/**
 * Overlays `input` on the defaults and checks every field, reporting all bad fields at
 * once. Every limit must be a positive safe integer; unknown fields are reported too, so
 * that a misspelt option is not silently ignored.
 */
export function parseKvLimits(input: Readonly<Record<string, unknown>> = {}): ParseKvLimitsResult {
  const defaults = defaultKvLimits();
  const merged: Record<string, unknown> = { ...defaults };
  const errors: string[] = [];
  for (const [field, value] of Object.entries(input)) {
    if (!Object.hasOwn(defaults, field)) {
      errors.push(`${field}: unknown limit`);
      continue;
    }
    if (value === undefined) continue;
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) {
      errors.push(`${field}: must be a positive integer, got ${String(value)}`);
      continue;
    }
    merged[field] = value;
  }
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, limits: Object.freeze(merged as unknown as KvLimits) };
}

/** True when every field of `limits` is a positive safe integer. */
export function isValidKvLimits(limits: KvLimits): boolean {
  return Object.values(limits).every((value) => Number.isSafeInteger(value) && value > 0);
}
