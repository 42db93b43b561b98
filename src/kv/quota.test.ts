import { describe, expect, it } from "vitest";
import { encodeCommand, type KvCommand, type KvResult } from "./commands.js";
import { KvStateMachine } from "./kv-state-machine.js";

const text = (value: string): Uint8Array => new TextEncoder().encode(value);

function quotaMachine(
  keyCountMax: number,
  bytesMax: number,
): {
  sm: KvStateMachine;
  apply: (command: KvCommand) => KvResult;
} {
  const sm = new KvStateMachine();
  let index = 0;
  const apply = (command: KvCommand): KvResult =>
    sm.apply(encodeCommand(command), { index: ++index, term: 1, time: index });
  expect(apply({ type: "set_quota", keyCountMax, bytesMax }).ok).toBe(true);
  return { sm, apply };
}

const put = (key: string, value: string, extra: Partial<KvCommand> = {}): KvCommand =>
  ({ type: "put", key, value: text(value), ...extra }) as KvCommand;

describe("kv quota", () => {
  it("quota: a put of a new key past the keys quota is refused, a replacement is not (keys 2)", () => {
    const { sm, apply } = quotaMachine(2, 0);
    expect(apply(put("a", "1")).ok).toBe(true);
    expect(apply(put("b", "1")).ok).toBe(true);
    expect(apply(put("c", "1"))).toEqual({
      ok: false,
      code: "quota_exceeded",
      quota: "keys",
      limit: 2,
    });
    expect(sm.get("c")).toBeNull();
    expect(apply(put("a", "much longer")).ok).toBe(true);
    expect(apply({ type: "delete", key: "b" }).ok).toBe(true);
    expect(apply(put("c", "1")).ok).toBe(true);
  });

  it("quota: bytes count keys and values; a shrinking write and a delete always work (bytes 10)", () => {
    const { sm, apply } = quotaMachine(0, 10);
    expect(apply(put("ab", "12345678")).ok).toBe(true); // 2 + 8 = 10
    expect(sm.bytes).toBe(10);
    expect(apply(put("ab", "123456789"))).toMatchObject({ code: "quota_exceeded", quota: "bytes" });
    expect(apply(put("c", ""))).toMatchObject({
      code: "quota_exceeded",
      quota: "bytes",
      limit: 10,
    });
    expect(apply(put("ab", "1")).ok).toBe(true);
    expect(sm.bytes).toBe(3);
    expect(apply(put("é", "12345")).ok).toBe(true); // "é" is 2 bytes of UTF-8
    expect(sm.bytes).toBe(10);
    expect(apply({ type: "delete_range", prefix: "a" })).toMatchObject({ ok: true, deleted: 1 });
    expect(sm.bytes).toBe(7);
  });

  it("quota: a lowered quota refuses growth only; everything shrinking still works", () => {
    const { sm, apply } = quotaMachine(0, 0);
    for (const k of ["a", "b", "c"]) expect(apply(put(k, "xxxx")).ok).toBe(true);
    apply({ type: "set_quota", keyCountMax: 1, bytesMax: 5 });
    expect(sm.quota).toEqual({ keyCountMax: 1, bytesMax: 5 });
    expect(apply(put("a", "xxxxx"))).toMatchObject({ code: "quota_exceeded", quota: "bytes" });
    expect(apply(put("a", "x")).ok).toBe(true);
    expect(apply(put("d", "x"))).toMatchObject({ code: "quota_exceeded", quota: "keys" });
    expect(apply({ type: "delete", key: "b" }).ok).toBe(true);
  });

  it("quota: a transaction is judged by its net effect and refused as a whole", () => {
    const { sm, apply } = quotaMachine(2, 0);
    apply(put("a", "1"));
    apply(put("b", "1"));
    const swap: KvCommand = {
      type: "txn",
      compare: [],
      success: [
        { type: "delete", key: "a" },
        { type: "put", key: "c", value: text("1") },
      ],
      failure: [],
    };
    expect(apply(swap)).toMatchObject({ ok: true, succeeded: true });
    const grow: KvCommand = {
      type: "txn",
      compare: [],
      success: [
        { type: "put", key: "b", value: text("2") },
        { type: "put", key: "d", value: text("1") },
      ],
      failure: [],
    };
    expect(apply(grow)).toMatchObject({ code: "quota_exceeded", quota: "keys" });
    expect(sm.get("b")?.value).toEqual(text("1"));
  });

  it("quota: a refusal is not recorded, so the same idempotency key or seq applies later", () => {
    const { apply } = quotaMachine(1, 0);
    apply(put("a", "1"));
    const keyed = put("b", "1", { idempotencyKey: "k" });
    expect(apply(keyed)).toMatchObject({ code: "quota_exceeded" });
    const session = put("c", "1", { session: { clientId: "s", seq: 1 } });
    expect(apply(session)).toMatchObject({ code: "quota_exceeded" });
    apply({ type: "delete", key: "a" });
    expect(apply(keyed).ok).toBe(true);
    apply({ type: "delete", key: "b" });
    expect(apply(session).ok).toBe(true);
  });

  it("quota: a replica restored from a snapshot keeps the quota and the usage", () => {
    const { sm, apply } = quotaMachine(3, 100);
    apply(put("a", "123"));
    const copy = new KvStateMachine();
    copy.restoreChunks(sm.snapshotChunks());
    expect(copy.quota).toEqual({ keyCountMax: 3, bytesMax: 100 });
    expect(copy.bytes).toBe(4);
    expect(copy.stateHash()).toBe(sm.stateHash());
  });
});
