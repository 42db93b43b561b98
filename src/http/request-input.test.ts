import { describe, expect, it } from "vitest";
import { defaultKvLimits } from "../kv/index.js";
import { InvalidInputError } from "../shared/errors.js";
import { InputLimitError } from "./error-status.js";
import {
  readKey,
  readStale,
  readWriteOptions,
  validationError,
  wantsOctetStream,
} from "./request-input.js";

const limits = defaultKvLimits();

describe("http request input", () => {
  it("keys: counts UTF-8 bytes, not characters (2-, 3- and 4-byte characters)", () => {
    expect(readKey({ "*": "é".repeat(512) }, limits)).toHaveLength(512);
    expect(readKey({ "*": "€".repeat(341) }, limits)).toHaveLength(341);
    expect(readKey({ "*": "😀".repeat(256) }, limits)).toHaveLength(512);
    expect(() => readKey({ "*": `${"😀".repeat(256)}x` }, limits)).toThrow(InputLimitError);
    expect(() => readKey({ "*": "€".repeat(342) }, limits)).toThrow(/1026 bytes/);
  });

  it("keys: refuses empty keys and C0, DEL and C1 control characters", () => {
    for (const key of ["", "a\u0000", "\tb", "a\u007f", "a\u0085", "a\ud800", "\udc00b"]) {
      expect(() => readKey({ "*": key }, limits), JSON.stringify(key)).toThrow(InvalidInputError);
    }
    expect(readKey({ "*": "a b/c?d#e\u00a0" }, limits)).toBe("a b/c?d#e\u00a0");
  });

  it("write options: If-Match quoted or bare, If-None-Match *, Idempotency-Key as is", () => {
    expect(readWriteOptions({})).toEqual({});
    expect(readWriteOptions({ "if-match": '"12"' })).toEqual({ ifRevision: 12 });
    expect(readWriteOptions({ "if-match": "0" })).toEqual({ ifRevision: 0 });
    expect(readWriteOptions({ "if-none-match": "*" })).toEqual({ ifRevision: 0 });
    expect(readWriteOptions({ "idempotency-key": '"quoted-key"' })).toEqual({
      idempotencyKey: '"quoted-key"',
    });
    expect(() => readWriteOptions({ "if-match": "9999999999999999" })).toThrow(/safe integer/);
    expect(() => readWriteOptions({ "if-match": '"1"', "if-none-match": "*" })).toThrow(/not both/);
  });

  it("stale: true, 1 and the bare flag read the local copy; false, 0 and absence do not", () => {
    expect(["true", "1", ""].map((stale) => readStale({ stale }))).toEqual([true, true, true]);
    expect([{ stale: "false" }, { stale: "0" }, {}].map(readStale)).toEqual([false, false, false]);
  });

  it("accept: octet-stream wins only when named before JSON", () => {
    expect(wantsOctetStream(undefined)).toBe(false);
    expect(wantsOctetStream("*/*")).toBe(false);
    expect(wantsOctetStream("application/octet-stream")).toBe(true);
    expect(wantsOctetStream("application/octet-stream, application/json")).toBe(true);
    expect(wantsOctetStream("application/json, application/octet-stream")).toBe(false);
  });

  it("validation: schema failures name the header or query field", () => {
    expect(validationError("/if-match", "headers", limits)).toMatchObject({ field: "If-Match" });
    expect(validationError("/stale", "querystring", limits)).toMatchObject({ field: "stale" });
    const small = { ...limits, idempotencyKeyBytesMax: 64 };
    const idempotency = validationError("/idempotency-key", "headers", small);
    expect(idempotency).toMatchObject({ field: "Idempotency-Key", limit: 64 });
    expect(idempotency.message).toMatch(/1 to 64 visible ASCII/);
    expect(validationError("", "params", limits)).toMatchObject({ field: "params" });
  });
});
