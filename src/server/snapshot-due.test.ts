import { describe, expect, it } from "vitest";
import { snapshotDue } from "./node.js";

/** The indexes at which node `id` snapshots while applying 1..`last`, from a snapshot at `from`. */
function snapshotsOf(id: number, entries: number, from: number, last: number): number[] {
  const taken: number[] = [];
  let snapshot = from;
  for (let applied = from + 1; applied <= last; applied++) {
    if (snapshotDue(applied, snapshot, entries, id)) {
      taken.push(applied);
      snapshot = applied;
    }
  }
  return taken;
}

describe("snapshot phases", () => {
  it("snapshots: a steady node snapshots every `entries` entries, at an index of its own phase", () => {
    for (const id of [1, 2, 3, 4, 5, 17]) {
      const taken = snapshotsOf(id, 10_000, 0, 100_000);
      const gaps = taken.slice(1).map((index, i) => index - taken[i]!);
      // The first snapshot waits for half an interval, which may put it after its phase;
      // the second is at its phase, and from there every gap is one interval.
      expect(taken[0]!, `node ${id}'s first`).toBeGreaterThanOrEqual(5_000);
      expect(taken[0]!, `node ${id}'s first`).toBeLessThanOrEqual(10_000);
      expect(gaps[0]!, `node ${id}: ${gaps}`).toBeLessThanOrEqual(10_000);
      expect(
        gaps.slice(1).every((gap) => gap === 10_000),
        `node ${id}: ${gaps}`,
      ).toBe(true);
    }
  });

  it("snapshots: three or five members take theirs at indexes a fifth of the interval apart or more", () => {
    for (const ids of [
      [1, 2, 3],
      [1, 2, 3, 4, 5],
    ]) {
      const phases = ids.map((id) => snapshotsOf(id, 10_000, 0, 30_000).at(-1)! % 10_000);
      const sorted = [...phases].sort((a, b) => a - b);
      const gaps = sorted.map((p, i) => (sorted[(i + 1) % sorted.length]! - p + 10_000) % 10_000);
      const minimum = ids.length === 3 ? 2_000 : 1_400;
      expect(Math.min(...gaps), `phases ${phases}`).toBeGreaterThanOrEqual(minimum);
    }
  });

  it("snapshots: after a snapshot at any index (a state transfer, a restart), the next comes within half to one interval", () => {
    for (const id of [1, 2, 3]) {
      for (let from = 0; from < 2_000; from += 37) {
        const [next] = snapshotsOf(id, 1_000, from, from + 2_000);
        expect(next! - from, `node ${id} from ${from}`).toBeGreaterThanOrEqual(500);
        expect(next! - from, `node ${id} from ${from}`).toBeLessThanOrEqual(1_000);
      }
    }
  });

  it("snapshots: an interval of one entry snapshots at every entry", () => {
    expect(snapshotsOf(2, 1, 0, 5)).toEqual([1, 2, 3, 4, 5]);
  });
});
