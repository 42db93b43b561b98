/**
 * A small, deterministic, non-cryptographic 64-bit hash for convergence checks: two
 * replicas that applied the same log must produce the same digest of their state. It is
 * built from two 32-bit lanes mixed with `Math.imul` (the construction of cyrb53, kept to
 * the full 64 bits) so that it needs no BigInt and no `node:crypto`.
 *
 * It must never be used where an adversary chooses the input and a collision matters:
 * it detects accidental divergence and corruption, nothing more.
 */

const LANE1_SEED = 0xdeadbeef;
const LANE2_SEED = 0x41c6ce57;
const LANE1_MULTIPLIER = 2_654_435_761;
const LANE2_MULTIPLIER = 1_597_334_677;
const TWO_POW_32 = 4_294_967_296;
/** Below this many bytes a DataView costs more than it saves. */
const WORDS_VIEW_BYTES_MIN = 64;

/** A 64-bit digest as two unsigned 32-bit halves. */
export interface Digest64 {
  readonly hi: number;
  readonly lo: number;
}

/**
 * An incremental hasher. Every `update` is length-delimited or fixed-width, so that the
 * digest of a sequence of fields never equals the digest of a different split of the same
 * bytes ("ab","c" and "a","bc" differ).
 */
export class Hash64 {
  private h1: number;
  private h2: number;

  constructor(seed = 0) {
    this.h1 = (LANE1_SEED ^ seed) >>> 0;
    this.h2 = (LANE2_SEED ^ seed) >>> 0;
  }

  /** Mixes one unsigned 32-bit word. */
  word(value: number): this {
    this.h1 = Math.imul(this.h1 ^ value, LANE1_MULTIPLIER);
    this.h2 = Math.imul(this.h2 ^ value, LANE2_MULTIPLIER);
    return this;
  }

  /** Mixes a non-negative safe integer as 64 bits. */
  integer(value: number): this {
    return this.word(value >>> 0).word(Math.floor(value / TWO_POW_32) >>> 0);
  }

  /** Mixes a boolean. */
  boolean(value: boolean): this {
    return this.word(value ? 1 : 0);
  }

  /** Mixes a string as its length and UTF-16 code units. */
  string(value: string): this {
    this.word(value.length);
    for (let i = 0; i < value.length; i++) this.word(value.charCodeAt(i));
    return this;
  }

  /**
   * Mixes bytes as their length and four bytes at a time, each four read as a little-endian
   * word. A long value is read through a DataView, twice as fast as assembling each word
   * from four bytes; the two lanes' multiplications then bound the rate (about 2.7 GB/s
   * here), which matters for the large values a state transfer hashes.
   */
  bytes(value: Uint8Array): this {
    const length = value.length;
    this.word(length);
    const whole = length - (length % 4);
    if (whole >= WORDS_VIEW_BYTES_MIN) {
      this.words(new DataView(value.buffer, value.byteOffset, whole));
    } else {
      for (let i = 0; i < whole; i += 4) {
        this.word(value[i]! | (value[i + 1]! << 8) | (value[i + 2]! << 16) | (value[i + 3]! << 24));
      }
    }
    let tail = 0;
    for (let i = whole, shift = 0; i < length; i++, shift += 8) tail |= value[i]! << shift;
    return this.word(tail >>> 0);
  }

  /** Mixes each little-endian word of `view`, as `word` would one at a time. */
  private words(view: DataView): void {
    let h1 = this.h1;
    let h2 = this.h2;
    const end = view.byteLength;
    for (let i = 0; i < end; i += 4) {
      const w = view.getInt32(i, true);
      h1 = Math.imul(h1 ^ w, LANE1_MULTIPLIER);
      h2 = Math.imul(h2 ^ w, LANE2_MULTIPLIER);
    }
    this.h1 = h1;
    this.h2 = h2;
  }

  /**
   * Mixes the bytes a ByteString holds (one byte per character, see stored-value.ts) exactly
   * as `bytes` mixes the same bytes, so that a digest does not depend on how they are held.
   */
  byteString(value: string): this {
    const length = value.length;
    this.word(length);
    let i = 0;
    for (; i + 4 <= length; i += 4) {
      this.word(
        (value.charCodeAt(i) |
          (value.charCodeAt(i + 1) << 8) |
          (value.charCodeAt(i + 2) << 16) |
          (value.charCodeAt(i + 3) << 24)) >>>
          0,
      );
    }
    let tail = 0;
    for (let shift = 0; i < length; i++, shift += 8) tail |= value.charCodeAt(i) << shift;
    return this.word(tail >>> 0);
  }

  /** Mixes another digest. */
  digestValue(value: Digest64): this {
    return this.word(value.hi).word(value.lo);
  }

  /** Finishes the hash; the hasher may keep being updated afterwards. */
  digest(): Digest64 {
    let h1 = this.h1;
    let h2 = this.h2;
    h1 = Math.imul(h1 ^ (h1 >>> 16), 2_246_822_507);
    h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3_266_489_909);
    h2 = Math.imul(h2 ^ (h2 >>> 16), 2_246_822_507);
    h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3_266_489_909);
    return { hi: h2 >>> 0, lo: h1 >>> 0 };
  }
}

/** The zero digest: the neutral element of `addDigests`. */
export const ZERO_DIGEST: Digest64 = Object.freeze({ hi: 0, lo: 0 });

/**
 * Adds two digests modulo 2^64. Addition is commutative, so a set of entries can be
 * digested in any order (a Map's order differs between a replica that applied the log and
 * one that restored a snapshot, while their contents are equal).
 */
export function addDigests(a: Digest64, b: Digest64): Digest64 {
  const lo = a.lo + b.lo;
  const carry = lo >= TWO_POW_32 ? 1 : 0;
  return { hi: (a.hi + b.hi + carry) >>> 0, lo: lo >>> 0 };
}

/** Subtracts `b` from `a` modulo 2^64: undoes `addDigests(x, b)`. */
export function subtractDigests(a: Digest64, b: Digest64): Digest64 {
  const lo = a.lo - b.lo;
  const borrow = lo < 0 ? 1 : 0;
  return { hi: (a.hi - b.hi - borrow) >>> 0, lo: lo >>> 0 };
}

/** Formats a digest as 16 lower-case hex digits. */
export function formatDigest(value: Digest64): string {
  return value.hi.toString(16).padStart(8, "0") + value.lo.toString(16).padStart(8, "0");
}
