import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { byteStringBytes, byteStringEquals, toByteString } from "./byte-string.js";
import { Hash64 } from "./hash64.js";

describe("byte strings", () => {
  it("byte string: every byte value survives the round trip, in a plain Uint8Array", () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    const held = toByteString(all);
    expect(held.length).toBe(256);
    const back = byteStringBytes(held);
    expect(back.constructor).toBe(Uint8Array);
    expect(back).toEqual(all);
  });

  it("byte string: a copy, not a view (later changes to the input do not show)", () => {
    const input = new Uint8Array([1, 2, 3]);
    const held = toByteString(input.subarray(1));
    input[1] = 9;
    expect(byteStringBytes(held)).toEqual(new Uint8Array([2, 3]));
  });

  it("byte string: round trip, equality and digest agree with the bytes (property)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 300 }), (a, b) => {
        const held = toByteString(a);
        expect(byteStringBytes(held)).toEqual(a);
        expect(byteStringEquals(held, a)).toBe(true);
        const same = a.length === b.length && a.every((x, i) => x === b[i]);
        expect(byteStringEquals(held, b)).toBe(same);
        expect(new Hash64(1).byteString(held).digest()).toEqual(new Hash64(1).bytes(a).digest());
      }),
      { numRuns: 2000 },
    );
  });
});
