/**
 * Property tests of the switchover body parser, which reads untrusted bytes from any
 * client: whatever the body, it answers null (the best-placed backup), a positive member
 * id, or throws ERR_INVALID_INPUT naming a field (ERR_TOO_LARGE for a body over its 256
 * bytes), never anything else; and every valid body means what it says. BATON_FUZZ_RUNS
 * sets the number of inputs per property.
 */

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { InvalidInputError, TooLargeError } from "../shared/errors.js";
import { readSwitchoverTarget } from "./routes/member-routes.js";

const RUNS = Number(process.env.BATON_FUZZ_RUNS ?? 300);
const encoder = new TextEncoder();

/** Most bytes of a switchover body (member-routes.ts). */
const SWITCHOVER_BODY_BYTES_MAX = 256;

/** Runs the parser; fails the property on any outcome but the three allowed. */
function outcome(body: unknown): number | null | "invalid" {
  try {
    const to = readSwitchoverTarget(body);
    if (to !== null && !(Number.isSafeInteger(to) && to >= 1)) throw new Error(`bad id ${to}`);
    return to;
  } catch (error) {
    if (error instanceof InvalidInputError && error.code === "ERR_INVALID_INPUT") {
      return "invalid";
    }
    const large = body instanceof Uint8Array && body.length > SWITCHOVER_BODY_BYTES_MAX;
    if (large && error instanceof TooLargeError && error.limit === SWITCHOVER_BODY_BYTES_MAX) {
      return "invalid";
    }
    throw error;
  }
}

describe("switchover body properties", () => {
  it("fuzz: arbitrary bytes give null, a member id or ERR_INVALID_INPUT", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (body) => {
        outcome(body);
      }),
      { numRuns: RUNS },
    );
  });

  it("fuzz: arbitrary JSON text gives null, a member id or ERR_INVALID_INPUT", () => {
    fc.assert(
      fc.property(fc.json({ maxDepth: 4 }), (text) => {
        outcome(encoder.encode(text));
      }),
      { numRuns: RUNS },
    );
  });

  it("fuzz: objects with a to field of any JSON value are refused unless to is a member id", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 2 }), (to) => {
        const result = outcome(encoder.encode(JSON.stringify({ to })));
        if (to === null) expect(result).toBeNull();
        else if (typeof to === "number" && Number.isSafeInteger(to) && to >= 1) {
          expect(result).toBe(to);
        } else if (result !== "invalid") {
          throw new Error(`accepted ${JSON.stringify(to)} as ${result}`);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it("fuzz: a valid body means what it says, whatever the whitespace", () => {
    const space = fc.constantFrom("", " ", "\n", "\t ", "\r\n");
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 0xffff_ffff }), space, space, (to, a, b) => {
        const body = `${a}{${b}"to"${a}:${b}${to}${a}}${b}`;
        expect(outcome(encoder.encode(body))).toBe(to);
        expect(outcome(encoder.encode(`${a}{${b}}${a}`))).toBeNull();
      }),
      { numRuns: RUNS },
    );
  });

  it("fuzz: a body that is not bytes (no content-type parser ran) means the best backup", () => {
    fc.assert(
      fc.property(fc.anything(), (body) => {
        if (body instanceof Uint8Array) return;
        expect(outcome(body)).toBeNull();
      }),
      { numRuns: RUNS },
    );
  });
});
