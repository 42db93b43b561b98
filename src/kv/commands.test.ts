import { describe, expect, it } from "vitest";
import {
  commandFingerprint,
  decodeCommand,
  decodeResult,
  encodeCommand,
  encodeResult,
  type KvCommand,
  type KvResult,
  kvPackr,
  utf8ByteLength,
  validateCommand,
} from "./commands.js";
import { defaultKvLimits } from "./limits.js";

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

describe("commands", () => {
  it("commands: encode and decode round trip (every optional field)", () => {
    const commands: KvCommand[] = [
      { type: "put", key: "a", value: bytes("1") },
      { type: "put", key: "ключ", value: new Uint8Array(0), ifRevision: 0 },
      {
        type: "put",
        key: "k",
        value: bytes("v"),
        ifRevision: 2 ** 40,
        session: { clientId: "c1", seq: 7 },
        idempotencyKey: "idem",
      },
      { type: "delete", key: "a" },
      { type: "delete", key: "a", ifRevision: 3, session: { clientId: "c", seq: 1 } },
    ];
    for (const command of commands) {
      const decoded = decodeCommand(encodeCommand(command));
      expect(decoded).toEqual({ ok: true, command });
      if (decoded.ok && decoded.command.type === "put") {
        expect(decoded.command.value.constructor).toBe(Uint8Array);
      }
    }
  });

  it("commands: decode reads a view into a larger buffer (log entries sliced from a segment)", () => {
    const command: KvCommand = { type: "put", key: "k", value: bytes("value") };
    const encoded = encodeCommand(command);
    const segment = new Uint8Array(encoded.byteLength + 20).fill(0xc1);
    segment.set(encoded, 10);
    const view = segment.subarray(10, 10 + encoded.byteLength);
    expect(decodeCommand(view)).toEqual({ ok: true, command });
    // The decoded value is a copy: reusing the segment buffer must not change it.
    const decoded = decodeCommand(view);
    segment.fill(0);
    expect(decoded.ok && decoded.command.type === "put" && decoded.command.value).toEqual(
      bytes("value"),
    );
  });

  it("commands: decode reports malformed bytes as a value (garbage, wrong shape, version)", () => {
    const cases = [
      new Uint8Array([0xc1]),
      new Uint8Array([0x93, 0x01]),
      kvPackr.pack({ type: "put" }),
      kvPackr.pack([2, "put", "k", bytes("v"), null, null, null, null]),
      kvPackr.pack([1, "put", "k", "not-bytes", null, null, null, null]),
      kvPackr.pack([1, "put", "k", bytes("v"), null, "c", null, null]),
      kvPackr.pack([1, "delete", "k", bytes("v"), null, null, null, null]),
      kvPackr.pack([1, "rename", "k", null, null, null, null, null]),
      kvPackr.pack([1, "put", "k", bytes("v"), null, null, null]),
    ];
    for (const bad of cases) {
      const decoded = decodeCommand(bad);
      expect(decoded.ok).toBe(false);
      if (!decoded.ok) expect(decoded.problem.reason).toBe("malformed");
    }
  });

  it("commands: validation measures keys in UTF-8 bytes (multi-byte characters)", () => {
    const limits = { ...defaultKvLimits(), keyBytesMax: 4 };
    const put = (key: string): KvCommand => ({ type: "put", key, value: bytes("") });
    expect(validateCommand(put("ab"), limits)).toBeNull();
    expect(validateCommand(put("éé"), limits)).toBeNull();
    expect(validateCommand(put("ééa"), limits)?.reason).toBe("key_too_long");
    expect(validateCommand(put(""), limits)?.reason).toBe("key_invalid");
    expect(validateCommand(put("\ud800"), limits)?.reason).toBe("key_invalid");
    expect(utf8ByteLength("😀")).toBe(4);
    expect(utf8ByteLength("a\udc00")).toBeNull();
  });

  it("commands: validation checks value size and write options (limits at their edges)", () => {
    const limits = { ...defaultKvLimits(), valueBytesMax: 3, clientIdBytesMax: 2 };
    const put = (extra: object, size = 1): KvCommand =>
      ({ type: "put", key: "k", value: new Uint8Array(size), ...extra }) as KvCommand;
    expect(validateCommand(put({}, 3), limits)).toBeNull();
    expect(validateCommand(put({}, 4), limits)?.reason).toBe("value_too_large");
    expect(validateCommand(put({ ifRevision: -1 }), limits)?.reason).toBe("if_revision_invalid");
    expect(validateCommand(put({ ifRevision: 1.5 }), limits)?.reason).toBe("if_revision_invalid");
    const session = (clientId: string, seq: number) => put({ session: { clientId, seq } });
    expect(validateCommand(session("ab", 1), limits)).toBeNull();
    expect(validateCommand(session("abc", 1), limits)?.reason).toBe("session_invalid");
    expect(validateCommand(session("", 1), limits)?.reason).toBe("session_invalid");
    expect(validateCommand(session("a", 0), limits)?.reason).toBe("session_invalid");
    expect(validateCommand(put({ idempotencyKey: "" }), limits)?.reason).toBe(
      "idempotency_key_invalid",
    );
  });

  it("commands: results round trip and bad result bytes decode to null", () => {
    const results: KvResult[] = [
      { ok: true, revision: 9 },
      { ok: false, code: "precondition_failed", currentRevision: 0 },
      { ok: false, code: "not_found" },
      { ok: false, code: "session_stale", lastSeq: 4 },
      { ok: false, code: "session_expired" },
      { ok: false, code: "idempotency_key_reused" },
      { ok: false, code: "invalid_command", reason: "key_too_long", message: "too long" },
      { ok: false, code: "table_full", table: "idempotency", retryAfterMs: 250 },
      { ok: false, code: "table_full", table: "sessions", retryAfterMs: 1000 },
    ];
    for (const result of results) expect(decodeResult(encodeResult(result))).toEqual(result);
    expect(decodeResult(new Uint8Array([0xc1]))).toBeNull();
    expect(decodeResult(kvPackr.pack(["ok"]))).toBeNull();
    expect(decodeResult(kvPackr.pack(["ok", -1]))).toBeNull();
    expect(decodeResult(kvPackr.pack(["invalid_command", "nonsense", "m"]))).toBeNull();
    expect(decodeResult(kvPackr.pack(["not_found", 1]))).toBeNull();
    expect(decodeResult(kvPackr.pack(["table_full", "data", 1]))).toBeNull();
    expect(decodeResult(kvPackr.pack(["table_full", "sessions", -1]))).toBeNull();
  });

  it("commands: fingerprint covers what a command does, not how it is delivered", () => {
    const base: KvCommand = { type: "put", key: "k", value: bytes("v") };
    const same = commandFingerprint(base);
    const delivered = { ...base, session: { clientId: "c", seq: 3 }, idempotencyKey: "i" };
    expect(commandFingerprint(delivered)).toEqual(same);
    expect(commandFingerprint({ ...base, value: bytes("w") })).not.toEqual(same);
    expect(commandFingerprint({ ...base, ifRevision: 0 })).not.toEqual(same);
    expect(commandFingerprint({ type: "delete", key: "k" })).not.toEqual(same);
  });
});
