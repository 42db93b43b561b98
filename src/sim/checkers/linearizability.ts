/**
 * The linearizability checker for key-value client histories. It owns one question: could
 * every operation that a client saw complete have taken effect atomically at some instant
 * between its invocation and its completion, in one order that a single register per key
 * would accept? It never repairs, reorders or guesses at a history; a malformed history
 * is a bug in whoever recorded it and fails an assertion.
 *
 * Keys are independent registers, so each key is checked on its own (P-compositionality,
 * Herlihy & Wing 1990; Horn & Kroening 2015), which keeps the search small. Per key the
 * search is Wing & Gong's with Lowe's improvements ("Testing for linearizability", Lowe
 * 2017), as in Porcupine: invocations and completions form one time-ordered entry list;
 * the search linearizes an operation just in time by lifting its invocation and completion
 * out of the list, backtracks through a stack when it meets a completion whose operation
 * it could not place, and memoises every (set of linearized operations, register value)
 * configuration so that no configuration is explored twice.
 *
 * Indeterminate ("info") operations may or may not have taken effect, so they complete at
 * +infinity and never have to be linearized. Left alone, each pending one would double the
 * configurations, so three rules narrow the search, each of which keeps at least one
 * linearization whenever any exists: a configuration with fewer of them linearized dominates
 * the same configuration with more, and the memo prunes dominated ones (completed operations
 * are tried first so that dominating configurations tend to come first); interchangeable
 * ones are placed in invocation order only (`CompiledOp.classPrevSlot`); and one is placed
 * only when the very next operation could not have run without it (`Search.place`).
 */

import { assert, unreachable } from "../../shared/assert.js";

/** One operation on one key's register; what it returned is in `HistoryOp.output`. */
export type KvOp =
  /** Output: the value read, or null when the key was absent. */
  | { kind: "read" }
  /** Output: ignored. */
  | { kind: "write"; value: string }
  /** Output: whether the key existed, or undefined when the client does not know. */
  | { kind: "delete" }
  /** Sets `value` only if the current value equals `expected`. Output: whether it did. */
  | { kind: "cas"; expected: string | null; value: string };

/**
 * ok: the operation took effect and its output is known. fail: it definitely did not take
 * effect. info: it may or may not have taken effect, and its output is unknown.
 */
export type Outcome = "ok" | "fail" | "info";

/** One client operation as the client saw it. */
export interface HistoryOp {
  /** Unique within the history. */
  id: number;
  /** The process that issued it; used only to describe operations in explanations. */
  client: number;
  key: string;
  op: KvOp;
  /** When the client invoked it, in any monotonic unit shared by the whole history. */
  invokedAt: number;
  /** When the client saw it complete; null when it never did. Ignored for `info`. */
  completedAt: number | null;
  outcome: Outcome;
  /** Required for ok reads (string or null) and ok cas (boolean); optional for ok deletes. */
  output?: string | null | boolean;
  /**
   * What the whole-node simulator knows besides (revision-order.ts): the order of the
   * invocation and of the completion among all the run's events, the store revision an ok
   * read was served at, and the name (idempotency key or session and seq) of a write.
   */
  invokedSeq?: number;
  completedSeq?: number;
  servedRevision?: number;
  writeName?: string;
  /**
   * Set on a write that ended unanswered although every answer it got, under every key it
   * was sent with, said it was not applied (acknowledged.ts): it must have changed nothing.
   */
  refusedNotApplied?: boolean;
}

/** The verdict for one key. */
export interface KeyVerdict {
  key: string;
  /**
   * True only when the search found a linearization: false when the history is definitely
   * not linearizable, and false too when the search was capped (`timedOut`), because a
   * history that could not be checked has not passed.
   */
  ok: boolean;
  /** Operations checked: the key's operations minus failed ones and indeterminate reads. */
  opCount: number;
  /** Configurations the search stored; the measure that `maxStatesPerKey` bounds. */
  stateCount: number;
  /**
   * Set when the search hit `maxStatesPerKey` and gave up: whether the key is linearizable
   * is unknown, so `ok` is false, and the explanation starts "search capped".
   */
  timedOut?: boolean;
  /** Why the key is not linearizable, or why its verdict is unknown. */
  explanation?: string;
}

export interface LinearizabilityResult {
  /** True only when every key was shown linearizable (none failed, none was capped). */
  ok: boolean;
  /** One verdict per key that occurs in the history, sorted by key. */
  keys: KeyVerdict[];
  /** True when the search gave up on at least one key, which then counts as failed. */
  timedOut: boolean;
}

export interface LinearizabilityOptions {
  /**
   * The most configurations the search may store for one key before it gives up and
   * reports the key as capped, which fails it. Memory grows with it: each configuration
   * holds a bitset of the key's operations.
   * @default 1_000_000
   */
  maxStatesPerKey?: number;
}

export const maxStatesPerKeyDefault = 1_000_000;

/**
 * Checks that `history` is linearizable for a store of independent registers, one per key,
 * each initially absent (null). Failed operations are ignored, indeterminate ones complete
 * at +infinity with unconstrained output, and a completion at the same instant as another
 * operation's invocation counts as concurrent with it, so that coarse clocks cannot produce
 * false alarms. Throws AssertionError on a malformed history.
 */
export function checkLinearizable(
  history: readonly HistoryOp[],
  options: LinearizabilityOptions = {},
): LinearizabilityResult {
  const maxStates = options.maxStatesPerKey ?? maxStatesPerKeyDefault;
  assert(
    Number.isInteger(maxStates) && maxStates >= 1,
    "maxStatesPerKey must be a positive integer",
  );
  const ids = new Set<number>();
  const byKey = new Map<string, HistoryOp[]>();
  for (const entry of history) {
    validateOp(entry);
    assert(!ids.has(entry.id), `operation id ${entry.id} occurs twice`);
    ids.add(entry.id);
    const ops = byKey.get(entry.key);
    if (ops === undefined) byKey.set(entry.key, [entry]);
    else ops.push(entry);
  }
  const keys = [...byKey.keys()].sort();
  const verdicts = keys.map((key) => checkKey(key, byKey.get(key) ?? [], maxStates));
  return {
    ok: verdicts.every((verdict) => verdict.ok),
    keys: verdicts,
    timedOut: verdicts.some((verdict) => verdict.timedOut === true),
  };
}

function validateOp(entry: HistoryOp): void {
  const where = `operation ${entry.id}`;
  assert(Number.isFinite(entry.invokedAt), `${where}: invokedAt is not a finite number`);
  if (entry.outcome !== "ok") return;
  // Only completed operations constrain the search, so only they must be well formed.
  const completedAt = entry.completedAt;
  assert(completedAt !== null, `${where}: ok but never completed`);
  assert(Number.isFinite(completedAt), `${where}: completedAt is not a finite number`);
  assert(completedAt >= entry.invokedAt, `${where}: completed before it was invoked`);
  const output = entry.output;
  switch (entry.op.kind) {
    case "read":
      assert(output === null || typeof output === "string", `${where}: ok read without a value`);
      return;
    case "cas":
      assert(typeof output === "boolean", `${where}: ok cas without a boolean output`);
      return;
    case "delete":
      assert(output === undefined || typeof output === "boolean", `${where}: bad delete output`);
      return;
    case "write":
      return;
    default:
      unreachable(entry.op, `${where}: unknown operation kind`);
  }
}

/**
 * What an operation demands of the register and does to it. Values are interned per key
 * as small integers (see `valueInterner`), so the model state is one integer.
 */
type Step =
  | "read" // requires value a
  | "write" // sets a
  | "delete-any" // sets absent
  | "delete-existed" // requires present, sets absent
  | "delete-absent" // requires absent
  | "cas-ok" // requires a, sets b
  | "cas-failed" // requires anything but a
  | "cas-maybe"; // indeterminate: requires a, sets b (a mismatch would have had no effect)

interface CompiledOp {
  readonly source: HistoryOp;
  readonly step: Step;
  readonly a: number;
  readonly b: number;
  /** Indeterminate: completes at +infinity and need not be linearized at all. */
  readonly info: boolean;
  /** Bit index among the key's completed operations, or among its indeterminate ones. */
  readonly slot: number;
  /**
   * For an indeterminate operation, the slot of the latest earlier-invoked indeterminate
   * operation with the same compiled step and values (its class), or `noSlot`. Members of
   * a class are interchangeable once invoked, so the search places them in invocation
   * order only: any linearization can be renamed into one that does, since an operation
   * invoked earlier may stand wherever a later one stood. Without this, k equivalent lost
   * writes would multiply the configurations by up to 2^k.
   */
  readonly classPrevSlot: number;
}

interface KeyModel {
  readonly ops: CompiledOp[];
  readonly okCount: number;
  readonly infoCount: number;
  /** Value id to a printable value; see `valueInterner`. */
  readonly valueNames: string[];
}

const absent = 0;
const unobserved = 1;
const noSlot = -1;
const illegal = -1;
/** A configuration's `prior` when its latest operation was not indeterminate. */
const noPrior = -1;

/** Returns the register value after `op` runs on `state`, or `illegal` if its output forbids it. */
function applyStep(op: CompiledOp, state: number): number {
  switch (op.step) {
    case "read":
      return state === op.a ? state : illegal;
    case "write":
      return op.a;
    case "delete-any":
      return absent;
    case "delete-existed":
      return state !== absent ? absent : illegal;
    case "delete-absent":
      return state === absent ? absent : illegal;
    case "cas-ok":
    case "cas-maybe":
      return state === op.a ? op.b : illegal;
    case "cas-failed":
      return state !== op.a ? state : illegal;
    default:
      return unreachable(op.step);
  }
}

function compileKey(ops: readonly HistoryOp[]): KeyModel {
  // Failed operations did not happen, and an indeterminate read neither changed the
  // register nor reported anything, so neither can constrain the order.
  const kept = ops
    .filter((op) => op.outcome !== "fail" && !(op.outcome === "info" && op.op.kind === "read"))
    .sort((x, y) => x.invokedAt - y.invokedAt || x.id - y.id);
  const intern = valueInterner(kept);
  let okCount = 0;
  let infoCount = 0;
  const classTail = new Map<string, number>();
  const compiled = kept.map((source): CompiledOp => {
    const info = source.outcome === "info";
    const slot = info ? infoCount++ : okCount++;
    const { step, a, b } = compileStep(source, info, intern.id);
    let classPrevSlot = noSlot;
    if (info) {
      const operationClass = `${step} ${a} ${b}`;
      classPrevSlot = classTail.get(operationClass) ?? noSlot;
      classTail.set(operationClass, slot);
    }
    return { source, step, a, b, info, slot, classPrevSlot };
  });
  return { ops: compiled, okCount, infoCount, valueNames: intern.names };
}

/**
 * Interns values as small integers: 0 is null (absent) and 1 stands for every value that
 * no operation observes, meaning no completed read returned it and no cas compares with it.
 * Nothing can tell two such values apart, so merging them loses nothing and lets the memo
 * and the operation classes (see `CompiledOp.classPrevSlot`) recognise equivalent orders.
 */
function valueInterner(ops: readonly HistoryOp[]): {
  id: (value: string | null) => number;
  names: string[];
} {
  const observed = new Set<string>();
  for (const op of ops) {
    if (op.op.kind === "cas" && op.op.expected !== null) observed.add(op.op.expected);
    if (op.outcome === "ok" && op.op.kind === "read" && typeof op.output === "string") {
      observed.add(op.output);
    }
  }
  const names = ["null", "a value no operation observes"];
  const ids = new Map<string, number>();
  const id = (value: string | null): number => {
    if (value === null) return absent;
    if (!observed.has(value)) return unobserved;
    let known = ids.get(value);
    if (known === undefined) {
      known = names.length;
      names.push(formatValue(value));
      ids.set(value, known);
    }
    return known;
  };
  return { id, names };
}

function compileStep(
  source: HistoryOp,
  info: boolean,
  intern: (value: string | null) => number,
): { step: Step; a: number; b: number } {
  const op = source.op;
  switch (op.kind) {
    case "read":
      return { step: "read", a: intern(source.output as string | null), b: 0 };
    case "write":
      return { step: "write", a: intern(op.value), b: 0 };
    case "delete": {
      const existed = info ? undefined : source.output;
      const step =
        existed === undefined ? "delete-any" : existed ? "delete-existed" : "delete-absent";
      return { step, a: 0, b: 0 };
    }
    case "cas": {
      const step = info ? "cas-maybe" : source.output === true ? "cas-ok" : "cas-failed";
      return { step, a: intern(op.expected), b: intern(op.value) };
    }
    default:
      return unreachable(op);
  }
}

/**
 * A completed operation that observed a value no operation that may have taken effect ever
 * wrote cannot be linearized anywhere. Finding it up front gives a sharper explanation than
 * the search would, and it is the commonest symptom of a failed write's effect leaking.
 */
function findUnwrittenObservation(model: KeyModel): string | null {
  const written = new Set<number>([absent]);
  for (const op of model.ops) {
    if (op.step === "write") written.add(op.a);
    if (op.step === "cas-ok" || op.step === "cas-maybe") written.add(op.b);
  }
  for (const op of model.ops) {
    if ((op.step === "read" || op.step === "cas-ok") && !written.has(op.a)) {
      const value = model.valueNames[op.a] ?? "an unknown value";
      const observed = op.step === "read" ? "read" : "compared equal to";
      return (
        `${describeOp(op.source)} ${observed} ${value}, which no operation on this key that ` +
        "may have taken effect ever wrote"
      );
    }
  }
  return null;
}

/**
 * The time-ordered list of invocations and completions that the search walks. Entry 0 is
 * the head sentinel and `end` marks the tail. Indeterminate operations have no completion
 * entry: they complete at +infinity, after everything else.
 */
interface EntryList {
  readonly op: Int32Array;
  readonly isCall: Uint8Array;
  /** For an invocation, its completion entry, or `end` when it has none. */
  readonly match: Int32Array;
  readonly next: Int32Array;
  readonly prev: Int32Array;
}

const head = 0;
const end = -1;

function buildEntryList(model: KeyModel): EntryList {
  const events: Array<{ time: number; isCall: boolean; op: number }> = [];
  model.ops.forEach((op, index) => {
    events.push({ time: op.source.invokedAt, isCall: true, op: index });
    if (!op.info) events.push({ time: op.source.completedAt ?? 0, isCall: false, op: index });
  });
  // At equal times invocations come first, which makes the two operations concurrent.
  events.sort((x, y) => x.time - y.time || Number(y.isCall) - Number(x.isCall) || x.op - y.op);
  const size = events.length + 1;
  const list: EntryList = {
    op: new Int32Array(size),
    isCall: new Uint8Array(size),
    match: new Int32Array(size).fill(end),
    next: new Int32Array(size),
    prev: new Int32Array(size),
  };
  const callEntry = new Int32Array(model.ops.length);
  events.forEach((event, index) => {
    const entry = index + 1;
    list.op[entry] = event.op;
    list.isCall[entry] = event.isCall ? 1 : 0;
    list.prev[entry] = entry - 1;
    list.next[entry - 1] = entry;
    if (event.isCall) callEntry[event.op] = entry;
    else list.match[callEntry[event.op]!] = entry;
  });
  list.next[size - 1] = end;
  return list;
}

/** Removes an invocation and its completion from the list (dancing links: O(1)). */
function lift(list: EntryList, entry: number): void {
  unlink(list, entry);
  const completion = list.match[entry]!;
  if (completion !== end) unlink(list, completion);
}

/** Undoes the most recent `lift`; lifts must be undone in reverse order. */
function unlift(list: EntryList, entry: number): void {
  const completion = list.match[entry]!;
  if (completion !== end) relink(list, completion);
  relink(list, entry);
}

function unlink(list: EntryList, entry: number): void {
  const prev = list.prev[entry]!;
  const next = list.next[entry]!;
  list.next[prev] = next;
  if (next !== end) list.prev[next] = prev;
}

function relink(list: EntryList, entry: number): void {
  const next = list.next[entry]!;
  list.next[list.prev[entry]!] = entry;
  if (next !== end) list.prev[next] = entry;
}

function hasBit(bits: Uint32Array, slot: number): boolean {
  return (bits[slot >>> 5]! & (1 << (slot & 31))) !== 0;
}

/** A 32-bit finaliser (from MurmurHash3) that spreads nearby integers apart. */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) | 0;
}

/**
 * The memo of configurations the search has entered. A configuration is the set of
 * completed operations linearized (hashed incrementally, Zobrist style), the register
 * value, the set of indeterminate operations linearized, and the `prior` that limits what
 * may come next (see `Search.place`); a configuration entered under that limit has been
 * explored only in part, so it cannot stand in for the same one entered without it. The
 * memo keeps them in flat typed arrays rather than one object each, because a hard key can
 * need a million of them.
 */
class ConfigCache {
  count = 0;
  private capacity = 1024;
  private heads = new Int32Array(2048).fill(end);
  private hashes = new Int32Array(this.capacity);
  private states = new Int32Array(this.capacity);
  private priors = new Int32Array(this.capacity);
  private chain = new Int32Array(this.capacity);
  private okArena: Uint32Array;
  private infoArena: Uint32Array;

  constructor(
    private readonly okWords: number,
    private readonly infoWords: number,
  ) {
    this.okArena = new Uint32Array(this.capacity * okWords);
    this.infoArena = new Uint32Array(this.capacity * infoWords);
  }

  /**
   * True when a stored configuration has the same completed operations and value, a
   * subset of the indeterminate operations, and no stricter `prior`. Such
   * a configuration can do everything this one can, because indeterminate operations are
   * optional, and it has been or is being explored, so exploring this one cannot find
   * anything new.
   */
  isDominated(
    hash: number,
    state: number,
    prior: number,
    ok: Uint32Array,
    info: Uint32Array,
  ): boolean {
    for (let i = this.heads[hash & (this.heads.length - 1)]!; i !== end; i = this.chain[i]!) {
      if (this.hashes[i] !== hash || this.states[i] !== state) continue;
      if (this.priors[i] !== noPrior && this.priors[i] !== prior) continue;
      if (this.sameOk(i, ok) && this.infoSubset(i, info)) return true;
    }
    return false;
  }

  insert(hash: number, state: number, prior: number, ok: Uint32Array, info: Uint32Array): void {
    if (this.count === this.capacity) this.grow();
    const i = this.count++;
    this.hashes[i] = hash;
    this.states[i] = state;
    this.priors[i] = prior;
    this.okArena.set(ok, i * this.okWords);
    this.infoArena.set(info, i * this.infoWords);
    const bucket = hash & (this.heads.length - 1);
    this.chain[i] = this.heads[bucket]!;
    this.heads[bucket] = i;
  }

  private sameOk(i: number, ok: Uint32Array): boolean {
    const base = i * this.okWords;
    for (let w = 0; w < this.okWords; w++) if (this.okArena[base + w] !== ok[w]) return false;
    return true;
  }

  private infoSubset(i: number, info: Uint32Array): boolean {
    const base = i * this.infoWords;
    for (let w = 0; w < this.infoWords; w++) {
      if ((this.infoArena[base + w]! & ~info[w]!) !== 0) return false;
    }
    return true;
  }

  private grow(): void {
    this.capacity *= 2;
    this.hashes = resized(this.hashes, this.capacity);
    this.states = resized(this.states, this.capacity);
    this.priors = resized(this.priors, this.capacity);
    this.chain = resized(this.chain, this.capacity);
    this.okArena = resized(this.okArena, this.capacity * this.okWords);
    this.infoArena = resized(this.infoArena, this.capacity * this.infoWords);
    // Keep the buckets at most half full so that chains stay short.
    this.heads = new Int32Array(this.capacity * 2).fill(end);
    const mask = this.heads.length - 1;
    for (let i = 0; i < this.count; i++) {
      const bucket = this.hashes[i]! & mask;
      this.chain[i] = this.heads[bucket]!;
      this.heads[bucket] = i;
    }
  }
}

function resized<T extends Int32Array | Uint32Array>(array: T, length: number): T {
  const copy = new (array.constructor as new (length: number) => T)(length);
  copy.set(array);
  return copy;
}

/** How far the search got: what explains a violation. */
interface Progress {
  /** Completed operations linearized in the deepest configuration that got stuck. */
  okCount: number;
  /** The register value there. */
  state: number;
  /** The operation whose completion the search could not get past. */
  blocked: number;
  /** The last few operations linearized before it, oldest first. */
  placed: number[];
}

type SearchVerdict = "linearizable" | "violation" | "timeout";

const placedShownMax = 3;

/** One key's depth-first search. */
class Search {
  private readonly okBits: Uint32Array;
  private readonly infoBits: Uint32Array;
  private readonly zobrist: Int32Array;
  private readonly cache: ConfigCache;
  private readonly stackEntry: Int32Array;
  private readonly stackState: Int32Array;
  private depth = 0;
  private okHash = 0;
  private okLinearized = 0;
  private state = absent;
  progress: Progress | null = null;

  constructor(
    private readonly model: KeyModel,
    private readonly list: EntryList,
    private readonly maxStates: number,
  ) {
    this.okBits = new Uint32Array(Math.ceil(model.okCount / 32));
    this.infoBits = new Uint32Array(Math.ceil(model.infoCount / 32));
    this.zobrist = new Int32Array(model.okCount).map((_, slot) => mix32(slot + 1));
    this.cache = new ConfigCache(this.okBits.length, this.infoBits.length);
    this.stackEntry = new Int32Array(model.ops.length);
    this.stackState = new Int32Array(model.ops.length);
    this.cache.insert(this.configHash(absent), absent, noPrior, this.okBits, this.infoBits);
  }

  get stateCount(): number {
    return this.cache.count;
  }

  /**
   * Walks the entry list from the head. At an invocation it tries to linearize the
   * operation there; at a completion, whose operation it has not linearized, it is stuck
   * and backtracks. Completed operations are tried before indeterminate ones: each pass
   * over the candidates tries the completed ones first, and only a pass that reaches a
   * completion goes round again for the indeterminate ones.
   */
  run(): SearchVerdict {
    if (this.model.okCount === 0) return "linearizable";
    const { list, model } = this;
    let cur = list.next[head]!;
    let infoPass = false;
    for (;;) {
      // Every completed operation has a completion entry, so reaching the end means all
      // of them were linearized; `place` reports that before it can happen.
      assert(cur !== end, "search ran past the end of the entry list");
      if (list.isCall[cur] === 0) {
        if (!infoPass && model.infoCount > 0) {
          infoPass = true;
          cur = list.next[head]!;
          continue;
        }
        this.noteStuck(cur);
        if (this.depth === 0) return "violation";
        const undone = this.undo();
        infoPass = model.ops[list.op[undone]!]!.info;
        cur = list.next[undone]!;
        continue;
      }
      if (model.ops[list.op[cur]!]!.info === infoPass) {
        const placed = this.place(cur);
        if (placed === "timeout") return "timeout";
        if (placed === "placed") {
          if (this.okLinearized === model.okCount) return "linearizable";
          infoPass = false;
          cur = list.next[head]!;
          continue;
        }
      }
      cur = list.next[cur]!;
    }
  }

  /**
   * Linearizes the operation invoked at `entry` if its output allows, the result is new,
   * and the order is canonical: an indeterminate operation placed in value `prior` must be
   * followed at once by an operation that could not have run in `prior`. That loses no
   * linearization. Were the follower legal in `prior` as well, then either it ends in the
   * same value from both (a write, a delete, or a successful cas, whose match means the
   * indeterminate operation kept `prior`), and dropping the indeterminate operation still
   * linearizes, or it leaves the value alone (a read, a failed cas, a delete of an absent
   * key), and swapping the two still linearizes. Each such step places fewer indeterminate
   * operations or places one later, so repeating it ends in a linearization with no such
   * pair. Without this rule a pending indeterminate operation could be tried before every
   * operation that follows its invocation, however irrelevant.
   */
  private place(entry: number): "placed" | "rejected" | "timeout" {
    const op = this.model.ops[this.list.op[entry]!]!;
    if (op.classPrevSlot !== noSlot && !hasBit(this.infoBits, op.classPrevSlot)) return "rejected";
    const prior = this.prior();
    if (prior !== noPrior && applyStep(op, prior) !== illegal) return "rejected";
    const next = applyStep(op, this.state);
    if (next === illegal) return "rejected";
    const nextPrior = op.info ? this.state : noPrior;
    this.flip(op);
    const hash = this.configHash(next);
    if (this.cache.isDominated(hash, next, nextPrior, this.okBits, this.infoBits)) {
      this.flip(op);
      return "rejected";
    }
    if (this.cache.count >= this.maxStates) {
      this.flip(op);
      return "timeout";
    }
    this.cache.insert(hash, next, nextPrior, this.okBits, this.infoBits);
    this.stackEntry[this.depth] = entry;
    this.stackState[this.depth] = this.state;
    this.depth++;
    this.state = next;
    lift(this.list, entry);
    return "placed";
  }

  /** The value before the latest operation if that was indeterminate, else `noPrior`. */
  private prior(): number {
    if (this.depth === 0) return noPrior;
    const top = this.model.ops[this.list.op[this.stackEntry[this.depth - 1]!]!]!;
    return top.info ? this.stackState[this.depth - 1]! : noPrior;
  }

  /** Pops the most recent linearization and returns its invocation entry. */
  private undo(): number {
    this.depth--;
    const entry = this.stackEntry[this.depth]!;
    this.state = this.stackState[this.depth]!;
    this.flip(this.model.ops[this.list.op[entry]!]!);
    unlift(this.list, entry);
    return entry;
  }

  /** Adds `op` to the linearized set, or removes it if it is there. */
  private flip(op: CompiledOp): void {
    const bits = op.info ? this.infoBits : this.okBits;
    const word = op.slot >>> 5;
    bits[word] = bits[word]! ^ (1 << (op.slot & 31));
    if (op.info) return;
    this.okHash ^= this.zobrist[op.slot]!;
    this.okLinearized += hasBit(this.okBits, op.slot) ? 1 : -1;
  }

  private configHash(state: number): number {
    return mix32(this.okHash ^ Math.imul(state + 1, 0x9e3779b1));
  }

  private noteStuck(completion: number): void {
    if (this.progress !== null && this.progress.okCount >= this.okLinearized) return;
    const placed: number[] = [];
    for (let i = Math.max(0, this.depth - placedShownMax); i < this.depth; i++) {
      placed.push(this.list.op[this.stackEntry[i]!]!);
    }
    const blocked = this.list.op[completion]!;
    this.progress = { okCount: this.okLinearized, state: this.state, blocked, placed };
  }
}

function checkKey(key: string, ops: readonly HistoryOp[], maxStates: number): KeyVerdict {
  const model = compileKey(ops);
  const opCount = model.ops.length;
  const unwritten = findUnwrittenObservation(model);
  if (unwritten !== null) return { key, ok: false, opCount, stateCount: 0, explanation: unwritten };
  const search = new Search(model, buildEntryList(model), maxStates);
  const verdict = search.run();
  const stateCount = search.stateCount;
  switch (verdict) {
    case "linearizable":
      return { key, ok: true, opCount, stateCount };
    case "timeout": {
      // A search that gave up proved nothing: passing the key would let any history that
      // is hard enough to search through unchecked, and those are the suspicious ones.
      const explanation =
        `search capped: cannot prove linearizable (the search stored ${stateCount} ` +
        `configurations, maxStatesPerKey, over ${opCount} operations without finding a ` +
        "linearization or ruling one out)";
      return { key, ok: false, opCount, stateCount, timedOut: true, explanation };
    }
    case "violation": {
      assert(search.progress !== null, "a violation without a point where the search got stuck");
      const explanation = explainViolation(model, search.progress);
      return { key, ok: false, opCount, stateCount, explanation };
    }
    default:
      return unreachable(verdict);
  }
}

function explainViolation(model: KeyModel, progress: Progress): string {
  const blocked = model.ops[progress.blocked]!.source;
  const value = model.valueNames[progress.state] ?? "an unknown value";
  const placed = progress.placed.map((index) => describeOp(model.ops[index]!.source));
  const after =
    placed.length === 0 ? "" : `; the last operations placed were ${placed.join(", then ")}`;
  return (
    `not linearizable: the longest linearizable prefix found places ${progress.okCount} of ` +
    `${model.okCount} completed operations and leaves the key holding ${value}${after}. ` +
    `After it, no order lets ${describeOp(blocked)} take effect before it completed.`
  );
}

function describeOp(entry: HistoryOp): string {
  const completed =
    entry.outcome === "ok" ? `completed ${entry.completedAt}` : "completion unknown";
  return (
    `op ${entry.id} (client ${entry.client}, ${describeAction(entry)}, ` +
    `invoked ${entry.invokedAt}, ${completed})`
  );
}

function describeAction(entry: HistoryOp): string {
  const op = entry.op;
  const known = entry.outcome === "ok";
  switch (op.kind) {
    case "read":
      return known ? `read ${formatValue(entry.output as string | null)}` : "read";
    case "write":
      return `write ${formatValue(op.value)}${known ? "" : " (indeterminate)"}`;
    case "delete":
      if (!known) return "delete (indeterminate)";
      if (entry.output === undefined) return "delete";
      return `delete (key ${entry.output ? "existed" : "was absent"})`;
    case "cas": {
      const result = !known ? "indeterminate" : entry.output ? "succeeded" : "failed";
      return `cas ${formatValue(op.expected)} -> ${formatValue(op.value)} ${result}`;
    }
    default:
      return unreachable(op);
  }
}

const shownValueLengthMax = 40;

function formatValue(value: string | null): string {
  if (value === null) return "null";
  const shown =
    value.length > shownValueLengthMax ? `${value.slice(0, shownValueLengthMax)}…` : value;
  return JSON.stringify(shown);
}
