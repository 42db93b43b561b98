import { describe, expect, it } from "vitest";
import type { KvResult } from "../../kv/index.js";
import { LeaseChecker } from "./leases.js";
import { SafetyViolation } from "./safety.js";

const OK: KvResult = { ok: true, revision: 1 };
/** No clock jumped: 2 ms of rounding. */
const NO_JUMP = () => 2;

describe("lease checker", () => {
  it("leases: a lease that ends after its promise passes (expiry at or after s + ttl)", () => {
    const checker = new LeaseChecker();
    checker.promised(7, 1000, 100, "the grant of lease 7");
    checker.applied(null, OK, 900, () => true, NO_JUMP);
    checker.applied(null, OK, 1100, () => false, NO_JUMP);
    expect(checker.expired).toBe(1);
  });

  it("leases: a lease gone before its promise is a violation (a keep-alive that did not renew)", () => {
    const checker = new LeaseChecker();
    checker.promised(7, 1000, 100, "the grant of lease 7");
    checker.promised(7, 1000, 600, "a keep-alive of lease 7");
    expect(() => checker.applied(null, OK, 1200, () => false, NO_JUMP)).toThrow(SafetyViolation);
  });

  it("leases: a revoked lease may end at once, and a forward clock jump allows its slack", () => {
    const checker = new LeaseChecker();
    checker.promised(7, 1000, 100, "the grant of lease 7");
    checker.applied({ type: "lease_revoke", id: 7 }, OK, 200, () => false, NO_JUMP);
    checker.promised(9, 1000, 100, "the grant of lease 9");
    checker.applied(
      null,
      OK,
      500,
      () => false,
      () => 1002,
    );
    expect(checker.expired).toBe(1);
  });

  it("leases: only clock jumps made since the promise was sent give slack", () => {
    // One forward jump at 50 ms, before the grant was sent at 100 ms.
    const jumps = [50];
    const slack = (sinceMs: number) => jumps.filter((at) => at >= sinceMs).length * 1000 + 2;
    const checker = new LeaseChecker();
    checker.promised(9, 3000, 100, "the grant of lease 9");
    expect(() => checker.applied(null, OK, 2500, () => false, slack)).toThrow(
      /lease 9 ended early: .*\(allowed 2 ms for wall clocks stepped forward since it was sent\)/,
    );
    // A jump after the grant was sent allows one step.
    jumps.push(150);
    const later = new LeaseChecker();
    later.promised(9, 3000, 100, "the grant of lease 9");
    later.applied(null, OK, 2500, () => false, slack);
    expect(later.expired).toBe(1);
  });
});
