/**
 * The simulator's tiny key-value state machine: string keys and values, read through
 * ReadIndex, written through the log, with a session table per client so that a request
 * retried after a fail-over is answered from its first result instead of being applied
 * again (dissertation §6.3). Deliberately small: the product's store lives in src/kv.
 */

export type SimOp =
  | { readonly kind: "write"; readonly key: string; readonly value: string }
  | {
      readonly kind: "cas";
      readonly key: string;
      readonly expected: string | null;
      readonly value: string;
    };

export interface SimCommand {
  readonly client: number;
  readonly seq: number;
  readonly op: SimOp;
}

/** `stale`: an older request of a client that has already moved on; it is not applied. */
export type SimResult =
  | { readonly ok: true; readonly output: boolean | null }
  | { readonly ok: false; readonly reason: "stale" };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeCommand(command: SimCommand): Uint8Array {
  return encoder.encode(JSON.stringify(command));
}

export function decodeCommand(data: Uint8Array): SimCommand {
  return JSON.parse(decoder.decode(data)) as SimCommand;
}

export class SimKv {
  private readonly values = new Map<string, string>();
  private readonly sessions = new Map<number, { seq: number; result: SimResult }>();

  /** An independent copy: the simulator's snapshots are copies of the state. */
  clone(): SimKv {
    const copy = new SimKv();
    for (const [k, v] of this.values) copy.values.set(k, v);
    for (const [c, s] of this.sessions) copy.sessions.set(c, s);
    return copy;
  }

  get(key: string): string | null {
    return this.values.get(key) ?? null;
  }

  apply(command: SimCommand): SimResult {
    const session = this.sessions.get(command.client);
    if (session !== undefined && command.seq === session.seq) return session.result;
    if (session !== undefined && command.seq < session.seq) return { ok: false, reason: "stale" };
    const result = this.execute(command.op);
    this.sessions.set(command.client, { seq: command.seq, result });
    return result;
  }

  private execute(op: SimOp): SimResult {
    if (op.kind === "write") {
      this.values.set(op.key, op.value);
      return { ok: true, output: null };
    }
    if ((this.values.get(op.key) ?? null) !== op.expected) return { ok: true, output: false };
    this.values.set(op.key, op.value);
    return { ok: true, output: true };
  }

  /** A canonical rendering of the whole state, equal on replicas that applied the same log. */
  fingerprint(): string {
    const keys = [...this.values.keys()].sort();
    const clients = [...this.sessions.keys()].sort((a, b) => a - b);
    return JSON.stringify([
      keys.map((k) => [k, this.values.get(k)]),
      clients.map((c) => [c, this.sessions.get(c)!.seq]),
    ]);
  }
}
