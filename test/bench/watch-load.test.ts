/**
 * The store benchmark's cheap watchers (bench/watch-load.ts) count each event's `data:`
 * line once, wherever TCP cut the stream into chunks.
 */

import { describe, expect, it } from "vitest";
import { EventCounter, watchedPrefix } from "../../bench/watch-load.js";

const stream = Buffer.from(
  ': watching "load/b/" from revision 7\n\n' +
    'id: 8.0\ndata: {"type":"put","key":"load/b/1","value":"v","revision":8}\n\n' +
    ": keep-alive\n\n" +
    'id: 9.0\ndata: {"type":"delete","key":"load/b/2","value":null,"revision":9}\n\n' +
    'id: 9.1\ndata: {"type":"put","key":"load/b/3","value":"data: \\n","revision":9}\n\n',
);

describe("bench: watch load", () => {
  it("counts every event once in one chunk, and across every split into two and three chunks", () => {
    const whole = new EventCounter();
    whole.add(stream);
    expect(whole.count).toBe(3);
    for (let a = 0; a <= stream.length; a++) {
      const two = new EventCounter();
      two.add(stream.subarray(0, a));
      two.add(stream.subarray(a));
      expect(two.count, `split at ${a}`).toBe(3);
      for (let b = a; b <= Math.min(stream.length, a + 8); b++) {
        const three = new EventCounter();
        three.add(stream.subarray(0, a));
        three.add(stream.subarray(a, b));
        three.add(stream.subarray(b));
        expect(three.count, `split at ${a} and ${b}`).toBe(3);
      }
    }
  });

  it("gives each watcher its own key's prefix with ownKey, the whole prefix without", () => {
    const spec = { urls: [], watchers: 3, prefix: "load/b/" };
    expect(watchedPrefix(spec, 2)).toBe("load/b/");
    expect(watchedPrefix({ ...spec, ownKey: true }, 2)).toBe("load/b/2.");
    // The dot ends the key: watcher 1's prefix does not take key 10's writes.
    expect("load/b/10.".startsWith(watchedPrefix({ ...spec, ownKey: true }, 1))).toBe(false);
  });
});
