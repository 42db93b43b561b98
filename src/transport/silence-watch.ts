/**
 * When a peer has been silent too long on one connection. TCP alone does not tell: a
 * connection whose peer's machine went dark, or whose packets a firewall drops, stays open
 * for as long as the kernel keeps retransmitting (up to about 15 minutes with Linux's
 * defaults while data is unacknowledged), and after the network heals the next
 * retransmission can be two minutes away. So each side proves the other alive: the
 * dialler pings about once a second, and the acceptor answers each ping with a pong and
 * sends one unasked at most once a second while frames arrive (a ping can wait behind
 * megabytes of entries on a slow link; the unasked pongs say that those are being read).
 * A connection on which nothing was heard for `peerSilenceMsMax` is closed and dialled
 * again.
 *
 * Time during which this process itself stood still (a long garbage collection, a blocked
 * event loop) is not held against the peer: what the peer sent meanwhile waits unread in
 * the socket, and the check that runs first after the pause must not close the connection
 * for it.
 */

import { assert } from "../shared/assert.js";
import type { Clock, Timer } from "../shared/clock.js";

export interface SilenceLimits {
  /**
   * How often the dialler pings, and how often each side checks, in milliseconds.
   * @default 1000
   */
  readonly pingIntervalMs: number;
  /**
   * Longest silence from the peer on a connection before it is closed, in milliseconds; a
   * few ping intervals, so that one late pong is not a lost peer.
   * @default 5000
   */
  readonly peerSilenceMsMax: number;
}

export class SilenceWatch {
  private heardAt: number;
  private checkedAt: number;
  private readonly timer: Timer;

  /**
   * Calls `onTick(null)` every `pingIntervalMs`, or `onTick(silentMs)` once the peer has
   * been silent for `peerSilenceMsMax` or more; the caller stops the watch.
   */
  constructor(
    private readonly clock: Clock,
    private readonly limits: SilenceLimits,
    onTick: (silentMs: number | null) => void,
  ) {
    assert(limits.pingIntervalMs < limits.peerSilenceMsMax, "ping interval not below the silence");
    this.heardAt = clock.monotonicMs();
    this.checkedAt = this.heardAt;
    this.timer = clock.setInterval(() => onTick(this.check()), limits.pingIntervalMs);
  }

  /** The peer showed it is alive: it sent something, or it read what was sent to it. */
  heard(): void {
    this.heardAt = this.clock.monotonicMs();
  }

  stop(): void {
    this.clock.clearInterval(this.timer);
  }

  private check(): number | null {
    const now = this.clock.monotonicMs();
    // A tick that comes two intervals late means this process stood still: start over.
    if (now - this.checkedAt > 2 * this.limits.pingIntervalMs) this.heardAt = now;
    this.checkedAt = now;
    const silentMs = now - this.heardAt;
    return silentMs >= this.limits.peerSilenceMsMax ? Math.round(silentMs) : null;
  }
}
