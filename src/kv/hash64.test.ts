import { describe, expect, it } from "vitest";
import { addDigests, formatDigest, Hash64, ZERO_DIGEST } from "./hash64.js";

describe("hash64", () => {
  it("hash64: equal input gives an equal digest and field boundaries count", () => {
    const digest = (build: (hash: Hash64) => Hash64) => formatDigest(build(new Hash64()).digest());
    expect(digest((h) => h.string("ab").string("c"))).toBe(
      digest((h) => h.string("ab").string("c")),
    );
    expect(digest((h) => h.string("ab").string("c"))).not.toBe(
      digest((h) => h.string("a").string("bc")),
    );
    expect(digest((h) => h.bytes(Uint8Array.of(1, 2, 3)))).not.toBe(
      digest((h) => h.bytes(Uint8Array.of(1, 2, 3, 0))),
    );
    expect(digest((h) => h.integer(2 ** 32))).not.toBe(digest((h) => h.integer(1)));
    expect(formatDigest(new Hash64(1).digest())).not.toBe(formatDigest(new Hash64(2).digest()));
    expect(digest((h) => h)).toMatch(/^[0-9a-f]{16}$/);
  });

  it("hash64: digest sums are order-free and carry into the high half", () => {
    const a = { hi: 1, lo: 0xffff_ffff };
    const b = { hi: 2, lo: 2 };
    expect(addDigests(a, b)).toEqual({ hi: 4, lo: 1 });
    expect(addDigests(b, a)).toEqual(addDigests(a, b));
    expect(addDigests({ hi: 0xffff_ffff, lo: 0xffff_ffff }, { hi: 0, lo: 1 })).toEqual(ZERO_DIGEST);
  });
});
