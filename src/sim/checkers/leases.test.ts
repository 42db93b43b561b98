import { describe, expect, it } from "vitest";
import type { KvResult } from "../../kv/index.js";
import { LeaseChecker } from "./leases.js";
import { SafetyViolation } from "./safety.js";

const OK: KvResult = { ok: true, revision: 1 };

describe("lease checker", () => {
  it("leases: a lease that ends after its promise passes (expiry at or after s + ttl)", () => {
    const checker = new LeaseChecker();
    checker.promised(7, 1000, 100, "the grant of lease 7");
    checker.applied(null, OK, 900, () => true, 2);
    checker.applied(null, OK, 1100, () => false, 2);
    expect(checker.expired).toBe(1);
  });

  it("leases: a lease gone before its promise is a violation (a keep-alive that did not renew)", () => {
    const checker = new LeaseChecker();
    checker.promised(7, 1000, 100, "the grant of lease 7");
    checker.promised(7, 1000, 600, "a keep-alive of lease 7");
    expect(() => checker.applied(null, OK, 1200, () => false, 2)).toThrow(SafetyViolation);
  });

  it("leases: a revoked lease may end at once, and a forward clock jump allows its slack", () => {
    const checker = new LeaseChecker();
    checker.promised(7, 1000, 100, "the grant of lease 7");
    checker.applied({ type: "lease_revoke", id: 7 }, OK, 200, () => false, 2);
    checker.promised(9, 1000, 100, "the grant of lease 9");
    checker.applied(null, OK, 500, () => false, 1002);
    expect(checker.expired).toBe(1);
  });
});
