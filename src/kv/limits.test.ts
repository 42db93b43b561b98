import { describe, expect, it } from "vitest";
import { defaultKvLimits, isValidKvLimits, parseKvLimits } from "./limits.js";

describe("kv limits", () => {
  it("kv limits: defaults are frozen and valid", () => {
    const limits = defaultKvLimits();
    expect(Object.isFrozen(limits)).toBe(true);
    expect(isValidKvLimits(limits)).toBe(true);
    expect(limits.keyBytesMax).toBe(1024);
    expect(limits.valueBytesMax).toBe(1_048_576);
    // The exactly-once window outlasts a client's deadline (10 s) plus a fail-over by far.
    expect(limits.idempotencyWindowMs).toBeGreaterThanOrEqual(600_000);
    expect(parseKvLimits()).toEqual({ ok: true, limits });
  });

  it("kv limits: a log-time step must be shorter than the windows it bounds", () => {
    expect(parseKvLimits({ logTimeStepMsMax: 600_000 })).toEqual({
      ok: false,
      errors: [
        "logTimeStepMsMax: must be shorter than idempotencyWindowMs and sessionTtlMs, got 600000",
      ],
    });
    expect(parseKvLimits({ sessionTtlMs: 500, logTimeStepMsMax: 499 }).ok).toBe(true);
  });

  it("kv limits: parse overlays the defaults and reports every bad field at once", () => {
    const parsed = parseKvLimits({ keyBytesMax: 10, sessionTtlMs: undefined });
    expect(parsed).toEqual({ ok: true, limits: { ...defaultKvLimits(), keyBytesMax: 10 } });
    const bad = parseKvLimits({ keyBytesMax: 0, valueBytesMax: 1.5, sesionTtlMs: 5 });
    expect(bad.ok).toBe(false);
    if (!bad.ok) {
      expect(bad.errors).toEqual([
        "keyBytesMax: must be a positive integer, got 0",
        "valueBytesMax: must be a positive integer, got 1.5",
        "sesionTtlMs: unknown limit",
      ]);
    }
  });
});
