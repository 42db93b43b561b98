/**
 * store-client.ts against a hand-driven pool: what a real server cannot be made to do on
 * cue (a stream cut in the middle of a character).
 */

import { describe, expect, it } from "vitest";
import type { ServerPool } from "./server-pool.js";
import { answer, type ClientCore, type StoreResponse, watchChanges } from "./store-client.js";

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

/** A core whose only stream yields `chunks`, then breaks. */
function coreStreaming(chunks: readonly Uint8Array[]): ClientCore {
  const closing = new AbortController();
  const pool = {
    endpoints: ["http://a"],
    masterEndpoint: () => "http://a",
    next: () => "http://a",
    noteFailure: () => closing.abort(),
    openStream: async () => ({
      ok: true,
      status: 200,
      body: (async function* () {
        yield* chunks;
        throw new Error("connection reset");
      })(),
      close: () => {},
    }),
  } as unknown as ServerPool;
  return {
    pool,
    closing: closing.signal,
    send: async () => {
      throw new Error("not used");
    },
    nextIdempotencyKey: () => "k",
  };
}

describe("store client: decoding", () => {
  it("a watch stream cut inside a character leaves the next answer intact", async () => {
    const event = bytes('data: {"type":"put","key":"k","value":"é","revision":2}\n\n');
    const cut = event.indexOf(0xc3) + 1; // between the two bytes of "é"
    const core = coreStreaming([
      bytes(': watching "k" from revision 2\n\n'),
      event.subarray(0, cut),
    ]);
    const seen: unknown[] = [];
    for await (const change of watchChanges(core, "k")) seen.push(change);
    expect(seen).toEqual([]);
    const response: StoreResponse = {
      ok: true,
      endpoint: "http://a",
      status: 200,
      headers: {},
      body: bytes('{"succeeded":true,"revision":3}'),
    };
    // Before, the stream's decoder was shared: "\uFFFD{…" did not parse.
    expect(answer(response, 200)).toEqual({ succeeded: true, revision: 3 });
  });
});
