/**
 * How the store holds a value's bytes. A small value (up to SMALL_VALUE_BYTES_MAX) is a
 * one-byte string, a ByteString: character i is byte i (Latin-1, which maps every byte to
 * the character of the same code and back). V8 keeps such a string in its heap with a
 * 16-byte header, where a Uint8Array costs an object, an ArrayBuffer and a separately
 * allocated backing store: about 120 bytes for a 100-byte value instead of about 380
 * (measured with a million keys). A larger value stays a Uint8Array: its overhead no
 * longer matters, and it stays out of V8's heap, whose limit (4 GiB here) would otherwise
 * bound the data a node may hold, and out of the heap's compactions, which copy strings.
 *
 * Never decode or encode a ByteString as text: it is not text, and UTF-8 would change its
 * bytes. (`TextDecoder("latin1")` is windows-1252 and would too; Buffer's "latin1" is
 * exact.)
 */

declare const byteStringBrand: unique symbol;

/** Bytes as a one-byte string (see the opening comment); its length is the byte count. */
export type ByteString = string & { readonly [byteStringBrand]: true };

/** A stored value: a ByteString when small, else bytes the store owns and never changes. */
export type StoredValue = ByteString | Uint8Array;

/** The largest value held as a ByteString, bytes. */
export const SMALL_VALUE_BYTES_MAX = 256;

/** The bytes as a ByteString (a copy: later changes to `bytes` do not show). */
export function toByteString(bytes: Uint8Array): ByteString {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString(
    "latin1",
  ) as ByteString;
}

/**
 * `bytes` as the store holds them. A large value is kept as it is when `owned` (the caller
 * hands it over: a decoded command's own copy), else copied, so that the store never pins a
 * larger buffer it is a view of nor sees later changes.
 */
export function toStoredValue(bytes: Uint8Array, owned: boolean): StoredValue {
  if (bytes.byteLength <= SMALL_VALUE_BYTES_MAX) return toByteString(bytes);
  return owned ? bytes : bytes.slice();
}

/**
 * A stored value's bytes. A large value is the stored Uint8Array itself: the caller must
 * not change it. A small one is made anew, as a view of Buffer's shared pool (as most
 * small Buffers Node.js returns are): a reader that keeps many small values for long
 * should copy them, or it keeps an 8 KiB slab alive for each. That costs a fifth of an
 * ArrayBuffer of its own (0.2 against 0.85 µs for 100 bytes), and reads and snapshots use
 * their bytes at once.
 */
export function storedBytes(value: StoredValue): Uint8Array {
  if (typeof value !== "string") return value;
  const buffer = Buffer.from(value, "latin1");
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** A stored value's length in bytes. */
export function storedLength(value: StoredValue): number {
  return typeof value === "string" ? value.length : value.byteLength;
}

/** Whether `value` holds exactly `bytes`. */
export function storedEquals(value: StoredValue, bytes: Uint8Array): boolean {
  if (storedLength(value) !== bytes.byteLength) return false;
  if (typeof value === "string") {
    for (let i = 0; i < bytes.byteLength; i++) if (value.charCodeAt(i) !== bytes[i]) return false;
  } else {
    for (let i = 0; i < bytes.byteLength; i++) if (value[i] !== bytes[i]) return false;
  }
  return true;
}
