/**
 * The virtual network between simulated nodes. It decides, from the seeded generator,
 * what happens to each message: delivered after a delay, lost, duplicated, or delayed
 * long enough to be reordered. Links are directional, so one-way partitions are
 * expressible; a message on a link that is cut when it would arrive is lost, as on a real
 * network whose connection was reset.
 */

import type { Prng } from "../core/prng.js";
import type { NodeId } from "../protocol/messages.js";

export interface NetworkFaults {
  /** Probability that a message is lost. */
  readonly loss: number;
  /** Probability that a message is delivered twice. */
  readonly duplicate: number;
  /** Probability that a message is held back long enough to overtake later ones. */
  readonly reorder: number;
  /** Normal one-way delay range, in virtual milliseconds. */
  readonly delayMsMin: number;
  readonly delayMsMax: number;
  /** Extra delay of a reordered message, at most. */
  readonly reorderDelayMsMax: number;
}

export const NO_FAULTS: NetworkFaults = Object.freeze({
  loss: 0,
  duplicate: 0,
  reorder: 0,
  delayMsMin: 0.1,
  delayMsMax: 1,
  reorderDelayMsMax: 0,
});

export class SimNetwork {
  faults: NetworkFaults = NO_FAULTS;
  /** Cut directional links, as "from->to". */
  private readonly cut = new Set<string>();
  sent = 0;
  dropped = 0;
  duplicated = 0;

  constructor(private readonly prng: Prng) {}

  /** The delivery delays of one message: none when it is lost, two when duplicated. */
  plan(from: NodeId, to: NodeId): number[] {
    this.sent++;
    if (this.isCut(from, to) || this.prng.chance(this.faults.loss)) {
      this.dropped++;
      return [];
    }
    const delays = [this.delay()];
    if (this.prng.chance(this.faults.duplicate)) {
      this.duplicated++;
      delays.push(this.delay());
    }
    return delays;
  }

  private delay(): number {
    const f = this.faults;
    let delay = f.delayMsMin + this.prng.next() * (f.delayMsMax - f.delayMsMin);
    if (this.prng.chance(f.reorder)) delay += this.prng.next() * f.reorderDelayMsMax;
    return delay;
  }

  isCut(from: NodeId, to: NodeId): boolean {
    // Asked for every message sent and delivered: no key is built while nothing is cut.
    return this.cut.size > 0 && this.cut.has(`${from}->${to}`);
  }

  cutLink(from: NodeId, to: NodeId): void {
    this.cut.add(`${from}->${to}`);
  }

  /** Cuts both directions between every node of `a` and every node of `b`. */
  partition(a: readonly NodeId[], b: readonly NodeId[]): void {
    for (const x of a) {
      for (const y of b) {
        this.cutLink(x, y);
        this.cutLink(y, x);
      }
    }
  }

  healLink(from: NodeId, to: NodeId): void {
    this.cut.delete(`${from}->${to}`);
  }

  healAll(): void {
    this.cut.clear();
  }

  cutLinks(): string[] {
    return [...this.cut].sort();
  }
}
