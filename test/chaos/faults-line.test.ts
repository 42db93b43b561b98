/**
 * The summary's faults line counts the faults that ran; a window that did not finish (a
 * refused switchover, a kill that found no process) is named apart, as the `faults`
 * verdict judges it, not counted as run.
 */

import { describe, expect, it } from "vitest";
import { faultsLine } from "../../src/chaos/campaign.js";

describe("chaos summary", () => {
  it("summary: the faults line counts the faults that ran and names those that did not finish apart", () => {
    expect(faultsLine({ faults: { split: 2, "kill-master": 1 }, unfinishedFaults: {} })).toBe(
      "  faults: split 2, kill-master 1",
    );
    expect(
      faultsLine({ faults: { split: 1 }, unfinishedFaults: { switchover: 2, "kill-any": 1 } }),
    ).toBe("  faults: split 1; not finished: switchover 2, kill-any 1");
    expect(faultsLine({ faults: {}, unfinishedFaults: { switchover: 1 } })).toBe(
      "  faults: none; not finished: switchover 1",
    );
  });
});
