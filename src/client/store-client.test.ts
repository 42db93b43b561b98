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
  };
  return coreOver(pool, closing);
}

/** A core over a hand-driven `pool` (what the watch uses of a ServerPool). */
function coreOver(pool: object, closing: AbortController): ClientCore {
  // No master is learned while these watches run, unless a test says so.
  const quiet = { masterTerm: () => 1, onMasterLearned: () => () => {} };
  return {
    pool: { ...quiet, ...pool } as unknown as ServerPool,
    closing: closing.signal,
    send: async () => {
      throw new Error("not used");
    },
    nextIdempotencyKey: () => "k",
  };
}

describe("store client: watches and answers", () => {
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

  it("a watch its caller stops while it opens does not count against the node", async () => {
    const closing = new AbortController();
    const stop = new AbortController();
    const failures: string[] = [];
    const pool = {
      endpoints: ["http://a"],
      masterEndpoint: () => "http://a",
      next: () => "http://a",
      noteFailure: (endpoint: string) => failures.push(endpoint),
      // The open fails because the caller aborted it, as undici's does.
      openStream: async () => {
        stop.abort();
        return { ok: false, message: "This operation was aborted" };
      },
    };
    const seen: unknown[] = [];
    const core = coreOver(pool, closing);
    for await (const change of watchChanges(core, "k", { signal: stop.signal })) seen.push(change);
    expect(seen).toEqual([]);
    // Before, the master was forgotten: one more status request for the next operation.
    expect(failures).toEqual([]);
  });

  it("a compaction is believed only once every node has said so, not a node asked again", async () => {
    const closing = new AbortController();
    const asked: string[] = [];
    const compacted = () => ({
      ok: true,
      status: 410,
      body: (async function* () {
        yield bytes('{"code":"ERR_COMPACTED","startRevision":9}');
      })(),
      close: () => {},
    });
    const pool = {
      endpoints: ["http://a", "http://b", "http://c"],
      // The client's other requests keep learning that a is the master.
      masterEndpoint: () => "http://a",
      next: () => "http://a",
      noteFailure: () => {},
      openStream: async (endpoint: string) => {
        asked.push(endpoint);
        if (endpoint !== "http://c") return compacted();
        return {
          ok: true,
          status: 200,
          body: (async function* () {
            yield bytes(': watching "k" from revision 2\n\n');
            yield bytes('data: {"type":"put","key":"k","value":"v","revision":2}\n\n');
          })(),
          close: () => {},
        };
      },
    };
    const core = coreOver(pool, closing);
    const seen: unknown[] = [];
    for await (const change of watchChanges(core, "k", { fromRevision: 2 })) {
      seen.push(change);
      closing.abort();
    }
    // Before, three answers from a (asked again and again) made a compaction.
    expect(seen).toEqual([{ type: "put", key: "k", value: "v", revision: 2 }]);
    expect(asked).toEqual(["http://a", "http://b", "http://c"]);
  });

  it("a compaction is believed when every node that can be asked has said so, a node down or not", async () => {
    const closing = new AbortController();
    const asked: string[] = [];
    const pool = {
      endpoints: ["http://a", "http://b", "http://c"],
      masterEndpoint: () => null,
      next: () => "http://c",
      noteFailure: () => {},
      openStream: async (endpoint: string) => {
        asked.push(endpoint);
        // c is down (a machine waiting to be replaced).
        if (endpoint === "http://c") return { ok: false, endpoint, kind: "refused" };
        return {
          ok: true,
          status: 410,
          body: (async function* () {
            yield bytes('{"code":"ERR_COMPACTED","startRevision":9}');
          })(),
          close: () => {},
        };
      },
    };
    const core = coreOver(pool, closing);
    const watching = (async () => {
      for await (const _ of watchChanges(core, "k", { fromRevision: 2 }));
    })();
    // Before, it asked c again and again, for ever: a lock waiter behind it never woke.
    await expect(watching).rejects.toMatchObject({ code: "ERR_COMPACTED", startRevision: 9 });
    expect(asked).toEqual(["http://c", "http://a", "http://b"]);
    closing.abort();
  });
});
