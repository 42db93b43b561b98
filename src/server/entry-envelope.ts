/**
 * The bytes a command entry carries: the master's wall-clock time when it proposed the
 * command, then the application's command. The time travels in the log so that every
 * replica sees the same `ApplyContext.time` (deterministic expiry), never its own clock.
 *
 * Layout: 1 byte format version (1), 8 bytes float64 big-endian milliseconds, command.
 */

import { assert } from "../shared/assert.js";

const VERSION = 1;
const HEADER_BYTES = 9;

export function wrapCommand(timeMs: number, command: Uint8Array): Uint8Array {
  assert(Number.isFinite(timeMs), "envelope: time must be finite");
  const out = new Uint8Array(HEADER_BYTES + command.length);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setUint8(0, VERSION);
  view.setFloat64(1, timeMs);
  out.set(command, HEADER_BYTES);
  return out;
}

export function unwrapCommand(data: Uint8Array): { timeMs: number; command: Uint8Array } {
  // Entries come from our own log, checksummed on disk: a bad envelope is a bug.
  assert(data.length >= HEADER_BYTES, `envelope: entry of ${data.length} bytes is too short`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  assert(view.getUint8(0) === VERSION, `envelope: unknown format version ${view.getUint8(0)}`);
  return { timeMs: view.getFloat64(1), command: data.subarray(HEADER_BYTES) };
}
