/**
 * The client's retry loop: how long to wait between attempts, when to try the next node at
 * once, and when to give up. It owns the policy (deadline, attempt timeout, jittered
 * exponential back-off, the cap on a server's Retry-After, the attempt bound) and nothing
 * about HTTP: an attempt is a function that succeeds or describes its failure. Giving up
 * is a value, not a throw, so the caller can turn it into the right catalogued error.
 *
 * It must never loop without bound: every wait is capped, the operation has a deadline,
 * and the number of attempts has a hard limit even when every attempt fails at once.
 */

/** The bounds of one operation's retries. Every field is in milliseconds except counts. */
export interface RetryPolicy {
  /** Time from the start of an operation after which it gives up. @default 10000 */
  readonly deadlineMs: number;
  /** Longest one attempt may take (shortened to what is left of the deadline). @default 1000 */
  readonly attemptTimeoutMs: number;
  /** Shortest back-off between rounds of attempts. @default 20 */
  readonly retryDelayMsMin: number;
  /** Longest back-off between rounds of attempts. @default 1000 */
  readonly retryDelayMsMax: number;
  /** Longest wait a server's Retry-After can impose. @default 1000 */
  readonly retryAfterMsMax: number;
  /** Most attempts one operation makes, whatever the deadline. @default 1000 */
  readonly attemptCountMax: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = Object.freeze({
  deadlineMs: 10_000,
  attemptTimeoutMs: 1000,
  retryDelayMsMin: 20,
  retryDelayMsMax: 1000,
  retryAfterMsMax: 1000,
  attemptCountMax: 1000,
});

/**
 * The least time worth giving an attempt, in ms. An attempt with less cannot complete even
 * on loopback; starting it would only add a failure that says nothing about the cluster
 * and leaves a write in doubt.
 */
export const ATTEMPT_MS_MIN = 10;

/** Time and randomness, injected so that tests can drive the loop without real sleeps. */
export interface RetryClock {
  /** A monotonic time in milliseconds. */
  now(): number;
  /** Resolves after `ms`, or early (never rejecting) when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** A number in [0, 1). */
  random(): number;
}

export const systemClock: RetryClock = {
  now: () => performance.now(),
  sleep: (ms, signal) =>
    new Promise((resolve) => {
      if (signal?.aborted === true) return resolve();
      const onAbort = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      signal?.addEventListener("abort", onAbort, { once: true });
    }),
  random: () => Math.random(),
};

/**
 * How an attempt failed. `refused`: no connection was made, so the request never arrived.
 * `lost`: the connection broke or the attempt timed out after the request may have
 * arrived. `unavailable`: a node answered that it cannot serve now (503 and other 5xx).
 */
export type FailureKind = "refused" | "lost" | "unavailable";

export interface AttemptFailure {
  readonly kind: FailureKind;
  readonly endpoint: string;
  /** One line, without the endpoint (the loop's caller adds it). */
  readonly message: string;
  /** The error code the node answered with, if it answered one. */
  readonly code?: string;
  /** With code ERR_TABLE_FULL: the table the node named, for the error thrown on giving up. */
  readonly table?: "sessions" | "idempotency" | "leases";
  /** The wait the server asked for (Retry-After), in milliseconds, else null. */
  readonly retryAfterMs: number | null;
  /**
   * Whether another node may do better right away: true when this node is down or going
   * down, false when the answer speaks for the whole cluster (no master yet).
   */
  readonly tryNextAtOnce: boolean;
  /** Whether a write sent by this attempt may have been applied even though it failed. */
  readonly mayHaveApplied: boolean;
  /**
   * Whether the attempt ran out of time only because the deadline left it less than a full
   * attempt timeout; such a failure says little about the cluster.
   */
  readonly cutByDeadline: boolean;
}

export type AttemptResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly failure: AttemptFailure };

export type RetryOutcome<T> =
  | { readonly ok: true; readonly value: T }
  | {
      readonly ok: false;
      /** Why the loop stopped: the deadline, the attempt bound, or `signal` aborted. */
      readonly reason: "deadline" | "attempts" | "closed";
      /** Every failure, oldest first (at most `attemptCountMax`). */
      readonly failures: readonly AttemptFailure[];
      readonly elapsedMs: number;
    };

export interface AttemptContext {
  /** Zero-based number of this attempt within the operation. */
  readonly attemptIndex: number;
  /** The time this attempt may take: the attempt timeout or what is left of the deadline. */
  readonly timeoutMs: number;
}

export interface RetryOptions {
  /** How many distinct nodes there are to try before a round counts as failed. */
  readonly endpointCount: number;
  readonly clock?: RetryClock;
  /** Aborting stops the loop before its next attempt (a closing client). */
  readonly signal?: AbortSignal;
}

/**
 * Runs `attempt` until it succeeds, the deadline passes, the attempt bound is reached or
 * `signal` aborts. A failure that says only its node is down (`tryNextAtOnce`) moves to the
 * next node at once, until every node has failed in a row; then the loop waits a jittered
 * exponential back-off, or the server's Retry-After (capped) when that is longer. An
 * exception thrown by `attempt` is a permanent error and propagates unchanged.
 */
export async function retry<T>(
  attempt: (context: AttemptContext) => Promise<AttemptResult<T>>,
  policy: RetryPolicy,
  options: RetryOptions,
): Promise<RetryOutcome<T>> {
  const clock = options.clock ?? systemClock;
  const start = clock.now();
  const failures: AttemptFailure[] = [];
  const giveUp = (reason: "deadline" | "attempts" | "closed"): RetryOutcome<T> => ({
    ok: false,
    reason,
    failures,
    elapsedMs: clock.now() - start,
  });
  let failedInRow = 0;
  let waitCount = 0;
  for (let attemptIndex = 0; attemptIndex < policy.attemptCountMax; attemptIndex++) {
    if (options.signal?.aborted === true) return giveUp("closed");
    const remainingMs = start + policy.deadlineMs - clock.now();
    if (remainingMs <= 0 || (attemptIndex > 0 && remainingMs < ATTEMPT_MS_MIN)) {
      return giveUp("deadline");
    }
    const timeoutMs = Math.min(policy.attemptTimeoutMs, remainingMs);
    const result = await attempt({ attemptIndex, timeoutMs });
    if (result.ok) return result;
    failures.push(result.failure);
    failedInRow++;
    if (result.failure.tryNextAtOnce && failedInRow < options.endpointCount) continue;
    const delayMs = delayAfterFailureMs(result.failure, waitCount, policy, clock.random());
    // Waiting until the deadline only to give up then would delay the answer; give up now.
    if (delayMs + ATTEMPT_MS_MIN > start + policy.deadlineMs - clock.now()) {
      return giveUp("deadline");
    }
    await clock.sleep(delayMs, options.signal);
    waitCount++;
    failedInRow = 0;
  }
  return giveUp("attempts");
}

/**
 * The wait after a failed round: the back-off for round `waitCount`, or the server's
 * Retry-After capped at `retryAfterMsMax` when that is longer.
 */
export function delayAfterFailureMs(
  failure: AttemptFailure,
  waitCount: number,
  policy: RetryPolicy,
  random: number,
): number {
  const backoffMs = backoffDelayMs(
    waitCount,
    policy.retryDelayMsMin,
    policy.retryDelayMsMax,
    random,
  );
  if (failure.retryAfterMs === null) return backoffMs;
  return Math.max(backoffMs, Math.min(failure.retryAfterMs, policy.retryAfterMsMax));
}

/**
 * Exponential back-off with "equal jitter": the ceiling doubles from `retryDelayMsMin` each
 * round up to `retryDelayMsMax`, and the wait is drawn from the upper half of it, so that
 * clients that failed together do not retry together, yet none retries too eagerly. The
 * result lies in [retryDelayMsMin, retryDelayMsMax]. `random` is in [0, 1).
 */
export function backoffDelayMs(
  waitCount: number,
  retryDelayMsMin: number,
  retryDelayMsMax: number,
  random: number,
): number {
  // The exponent is capped so that 2 ** n stays finite however long an operation retries.
  const ceilingMs = Math.min(retryDelayMsMax, retryDelayMsMin * 2 ** Math.min(waitCount, 30));
  const jitteredMs = ceilingMs / 2 + (random * ceilingMs) / 2;
  return Math.round(Math.min(retryDelayMsMax, Math.max(retryDelayMsMin, jitteredMs)));
}

/**
 * Parses a Retry-After header into milliseconds: delay-seconds (fractions accepted) or an
 * HTTP date relative to `nowEpochMs`. Returns null when absent or unparseable, and never a
 * negative number.
 */
export function parseRetryAfterMs(
  header: string | readonly string[] | undefined,
  nowEpochMs: number = Date.now(),
): number | null {
  const value = (typeof header === "string" ? header : header?.[0])?.trim();
  if (value === undefined || value === "") return null;
  if (/^\d+(\.\d+)?$/.test(value)) return Math.round(Number(value) * 1000);
  // Anything else that starts like a number is malformed, not a date ("-1" parses as one).
  if (/^[+-]?[\d.]/.test(value)) return null;
  const dateMs = Date.parse(value);
  if (Number.isNaN(dateMs)) return null;
  return Math.max(0, dateMs - nowEpochMs);
}
