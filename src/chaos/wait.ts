/**
 * Waiting in real time, for code that drives real processes: the fault campaign, the
 * integration tests and the benchmarks. Nothing here is for the node itself, whose time
 * arrives through its clock seam.
 */

export function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

/**
 * Polls `probe` every `intervalMs` until it returns a value other than undefined, and
 * returns it; a probe that throws counts as undefined. Throws after `timeoutMs`, naming
 * `what` and the last error the probe threw, if any.
 */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  intervalMs = 20,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    if (performance.now() >= deadline) {
      const detail = lastError === null ? "" : ` (last error: ${String(lastError)})`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
    }
    await sleep(intervalMs);
  }
}
