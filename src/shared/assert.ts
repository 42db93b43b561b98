/**
 * Assertions for bugs. A failed assertion means the program is wrong, never that the
 * input was bad: bad input gets an error value or a catalogued error instead. Assertions
 * stay on in production, because continuing past a broken invariant in a replicated
 * system can lose or corrupt acknowledged data.
 */

export class AssertionError extends Error {
  override readonly name = "AssertionError";
}

/** Throws AssertionError with `message` when `condition` is false. */
export function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new AssertionError(message);
}

/**
 * For a catch that lets a failure go (a clean-up that may fail, an error already
 * reported): rethrows it if it is a bug, which must stop the process, never be dropped.
 */
export function rethrowIfBug(error: unknown): void {
  if (error instanceof AssertionError) throw error;
}

/** Marks a branch the type system proves unreachable; throws if it is reached anyway. */
export function unreachable(value: never, message = "unreachable"): never {
  throw new AssertionError(`${message}: ${JSON.stringify(value)}`);
}
