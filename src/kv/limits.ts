/**
 * The bounds of the key-value state machine: sizes of keys and values, the capacity and
 * lifetime of the client-session and idempotency tables (the exactly-once window), how
 * fast log time may advance, and the size of snapshot chunks.
 *
 * Every limit that changes what `apply` does (all but `snapshotChunkBytesMax` and the
 * `watchHistory` bounds) is part of
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
   * Most client sessions kept. A session is never forgotten before it expires: while the
   * table holds this many live sessions, a request that would open a new session is
   * refused with `table_full` (and applied nowhere) instead.
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
   * Most idempotency keys kept. A key is never forgotten before its window ends: while the
   * table holds this many live keys, a write with a new key is refused with `table_full`
   * (HTTP 503 `ERR_TABLE_FULL`, applied nowhere) and a retry of a key in the table is still
   * answered from it. The table sustains `idempotencyKeyCountMax / idempotencyWindowMs`
   * keyed writes per millisecond (1,666 a second with the defaults); each key costs about
   * 200 bytes of memory and 80 of snapshot.
   * @default 1_000_000
   */
  readonly idempotencyKeyCountMax: number;
  /**
   * The exactly-once window: milliseconds of log time after its first use during which an
   * idempotency key is kept, so that a retry with the key is answered with the first
   * result instead of being applied again. After the window the key is forgotten and a
   * request that repeats it is treated as new. It must be longer than a client retries one
   * request (the client library's deadline, 10 s by default) plus a fail-over, with room
   * to spare for clients with longer deadlines and for log time running slow (see
   * `logTimeStepMsMax`).
   * @default 600_000 (10 minutes)
   */
  readonly idempotencyWindowMs: number;
  /**
   * Most milliseconds log time advances from one command to the next. Log time advances
   * by the difference between consecutive master timestamps, never backwards and never by
   * more than this, so that a master's clock jumping (forwards by an hour, say) ages the
   * tables by at most this much; when commands are further apart than this, log time runs
   * slower than the clock and entries are kept longer than their window, never shorter. A
   * refused request is told to retry within this long, so waiting clients keep log time
   * moving.
   * @default 1_000
   */
  readonly logTimeStepMsMax: number;
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
  /**
   * Most comparisons, and most operations in each branch, of one transaction.
   * @default 128
   */
  readonly txnOpCountMax: number;
  /**
   * Most leases held at once; a grant beyond it is refused with `table_full` (503
   * ERR_TABLE_FULL) until a lease ends.
   * @default 100_000
   */
  readonly leaseCountMax: number;
  /**
   * Shortest lease time to live, in milliseconds of log time. Below a few seconds a lease
   * would expire during an ordinary fail-over pause.
   * @default 1_000
   */
  readonly leaseTtlMsMin: number;
  /**
   * Longest lease time to live, in milliseconds of log time.
   * @default 604_800_000 (7 days)
   */
  readonly leaseTtlMsMax: number;
  /**
   * Most leases ended by expiry in one `apply` (each deletes its keys); the rest end in
   * the following applies, so one command never pays for a large batch.
   * @default 64
   */
  readonly leaseExpiryCountMaxPerApply: number;
  /**
   * Most changes the watch history keeps in memory on each node: a watch may start from
   * any revision whose changes are all still held, and an older one is answered 410
   * ERR_COMPACTED. Local to the node (not replicated), like `snapshotChunkBytesMax`.
   * @default 100_000
   */
  readonly watchHistoryCountMax: number;
  /**
   * Most bytes of keys and values the watch history keeps; the oldest revisions are
   * dropped first. Local to the node.
   * @default 67_108_864 (64 MiB)
   */
  readonly watchHistoryBytesMax: number;
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
    idempotencyKeyCountMax: 1_000_000,
    idempotencyWindowMs: 600_000,
    logTimeStepMsMax: 1_000,
    expiryCountMaxPerApply: 64,
    snapshotChunkBytesMax: 1_048_576,
    txnOpCountMax: 128,
    leaseCountMax: 100_000,
    leaseTtlMsMin: 1_000,
    leaseTtlMsMax: 604_800_000,
    leaseExpiryCountMaxPerApply: 64,
    watchHistoryCountMax: 100_000,
    watchHistoryBytesMax: 67_108_864,
  });
}

export type ParseKvLimitsResult =
  | { readonly ok: true; readonly limits: KvLimits }
  | { readonly ok: false; readonly errors: readonly string[] };

/**
 * Overlays `input` on the defaults and checks every field, reporting all bad fields at
 * once. Every limit must be a positive safe integer, and a log-time step must be shorter
 * than the windows it bounds; unknown fields are reported too, so that a misspelt option
 * is not silently ignored.
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
  if (errors.length === 0) {
    const { logTimeStepMsMax, idempotencyWindowMs, sessionTtlMs } = merged as unknown as KvLimits;
    if (logTimeStepMsMax >= Math.min(idempotencyWindowMs, sessionTtlMs)) {
      errors.push(
        `logTimeStepMsMax: must be shorter than idempotencyWindowMs and sessionTtlMs, got ${logTimeStepMsMax}`,
      );
    }
    const { leaseTtlMsMin, leaseTtlMsMax } = merged as unknown as KvLimits;
    if (leaseTtlMsMin > leaseTtlMsMax) {
      errors.push(`leaseTtlMsMin: must not exceed leaseTtlMsMax, got ${leaseTtlMsMin}`);
    }
  }
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, limits: Object.freeze(merged as unknown as KvLimits) };
}

/** True when every field of `limits` is a positive safe integer. */
export function isValidKvLimits(limits: KvLimits): boolean {
  return Object.values(limits).every((value) => Number.isSafeInteger(value) && value > 0);
}
