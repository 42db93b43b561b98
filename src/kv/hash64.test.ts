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

  it("hash64: bytes read as words give the digest of bytes assembled one at a time", () => {
    // The definition: the length, then each four bytes as a little-endian word, then the
    // tail. Checked against the fast path at every alignment and around its threshold.
    const reference = (bytes: Uint8Array): string => {
      const hash = new Hash64(7).word(bytes.length);
      let i = 0;
      for (; i + 4 <= bytes.length; i += 4) {
        hash.word(
          (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24)) >>> 0,
        );
      }
      let tail = 0;
      for (let shift = 0; i < bytes.length; i++, shift += 8) tail |= bytes[i]! << shift;
      return formatDigest(hash.word(tail >>> 0).digest());
    };
    const backing = new Uint8Array(4096 + 8);
    for (let i = 0; i < backing.length; i++) backing[i] = (i * 151 + 7) & 0xff;
    for (const length of [0, 1, 3, 4, 5, 63, 64, 65, 66, 67, 68, 255, 1000, 4096]) {
      for (let offset = 0; offset < 4; offset++) {
        const view = backing.subarray(offset, offset + length);
        expect(formatDigest(new Hash64(7).bytes(view).digest()), `${length} at ${offset}`).toBe(
          reference(view),
        );
      }
    }
    // A pinned digest, so that a change of the definition itself is seen too (snapshots and
    // replicas compare digests computed by other builds).
    expect(formatDigest(new Hash64(7).bytes(backing).digest())).toBe("f92669bbd435f933");
  });
});
