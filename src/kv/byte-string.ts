/**
 * A stored value's bytes held as a one-byte string: character i is byte i (Latin-1, which
 * maps every byte to the character of the same code and back). V8 keeps such a string in
 * its heap with a 16-byte header, where a Uint8Array costs an object, an ArrayBuffer and a
 * separately allocated backing store: about 120 bytes for a 100-byte value instead of
 * about 380 (measured with a million keys). The store holds every value this way and
 * turns it back into bytes only when it is read, snapshotted or compared.
 *
 * Never decode or encode one as text: it is not text, and UTF-8 would change its bytes.
 * (`TextDecoder("latin1")` is windows-1252 and would too; Buffer's "latin1" is exact.)
 */

declare const byteStringBrand: unique symbol;

/** Bytes as a one-byte string (see the opening comment); its length is the byte count. */
export type ByteString = string & { readonly [byteStringBrand]: true };

/** The bytes as a ByteString (a copy: later changes to `bytes` do not show). */
export function toByteString(bytes: Uint8Array): ByteString {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString(
    "latin1",
  ) as ByteString;
}

/**
 * The bytes of a ByteString, new and the caller's. A small value is a view of Buffer's
 * shared pool (as most small Buffers Node.js returns are): a reader that keeps many small
 * values for long should copy them, or it keeps an 8 KiB slab alive for each. It costs a
 * fifth of an ArrayBuffer of its own (0.2 against 0.85 µs for 100 bytes), and reads and
 * snapshots use their bytes at once.
 */
export function byteStringBytes(value: ByteString): Uint8Array {
  const buffer = Buffer.from(value, "latin1");
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** Whether `value` holds exactly `bytes`. */
export function byteStringEquals(value: ByteString, bytes: Uint8Array): boolean {
  if (value.length !== bytes.byteLength) return false;
  for (let i = 0; i < bytes.byteLength; i++) if (value.charCodeAt(i) !== bytes[i]) return false;
  return true;
}
