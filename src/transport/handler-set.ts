/**
 * A list of event handlers shared by the transport implementations. It owns subscription
 * and dispatch only. Dispatch iterates over a snapshot, so a handler may unsubscribe
 * itself or others while an event is being delivered; a handler that throws is a bug and
 * its exception propagates to the caller.
 */

import type { Unsubscribe } from "./transport.js";

export class HandlerSet<Args extends unknown[]> {
  private handlers: ((...args: Args) => void)[] = [];

  add(handler: (...args: Args) => void): Unsubscribe {
    // Wrapping gives each subscription its own identity, so adding one function twice
    // and unsubscribing once removes exactly one of them.
    const entry = (...args: Args): void => handler(...args);
    this.handlers = [...this.handlers, entry];
    return () => {
      this.handlers = this.handlers.filter((existing) => existing !== entry);
    };
  }

  emit(...args: Args): void {
    for (const handler of this.handlers) handler(...args);
  }

  clear(): void {
    this.handlers = [];
  }
}
