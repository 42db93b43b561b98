/**
 * The simulator's agenda: a min-heap of events ordered by virtual time, ties broken by
 * insertion order so that a run is a pure function of its seed.
 *
 * The order is total (time, then insertion), so any correct heap pops the same sequence.
 * This one keeps times, insertion numbers and events in three parallel arrays rather than
 * one object per entry: a run pushes and pops hundreds of thousands of events, and a
 * comparison then reads two numbers from flat arrays instead of chasing two objects.
 */

export interface Scheduled<T> {
  readonly time: number;
  readonly seq: number;
  readonly event: T;
}

export class EventQueue<T> {
  private readonly times: number[] = [];
  private readonly seqs: number[] = [];
  private readonly events: T[] = [];
  private seq = 0;

  get size(): number {
    return this.times.length;
  }

  push(time: number, event: T): void {
    const { times, seqs, events } = this;
    const seq = this.seq++;
    let i = times.length;
    times.push(time);
    seqs.push(seq);
    events.push(event);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const pt = times[parent]!;
      if (pt < time || (pt === time && seqs[parent]! < seq)) break;
      times[i] = pt;
      seqs[i] = seqs[parent]!;
      events[i] = events[parent]!;
      i = parent;
    }
    times[i] = time;
    seqs[i] = seq;
    events[i] = event;
  }

  peekTime(): number | undefined {
    return this.times[0];
  }

  pop(): Scheduled<T> | undefined {
    const { times, seqs, events } = this;
    const n = times.length;
    if (n === 0) return undefined;
    const top = { time: times[0]!, seq: seqs[0]!, event: events[0]! };
    const time = times.pop()!;
    const seq = seqs.pop()!;
    const event = events.pop()!;
    const size = n - 1;
    if (size === 0) return top;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= size) break;
      const right = child + 1;
      if (
        right < size &&
        (times[right]! < times[child]! ||
          (times[right] === times[child] && seqs[right]! < seqs[child]!))
      ) {
        child = right;
      }
      const ct = times[child]!;
      if (time < ct || (time === ct && seq < seqs[child]!)) break;
      times[i] = ct;
      seqs[i] = seqs[child]!;
      events[i] = events[child]!;
      i = child;
    }
    times[i] = time;
    seqs[i] = seq;
    events[i] = event;
    return top;
  }
}
