import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Hash64 } from "./hash64.js";
import {
  SMALL_VALUE_BYTES_MAX,
  storedBytes,
  storedEquals,
  storedLength,
  toByteString,
  toStoredValue,
} from "./stored-value.js";

describe("stored values", () => {
  it("stored value: every byte value survives the round trip, in a plain Uint8Array", () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    const held = toStoredValue(all, false);
    expect(typeof held).toBe("string");
    const back = storedBytes(held);
    expect(back.constructor).toBe(Uint8Array);
    expect(back).toEqual(all);
  });

  it("stored value: small ones are strings, larger ones bytes; a view or an unowned value is copied", () => {
    const source = new Uint8Array(SMALL_VALUE_BYTES_MAX + 2).fill(7);
    const small = toStoredValue(source.subarray(1, 1 + SMALL_VALUE_BYTES_MAX), false);
    const view = source.subarray(1);
    const large = toStoredValue(view, false);
    const owned = toStoredValue(view, true);
    expect(typeof small).toBe("string");
    expect(large).toBeInstanceOf(Uint8Array);
    expect(owned).toBe(view);
    source[1] = 9;
    expect(storedBytes(small)[0]).toBe(7);
    expect(storedBytes(large)[0]).toBe(7);
    expect((large as Uint8Array).buffer.byteLength).toBe(SMALL_VALUE_BYTES_MAX + 1);
  });

  it("stored value: round trip, length, equality and digest agree with the bytes (property)", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 2 * SMALL_VALUE_BYTES_MAX }),
        fc.uint8Array({ maxLength: 2 * SMALL_VALUE_BYTES_MAX }),
        (a, b) => {
          const held = toStoredValue(a, false);
          expect(storedBytes(held)).toEqual(a);
          expect(storedLength(held)).toBe(a.byteLength);
          expect(storedEquals(held, a)).toBe(true);
          const same = a.length === b.length && a.every((x, i) => x === b[i]);
          expect(storedEquals(held, b)).toBe(same);
          const expected = new Hash64(1).bytes(a).digest();
          expect(new Hash64(1).byteString(toByteString(a)).digest()).toEqual(expected);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
