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

  it("leases: an answer that arrives after the lease ended is held to the end (a keep-alive that did not renew)", () => {
    // Granted at 0 for 1000 ms; a keep-alive sent at 900 is applied while the lease is held
    // but does not renew it; the lease expires at 1001 and the answer arrives at 1150.
    const checker = new LeaseChecker();
    checker.promised(7, 1000, 1000, 0, "the grant of lease 7");
    checker.applied(null, OK, 905, () => true, NOTHING, NO_JUMP);
    checker.applied(null, OK, 1001, () => false, NOTHING, NO_JUMP);
    expect(() => checker.promised(7, 1000, 1000, 900, "a keep-alive of lease 7")).toThrow(
      /lease 7 ended early: a keep-alive of lease 7 promised it until 1900\.0 ms, and it was gone at 1001\.0 ms .*the answer came after the end/,
    );
    // A keep-alive sent so early that its promise ran out before the end: kept.
    const kept = new LeaseChecker();
    kept.promised(7, 1000, 1000, 0, "the grant of lease 7");
    kept.applied(null, OK, 1001, () => false, NOTHING, NO_JUMP);
    kept.promised(7, 1000, 1000, 0, "a keep-alive of lease 7");
    // Revoked leases may end at once, whenever the answer arrives.
    const revoked = new LeaseChecker();
    revoked.promised(7, 1000, 1000, 0, "the grant of lease 7");
    revoked.applied({ type: "lease_revoke", id: 7 }, OK, 300, () => false, NOTHING, NO_JUMP);
    revoked.promised(7, 1000, 1000, 200, "a keep-alive of lease 7");
  });

  it("leases: the end is when the store stopped holding the lease, from its grant's application on, even before the grant's answer arrives", () => {
    const grant = { type: "lease_grant", ttlMs: 1000 } as const;
    const granted: KvResult = { ok: true, revision: 1, lease: { id: 7, ttlMs: 1000 } };
    const checker = new LeaseChecker();
    checker.applied(grant, granted, 10, () => true, NOTHING, NO_JUMP);
    checker.applied(null, OK, 600, () => false, NOTHING, NO_JUMP);
    // The grant's answer arrives at 2000: it promised the lease until 1000.
    expect(() => checker.promised(7, 1000, 1000, 0, "the grant of lease 7")).toThrow(
      /lease 7 ended early: the grant of lease 7 promised it until 1000\.0 ms, and it was gone at 600\.0 ms/,
    );
  });

  it("leases: a keep-alive sent after the lease was seen gone may not be answered ok", () => {
    const checker = new LeaseChecker();
    checker.promised(8, 1000, 1000, 0, "the grant of lease 8");
    checker.applied(null, OK, 1001, () => false, NOTHING, NO_JUMP);
    expect(() => checker.promised(8, 1000, 1000, 1500, "a keep-alive of lease 8")).toThrow(
      /a keep-alive of lease 8, sent at 1500\.0 ms, was answered ok, but lease 8 was gone at 1001\.0 ms/,
    );
    // Revoked or not.
    const revoked = new LeaseChecker();
    revoked.promised(8, 1000, 1000, 0, "the grant of lease 8");
    revoked.applied({ type: "lease_revoke", id: 8 }, OK, 300, () => false, NOTHING, NO_JUMP);
    expect(() => revoked.promised(8, 1000, 1000, 400, "a keep-alive of lease 8")).toThrow(
      /was answered ok, but lease 8 was gone at 300\.0 ms/,
    );
  });

  it("leases: a key attached to a lease seen gone may never hold that attachment's value again", () => {
    let value: string | null = null;
    const valueAt = (key: string) => (key === "lease1" ? value : null);
    const checker = new LeaseChecker();
    checker.promised(9, 1000, 1000, 0, "the grant of lease 9");
    checker.attaching(9, "lease1", "lease 9");
    checker.applied(null, OK, 1001, () => false, valueAt, NO_JUMP);
    value = "lease 10";
    checker.applied(null, OK, 1200, () => false, valueAt, NO_JUMP);
    value = "lease 9"; // A late put attached to lease 9 was accepted.
    expect(() => checker.applied(null, OK, 1500, () => false, valueAt, NO_JUMP)).toThrow(
      /lease 9 is gone but its key "lease1" holds "lease 9" again, at 1500\.0 ms/,
    );
    // An attachment sent after the lease was seen gone is held to the same.
    const late = new LeaseChecker();
    late.promised(9, 1000, 1000, 0, "the grant of lease 9");
    late.applied(null, OK, 1001, () => false, NOTHING, NO_JUMP);
    late.attaching(9, "lease1", "lease 9");
    expect(() => late.applied(null, OK, 1500, () => false, valueAt, NO_JUMP)).toThrow(
      /lease 9 is gone but its key "lease1" holds "lease 9" again/,
    );
  });

  it("leases: every application of a put attached to a lease must find the lease held; a retry answered from the table is not judged", () => {
    const put = {
      type: "put",
      key: "lease1",
      value: new Uint8Array([1]),
      lease: 9,
    } as const;
    const checker = new LeaseChecker();
    const done: KvResult = { ok: true, revision: 40 };
    checker.appliedOnNode(2, 40, put, done, () => true);
    expect(() => checker.appliedOnNode(3, 40, put, done, () => false)).toThrow(
      /node 3 applied a put of "lease1" attached to lease 9 at index 40, where that lease is not held/,
    );
    // A retry at index 52 answered with the first application's result carried nothing out.
    checker.appliedOnNode(2, 52, put, done, () => false);
    // Refused (lease_not_found): nothing attached.
    const refused: KvResult = { ok: false, code: "lease_not_found", leaseId: 9 };
    checker.appliedOnNode(2, 53, put, refused, () => false);
    // A transaction's put in the branch that ran.
    const txn = {
      type: "txn",
      compare: [],
      success: [put],
      failure: [{ type: "delete", key: "lease1" }],
    } as const;
    const ran: KvResult = { ok: true, revision: 60, succeeded: true };
    expect(() => checker.appliedOnNode(2, 60, txn, ran, () => false)).toThrow(/at index 60/);
    checker.appliedOnNode(2, 61, txn, { ok: true, revision: 61, succeeded: false }, () => false);
  });

  it("leases: an answer naming another time to live than the one asked for is a violation", () => {
    const checker = new LeaseChecker();
    expect(() => checker.promised(7, 2000, 1000, 100, "the grant of lease 7")).toThrow(
      /the grant of lease 7 asked for 2000 ms and was answered with a time to live of 1000 ms/,
    );
  });
});
