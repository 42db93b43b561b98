import { describe, expect, it } from "vitest";
import type { KvResult } from "../../kv/index.js";
import { LeaseChecker } from "./leases.js";
import { SafetyViolation } from "./safety.js";

const OK: KvResult = { ok: true, revision: 1 };
/** No clock jumped: 2 ms of rounding. */
const NO_JUMP = () => 2;
/** The store holds no key. */
const NOTHING = () => null;

describe("lease checker", () => {
  it("leases: a lease that ends after its promise passes (expiry at or after s + ttl)", () => {
    const checker = new LeaseChecker();
    checker.promised(7, 1000, 1000, 100, "the grant of lease 7");
    checker.applied(null, OK, 900, () => true, NOTHING, NO_JUMP);
    checker.applied(null, OK, 1100, () => false, NOTHING, NO_JUMP);
    expect(checker.expired).toBe(1);
  });

  it("leases: a lease gone before its promise is a violation (a keep-alive that did not renew)", () => {
    const checker = new LeaseChecker();
    checker.promised(7, 1000, 1000, 100, "the grant of lease 7");
    checker.promised(7, 1000, 1000, 600, "a keep-alive of lease 7");
    expect(() => checker.applied(null, OK, 1200, () => false, NOTHING, NO_JUMP)).toThrow(
      SafetyViolation,
    );
  });

  it("leases: a revoked lease may end at once, and a forward clock jump allows its slack", () => {
    const checker = new LeaseChecker();
    checker.promised(7, 1000, 1000, 100, "the grant of lease 7");
    checker.applied({ type: "lease_revoke", id: 7 }, OK, 200, () => false, NOTHING, NO_JUMP);
    checker.promised(9, 1000, 1000, 100, "the grant of lease 9");
    checker.applied(
      null,
      OK,
      500,
      () => false,
      NOTHING,
      () => 1002,
    );
    expect(checker.expired).toBe(1);
  });

  it("leases: only clock jumps made since the promise was sent give slack", () => {
    // One forward jump at 50 ms, before the grant was sent at 100 ms.
    const jumps = [50];
    const slack = (sinceMs: number) => jumps.filter((at) => at >= sinceMs).length * 1000 + 2;
    const checker = new LeaseChecker();
    checker.promised(9, 3000, 3000, 100, "the grant of lease 9");
    expect(() => checker.applied(null, OK, 2500, () => false, NOTHING, slack)).toThrow(
      /lease 9 ended early: .*\(allowed 2 ms for wall clocks stepped forward since it was sent\)/,
    );
    // A jump after the grant was sent allows one step.
    jumps.push(150);
    const later = new LeaseChecker();
    later.promised(9, 3000, 3000, 100, "the grant of lease 9");
    later.applied(null, OK, 2500, () => false, NOTHING, slack);
    expect(later.expired).toBe(1);
  });

  it("leases: a lease gone with its key still attached is a violation, expired or revoked", () => {
    const value = (held: string | null) => (key: string) => (key === "lease1" ? held : null);
    const expired = new LeaseChecker();
    expired.promised(7, 1000, 1000, 100, "the grant of lease 7");
    expired.attaching(7, "lease1", "lease 7");
    expired.applied(null, OK, 900, () => true, value("lease 7"), NO_JUMP);
    expect(() => expired.applied(null, OK, 1100, () => false, value("lease 7"), NO_JUMP)).toThrow(
      /lease 7 is gone \(expired\) but its key "lease1" still holds "lease 7"/,
    );
    const revoked = new LeaseChecker();
    revoked.promised(7, 1000, 1000, 100, "the grant of lease 7");
    revoked.attaching(7, "lease1", "lease 7");
    const revoke = { type: "lease_revoke", id: 7 } as const;
    expect(() => revoked.applied(revoke, OK, 200, () => false, value("lease 7"), NO_JUMP)).toThrow(
      /\(revoked\)/,
    );
    // The key gone, or holding a later lease's value: as it should be.
    const fine = new LeaseChecker();
    fine.promised(7, 1000, 1000, 100, "the grant of lease 7");
    fine.attaching(7, "lease1", "lease 7");
    fine.applied(null, OK, 1100, () => false, value("lease 9"), NO_JUMP);
    expect(fine.keysChecked).toBe(1);
  });

  it("leases: an answer naming another time to live than the one asked for is a violation", () => {
    const checker = new LeaseChecker();
    expect(() => checker.promised(7, 2000, 1000, 100, "the grant of lease 7")).toThrow(
      /the grant of lease 7 asked for 2000 ms and was answered with a time to live of 1000 ms/,
    );
  });
});
