/**
 * The deliberate mistakes `scripts/mutants.ts` applies to a copy of the sources, one at a
 * time, to show that the simulators (or a crash test) catch each. Each names the text it
 * finds and replaces; `test/sim/mutants-apply.test.ts` checks that every one still finds
 * its text in today's sources, so that a refactor cannot quietly turn a mutant into a
 * run of the unchanged code.
 */

export interface Mutant {
  readonly name: string;
  /** The file the mistake is made in; "" for a negative control (see `options`). */
  readonly file: string;
  readonly find: string;
  readonly replace: string;
  /** A second edit of the same file, for a bug that takes two mistakes together. */
  readonly also?: { readonly find: string; readonly replace: string };
  /**
   * Run the whole-node simulator (the production runtime and DiskStorage over the
   * simulated file system) instead of the core simulator: storage and runtime mistakes
   * live in code the core simulator does not run.
   */
  readonly wholeNode?: boolean;
  /**
   * Instead of a simulator, run this test file against the mutant (storage mistakes that
   * the crash-consistency tests of DiskStorage over the simulated file system reach
   * sooner than a whole cluster does).
   */
  readonly test?: string;
  /**
   * Options for the whole-node run, as TypeScript source (a negative control: a deliberate
   * operator mistake the simulator has a switch for, with no source edited).
   */
  readonly options?: string;
}

/** The same mistake, run under the whole-node simulator (named `whole node: …` unless given). */
function underWholeNode(mutant: Mutant, name = `whole node: ${mutant.name}`): Mutant {
  return { ...mutant, name, wholeNode: true };
}

/** The same storage mistake, run by the crash-consistency tests of DiskStorage alone. */
function underCrashTests(mutant: Mutant): Mutant {
  const { wholeNode: _, ...edit } = mutant;
  return {
    ...edit,
    name: `${mutant.name} (DiskStorage alone)`,
    test: "test/storage/sim-crash.test.ts",
  };
}

const IDEMPOTENCY_WINDOW_SHORT: Mutant = {
  name: "forget an idempotency key early (a window a thousandth as long)",
  file: "src/kv/kv-state.ts",
  find: "limits.idempotencyKeyCountMax,\n      limits.idempotencyWindowMs,\n      idempotencyDigest,",
  replace:
    "limits.idempotencyKeyCountMax,\n      Math.ceil(limits.idempotencyWindowMs / 1000),\n      idempotencyDigest,",
};

const IDEMPOTENCY_TABLE_EVICTS: Mutant = {
  name: "a full idempotency table evicts its oldest live key instead of refusing",
  file: "src/kv/kv-state-machine.ts",
  find: 'if (!idempotency.hasRoom(clockMs)) return this.tableFull("idempotency");',
  replace: "if (!idempotency.hasRoom(clockMs)) idempotency.expire(Number.MAX_SAFE_INTEGER, 1);",
};

const SWITCHOVER_EARLY: Mutant = {
  name: "switchover: TimeoutNow before the target holds the log, and its votes skip the log check",
  file: "src/core/replica.ts",
  find: "if (pr === undefined || pr.match < this.log.lastIndex()) return;",
  replace: "if (pr === undefined) return;",
  also: {
    find: "const granted = canVote && this.log.isUpToDate(m.lastIndex, m.lastTerm);",
    replace:
      "const granted = canVote && (m.handover || this.log.isUpToDate(m.lastIndex, m.lastTerm));",
  },
};

const LOG_TIME_LARGEST_STAMP: Mutant = {
  name: "log time is the largest stamp seen (a master clock jump expires every key)",
  file: "src/kv/kv-state-machine.ts",
  find: "state.clockMs += Math.min(Math.max(stepMs, 0), this.limits.logTimeStepMsMax);",
  replace: "state.clockMs = Math.max(state.clockMs, stampMs);",
};

const COMMIT_HINT_UNCLAMPED: Mutant = {
  name: "storage: the commit hint is not clamped to the durable log",
  file: "src/storage/disk-storage.ts",
  find: "const clamped = { ...state, commitIndex: Math.min(state.commitIndex, durable) };",
  replace: "const clamped = { ...state, commitIndex: state.commitIndex + 0 * durable };",
  wholeNode: true,
};

const HARD_STATE_RENAME_UNSYNCED: Mutant = {
  name: "storage: the hard state is renamed into place without an fsync of its directory",
  file: "src/storage/stable-store.ts",
  find: 'await io(this.dir, "fsync directory", () => this.fs.syncDir(this.dir));',
  replace: "",
  wholeNode: true,
};

const RECOVERY_NO_REWRITE: Mutant = {
  name: "storage: recovery syncs the last log segment without writing it again (pages a failed fdatasync left clean)",
  file: "src/storage/wal-recovery.ts",
  find: "if (last !== undefined) await rewriteInPlace(last.handle, last.path, last.bytes);",
  replace: "if (last !== undefined) await rewriteInPlace(last.handle, last.path, 0);",
  wholeNode: true,
};

const TORN_TAIL_UNCHECKED: Mutant = {
  name: "storage: a bad last record is trimmed as a torn tail without looking for valid records after it",
  file: "src/storage/wal-recovery.ts",
  find: "const valid = await validRecordAfter(window, bad, index);",
  replace: "const valid: number | null = null;",
  wholeNode: true,
};

export const MUTANTS: readonly Mutant[] = [
  {
    name: "commit an old term's entry by counting replicas (figure 8)",
    file: "src/core/replica.ts",
    find: "if (this.log.termAt(candidate) !== this.currentTerm) return false;",
    replace: "if (this.log.termAt(candidate) === undefined) return false;",
  },
  {
    name: "grant a vote without the up-to-date log check",
    file: "src/core/replica.ts",
    find: "const granted = canVote && this.log.isUpToDate(m.lastIndex, m.lastTerm);",
    replace: "const granted = canVote;",
  },
  {
    name: "keep a conflicting suffix instead of truncating it",
    file: "src/core/log.ts",
    find: "this.truncateFrom(entry.index);\n        break;",
    replace: "i++;\n        continue;",
  },
  {
    name: "backup commits past the entries it verified against the master",
    file: "src/core/replica.ts",
    find: "log.commitTo(Math.min(m.commitIndex, last));",
    replace: "log.commitTo(Math.min(m.commitIndex, log.lastIndex()));",
  },
  {
    name: "master counts entries not yet on its own disk towards a commit",
    file: "src/core/replica.ts",
    find: "bind && me?.incarnation === 0 && this.incarnation !== 0 ? 0 : this.log.durableIndex(),",
    replace: "bind && me?.incarnation === 0 && this.incarnation !== 0 ? 0 : this.log.lastIndex(),",
  },
  {
    name: "serve a ReadIndex read without confirming mastership with a majority",
    file: "src/core/replica.ts",
    find: "if (acks < this.quorum()) return;",
    replace: "if (acks < 1) return;",
  },
  {
    name: "a node whose data was wiped votes at once (no joining state, no bootstrap gate)",
    file: "src/core/replica.ts",
    find: "!this.joining &&\n      this.gate === null &&\n      (this.vote === m.from",
    replace: "(this.vote === m.from",
  },
  IDEMPOTENCY_WINDOW_SHORT,
  {
    name: "apply a retried write again (the idempotency table is not consulted)",
    file: "src/kv/kv-state-machine.ts",
    find: "if (record !== undefined) {\n      return sameDigest",
    replace: 'if (record !== undefined && command.type === "delete") {\n      return sameDigest',
  },
  IDEMPOTENCY_TABLE_EVICTS,
  SWITCHOVER_EARLY,
  LOG_TIME_LARGEST_STAMP,
  COMMIT_HINT_UNCLAMPED,
  underCrashTests(COMMIT_HINT_UNCLAMPED),
  underCrashTests(HARD_STATE_RENAME_UNSYNCED),
  HARD_STATE_RENAME_UNSYNCED,
  underCrashTests(RECOVERY_NO_REWRITE),
  RECOVERY_NO_REWRITE,
  {
    ...TORN_TAIL_UNCHECKED,
    name: `${TORN_TAIL_UNCHECKED.name} (DiskStorage tests)`,
    wholeNode: false,
    test: "test/storage/disk-storage.test.ts",
  },
  TORN_TAIL_UNCHECKED,
  {
    name: "storage: a new log segment is renamed into place without an fsync of its directory",
    file: "src/storage/wal.ts",
    find: 'await io(path, "rename", () => fs.rename(temporary, path));\n      await this.syncDir();',
    replace: 'await io(path, "rename", () => fs.rename(temporary, path));',
    wholeNode: true,
  },
  {
    // The node stops on ERR_STORAGE_IO (ENOENT) and recovers cleanly: caught only because
    // no fault injected into its disk explains the error.
    name: "storage: a compaction deletes the log segments it covers but keeps them in its list (the next one stops the node on ENOENT)",
    file: "src/storage/wal.ts",
    find: "for (const segment of this.segments.splice(0, count)) await this.deleteSegment(segment);",
    replace:
      "for (const segment of this.segments.slice(0, count)) await this.deleteSegment(segment);",
    wholeNode: true,
  },
  {
    name: "runtime: a Ready's messages (acknowledgements, votes) and replies leave before its fsync",
    file: "src/server/node.ts",
    find: "if (synced !== null) await synced;\n      this.finish(ready, messages);",
    replace: "this.finish(ready, messages);\n      if (synced !== null) await synced;",
    wholeNode: true,
  },
  {
    name: "runtime: committed entries are applied before the Ready is persisted",
    file: "src/server/node.ts",
    find: "    this.sendAll(messages);\n    this.apply(ready.committed);",
    replace: "    this.sendAll(messages);",
    also: {
      find: "    for (const event of ready.events) this.onCoreEvent(event);\n",
      replace:
        "    for (const event of ready.events) this.onCoreEvent(event);\n    this.apply(ready.committed);\n",
    },
    wholeNode: true,
  },
  underWholeNode(LOG_TIME_LARGEST_STAMP),
  {
    name: "whole node: a backup serves a linearizable read from its own state, without asking the master for a read index",
    file: "src/server/node.ts",
    find: 'if (this.replica.role !== "master") return this.forwarder.read();',
    replace: 'if (this.replica.role !== "master") return Promise.resolve();',
    wholeNode: true,
  },
  {
    name: "whole node: a keep-alive renews a lease for half its time to live",
    file: "src/kv/lease-table.ts",
    find: "lease.expiresAtMs = nowMs + lease.ttlMs;",
    replace: "lease.expiresAtMs = nowMs + Math.floor(lease.ttlMs / 2);",
    wholeNode: true,
  },
  {
    name: "whole node: a watch that resumes more than 8 revisions back is refused as compacted",
    file: "src/kv/prefix-watch.ts",
    find: "  if (!started.ok) return { ok: false, fromRevision, startRevision: started.startRevision };",
    replace:
      "  if (started.ok && fromRevision < source.revision() - 8) started.cancel();\n  if (!started.ok || fromRevision < source.revision() - 8) return { ok: false, fromRevision, startRevision: started.ok ? source.revision() : started.startRevision };",
    wholeNode: true,
  },
  {
    name: "whole node: a lease past its deadline is never ended, its keys stay",
    file: "src/kv/kv-state-machine.ts",
    find: "for (const lease of due) this.endLease(lease, index);",
    replace: "for (const lease of due) void lease;",
    wholeNode: true,
  },
  {
    name: "whole node: a lease is granted half the time to live asked for, and says so",
    file: "src/kv/kv-state-machine.ts",
    find: "return this.leaseResult(leases.grant(index, ttlMs, clockMs + ttlMs));",
    replace:
      "return this.leaseResult(leases.grant(index, Math.ceil(ttlMs / 2), clockMs + Math.ceil(ttlMs / 2)));",
    wholeNode: true,
  },
  {
    name: "whole node: a backup's proposals fail with a TypeError instead of reaching the master",
    file: "src/server/node.ts",
    find: 'if (this.replica.role !== "master") return this.forwarder.propose(command);',
    replace:
      'if (this.replica.role !== "master") return Promise.reject(new TypeError("forwarding is broken"));',
    wholeNode: true,
  },
  {
    name: "whole node: a backup's proposals fail with one of the API's own errors (ERR_INVALID_INPUT) instead of reaching the master",
    file: "src/server/node.ts",
    find: 'if (this.replica.role !== "master") return this.forwarder.propose(command);',
    replace:
      'if (this.replica.role !== "master") return Promise.reject(new InvalidInputError("command", "forwarding is broken"));',
    wholeNode: true,
  },
  underWholeNode(IDEMPOTENCY_TABLE_EVICTS),
  {
    name: "whole node: a watch from now starts one revision late (the next change is skipped)",
    file: "src/kv/prefix-watch.ts",
    find: "const fromRevision = request.fromRevision ?? source.revision() + 1;",
    replace: "const fromRevision = request.fromRevision ?? source.revision() + 2;",
    wholeNode: true,
  },
  {
    name: "whole node: a transaction applies only its first operation",
    file: "src/kv/kv-state-machine.ts",
    find: 'for (const op of ops) {\n      if (op.type === "put") this.setKey',
    replace: 'for (const op of ops.slice(0, 1)) {\n      if (op.type === "put") this.setKey',
    wholeNode: true,
  },
  {
    name: "whole node: a prefix delete deletes only the first key",
    file: "src/kv/kv-state-machine.ts",
    find: "() => true);\n    for (const key of keys) this.removeKey(key, index);",
    replace: "() => true);\n    for (const key of keys.slice(0, 1)) this.removeKey(key, index);",
    wholeNode: true,
  },
  underWholeNode(SWITCHOVER_EARLY),
  {
    name: "whole node: a master counts acknowledgements from any incarnation of a member",
    file: "src/core/replica.ts",
    find: "return member.incarnation === 0 || member.incarnation === incarnation;",
    replace: "return member.incarnation >= 0 || member.incarnation === incarnation;",
    wholeNode: true,
  },
  {
    name: "whole node: a voter that forgot a removed member's link refuses it when it comes back with a new incarnation",
    file: "src/server/node.ts",
    find: "if (incarnation === 0 || incarnation === gone.incarnation) {",
    replace: "if (gone.incarnation >= 0) {",
    wholeNode: true,
  },
  {
    name: "whole node, calm: a backup's heartbeat responses wait behind its fsyncs (a slow disk costs the master its check-quorum)",
    file: "src/server/node.ts",
    find: 'const unbound = message.type === "heartbeat_response" && message.term <= this.durableTerm;',
    replace:
      'const unbound = false && message.type === "heartbeat_response" && message.term <= this.durableTerm;',
    wholeNode: true,
    options: "{ calm: true }",
  },
  {
    name: "whole node: a snapshot receiver appends a chunk it already holds (a duplicated chunk)",
    file: "src/storage/snapshot-store.ts",
    find: "if (offset > received || offset + chunk.length <= received) return received;\n    await this.writer.append(chunk.subarray(received - offset));",
    replace: "if (offset > received) return received;\n    await this.writer.append(chunk);",
    wholeNode: true,
  },
  {
    name: "whole node: a state transfer's sender never reads its snapshot's checksum (a damaged file is sent through, again and again)",
    file: "src/server/state-transfer.ts",
    find: "if (!out.readToEnd && out.sentBytes + out.buffer.length >= out.totalBytes) {",
    replace: "if (false && out.sentBytes + out.buffer.length >= out.totalBytes) {",
    wholeNode: true,
  },
  {
    name: "whole node: a candidate counts a vote again when its answer arrives twice",
    file: "src/core/replica.ts",
    find: "    this.votes.set(m.from, m.granted);\n    let granted = 1;",
    replace:
      "    const again = this.votes.get(m.from) === true && m.granted ? 1 : 0;\n    this.votes.set(m.from, m.granted);\n    let granted = 1 + again;",
    wholeNode: true,
  },
  {
    name: "whole node: watch: a watch leaves out the whole revision it starts or resumes from (resumes from revision + 1)",
    file: "src/kv/prefix-watch.ts",
    find: "if (change.revision === this.fromRevision && this.skip > 0) {",
    replace: "if (change.revision === this.fromRevision && this.skip >= 0) {",
    wholeNode: true,
  },
  {
    name: "whole node: watch: a resumed watch skips one change too few of the revision it resumes from",
    file: "src/kv/prefix-watch.ts",
    find: "if (change.revision === this.fromRevision && this.skip > 0) {",
    replace: "if (change.revision === this.fromRevision && this.skip > 1) {",
    wholeNode: true,
  },
  {
    name: "whole node: watch: a restore keeps the watches open (they never see the changes the snapshot skipped)",
    file: "src/kv/change-history.ts",
    find: "    const listeners = [...this.listeners];\n    this.listeners.clear();\n    for (const listener of listeners) listener.reset();",
    replace: "",
    wholeNode: true,
  },
  {
    name: "whole node: watch: a master applies its entries before they are committed (its watches deliver changes a fail-over may discard)",
    file: "src/core/replica.ts",
    find: "while (this.applied < this.log.commitIndex) {",
    replace:
      'while (this.applied < (this.currentRole === "master" ? this.log.lastIndex() : this.log.commitIndex)) {',
    wholeNode: true,
  },
  {
    name: "whole node: watch: a transaction whose compare failed shows its success branch to watches (changes never made)",
    file: "src/kv/kv-state-machine.ts",
    find: "const ops: readonly TxnOp[] = succeeded ? command.success : command.failure;",
    replace:
      'const ops: readonly TxnOp[] = succeeded ? command.success : command.failure;\n    for (const op of succeeded ? [] : command.success) if (op.type === "put") this.history.record({ type: "put", key: op.key, value: op.value, revision: index });',
    wholeNode: true,
  },
  {
    name: "whole node: session: a retry of a session's last request is applied again (its seq compared with lastSeq - 1)",
    file: "src/kv/kv-state-machine.ts",
    find: "} else if (session.seq === record.lastSeq) {",
    replace: "} else if (session.seq === record.lastSeq - 1) {",
    wholeNode: true,
  },
  {
    name: "whole node: stop: a node that stops fails its own proposals as 'shutting down' (they may still be applied)",
    file: "src/server/node.ts",
    find: "        p.reject(inDoubt);",
    replace: "        p.reject(error);",
    wholeNode: true,
  },
  {
    name: "whole node: stop: a node that stops fails the forwards it sent as 'shutting down' (the master may still apply them)",
    file: "src/server/forwarder.ts",
    find: 'proposal.state.kind === "held" ? error : this.indeterminate(`${why} before it answered`),',
    replace: "error,",
    wholeNode: true,
  },
  {
    name: "whole node: forwarding: a forward whose master was replaced before it answered is called not applied (ERR_NO_MASTER)",
    file: "src/server/forwarder.ts",
    find: "        this.indeterminate(`master ${state.to} was replaced before it answered`),",
    replace: "        this.noMaster(),",
    wholeNode: true,
  },
  {
    // The whole-node simulator found this once in 252,000 seeds (2194466) and misses the
    // mutant in 3,000: a refused copy must meet a master that proposes the other copy.
    // The runtime test delivers the copies on cue.
    name: "runtime: forwarding: a master proposes a copy of a forward it has answered already (a network that delivers a message twice)",
    file: "src/server/node.ts",
    find: "      this.counters.forwardCopies++;\n      this.sendForwardAnswer(from, requestId, given);\n      return;\n",
    replace: "      this.counters.forwardCopies++;\n",
    test: "src/server/node.test.ts",
  },
  {
    name: "whole node (negative control): a node whose data was lost restarts empty without --join or a replacement",
    file: "",
    find: "",
    replace: "",
    wholeNode: true,
    options: '{ negativeControl: "no_join" }',
  },
  underWholeNode(IDEMPOTENCY_WINDOW_SHORT, `${IDEMPOTENCY_WINDOW_SHORT.name}, whole node`),
];
