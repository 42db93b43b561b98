/**
 * The whole-node simulator: the production node, storage and key-value store over the
 * simulated file system, network and clock. A seed replays byte for byte, a real timer or
 * file operation started by code under simulation fails the run, and a batch of seeds is safe, live and
 * linearizable with every fault the nemesis has.
 */

import { stat } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { runWholeNode } from "../../src/sim/whole-node.js";

describe("whole-node simulator", () => {
  it("sim --whole-node: a seed replays exactly (same trace, same history, same end state)", async () => {
    // Seed 48 replaces a member, steps a wall clock, switches over, pauses a node,
    // reads ranges, stops a node as SIGTERM does, sends writes refused as not applied again
    // under new keys, and has watchers that resume on other nodes, so the replay covers the
    // operator, the store's clients and the watchers too.
    const a = await runWholeNode(48, { trace: true });
    const b = await runWholeNode(48, { trace: true });
    expect(a.ok, a.violation).toBe(true);
    expect(a.trace.length).toBeGreaterThan(20);
    expect(b.trace).toEqual(a.trace);
    expect(b.operations).toBe(a.operations);
    expect(b.commitIndex).toBe(a.commitIndex);
    expect(b.messages).toBe(a.messages);
    expect(b.checks).toEqual(a.checks);
    expect(a.checks?.["member replacements"]).toBeGreaterThan(0);
    expect(a.checks?.["watch resumes"]).toBeGreaterThan(0);
    expect(a.checks?.["graceful stops"]).toBeGreaterThan(0);
    expect(a.checks?.["writes sent anew after a definite refusal"]).toBeGreaterThan(0);
  }, 60_000);

  it("sim --whole-node: a real timer started under simulation fails the run", async () => {
    let leaked = false;
    const r = await runWholeNode(5, {
      faultPhaseMs: 500,
      onStep: (now) => {
        if (now > 100 && !leaked) {
          leaked = true;
          setTimeout(() => {}, 0);
        }
      },
    });
    expect(r.ok).toBe(false);
    expect(r.violation).toMatch(
      /real I\/O or timers leaked into the simulation: Timeout at .*whole-node\.test\.ts/,
    );
  }, 60_000);

  it("sim --whole-node: a real file operation started under simulation fails the run, named with --trace", async () => {
    const leakAt = (trace: boolean) => {
      let leaked = false;
      return runWholeNode(5, {
        faultPhaseMs: 500,
        trace,
        onStep: (now) => {
          if (now > 100 && !leaked) {
            leaked = true;
            void stat(import.meta.dirname);
          }
        },
      });
    };
    const fast = await leakAt(false);
    expect(fast.ok).toBe(false);
    expect(fast.violation).toMatch(
      /leaked into the simulation: 1 more FSReqPromise than before \(replay the seed with --trace/,
    );
    const traced = await leakAt(true);
    expect(traced.violation).toMatch(
      /leaked into the simulation: FSREQPROMISE at .*whole-node\.test\.ts/,
    );
  }, 60_000);

  it("sim --whole-node: ten seeds exercise every fault kind, crash recovery, corruption refusal, state transfer, membership changes, leases, range reads and watches", async () => {
    const faults: Record<string, number> = {};
    const checks: Record<string, number> = {};
    const totals = { crashes: 0, corrupt: 0, torn: 0, operations: 0, transfers: 0, failovers: 0 };
    for (let seed = 1; seed <= 10; seed++) {
      const r = await runWholeNode(seed);
      expect(r.ok, `seed ${seed}: ${r.violation}`).toBe(true);
      for (const [k, v] of Object.entries(r.faults)) faults[k] = (faults[k] ?? 0) + v;
      for (const [k, v] of Object.entries(r.checks ?? {})) checks[k] = (checks[k] ?? 0) + v;
      totals.crashes += r.crashes;
      totals.corrupt += r.corruptionsDetected;
      totals.torn += r.tornWrites;
      totals.operations += r.operations;
      totals.transfers += r.transfers;
      totals.failovers += r.failovers;
    }
    for (const kind of [
      "crash",
      "crash_master",
      "isolate",
      "split",
      "one_way",
      "flip_bit",
      "read_error",
      "eio",
      "wipe",
      "pause",
      "clock_jump",
      "switchover",
      "member_cycle",
    ]) {
      expect(faults[kind], kind).toBeGreaterThan(0);
    }
    for (const check of [
      "member replacements",
      "lease expiries checked",
      "range reads checked",
      "duplicated messages",
      "watch changes checked",
      "watch resumes",
    ]) {
      expect(checks[check], check).toBeGreaterThan(0);
    }
    expect(totals.crashes).toBeGreaterThan(10);
    expect(totals.corrupt).toBeGreaterThan(0);
    expect(totals.torn).toBeGreaterThan(0);
    expect(totals.failovers).toBeGreaterThan(0);
    expect(totals.operations).toBeGreaterThan(200);
  }, 120_000);

  it("sim --whole-node: faults aimed at state transfers reach the runtime's aborts (a stalled transfer, a lost connection, a receiver's failed write) and the runs stay green", async () => {
    // A simulated store's transfer is over in milliseconds; the nemesis alone, a fault
    // every few hundred, never met one (V8 coverage of 1,000 seeds: no abort ran).
    const traces: string[] = [];
    for (const seed of [20, 311]) {
      const r = await runWholeNode(seed, { trace: true });
      expect(r.ok, `seed ${seed}: ${r.violation}`).toBe(true);
      expect(r.faults.mid_transfer, `seed ${seed}`).toBeGreaterThan(0);
      traces.push(r.trace.join("\n"));
    }
    const all = traces.join("\n");
    expect(all).toMatch(/state transfer to node \d+ aborted: no progress/);
    expect(all).toMatch(/state transfer to node \d+ aborted: connection lost/);
    expect(all).toMatch(/receiving a snapshot failed/);
  }, 60_000);

  it("sim --whole-node: regression seeds stay green", async () => {
    // 323: a backup's answer to a state transfer was lost; every later transfer of the same
    // snapshot was "not needed" and its core never answered again, so the master sent it
    // forever and the backup never got another entry (a livelock of the production
    // StateTransfer, which the core simulator, with its own transfer, could not see).
    // Seeds draw other runs once the scenario changes; src/server/state-transfer.test.ts
    // and src/server/node.test.ts pin the bugs themselves.
    // 517, 845: a node paused while writing its own snapshot got a newer one by state
    // transfer meanwhile; its own then finished older, and the store's assertion stopped it.
    // 2423: the same pause, with the node's own snapshot finishing first: it compacted to
    // the adopted transfer's index before storage had installed that snapshot.
    // 311: a node adopted a snapshot by state transfer taken after a learner's promotion,
    // then restarted: the identity file's configuration (the last config entry it applied
    // itself) stood in for the snapshot's, and to that node the promoted member stayed a
    // learner for good. Adopting a snapshot now writes its configuration there too.
    // 8, 16, 18: a watcher resumed on a node that had not yet applied up to its revision and
    // got the older changes again as that node caught up (src/kv/prefix-watch.test.ts pins it).
    // 794, 1170: a node crashed before its first write reached the disk, after a master had
    // heard from it; restarted on a directory holding only its identity, it waited in the
    // bootstrap gate forever (its peers listed that incarnation: neither welcome nor
    // bound). It now refuses, naming `baton member replace`, and its operator replaces it.
    // 1383: a node's save of a configuration to its identity file failed (EIO) while its
    // snapshot covering that config entry was stored anyway; restarted, it took the older
    // configuration the identity file held for the current one. A snapshot is now stored
    // only once the identity file holds every config entry it covers.
    // 1501, 4698: a voter cut off while a member was removed and added back under its id
    // forgot the link to it once the removal committed; the member, back with a new
    // incarnation, became master, and the voter refused it forever, since its own log did
    // not list it yet. It now links again to a removed id that calls with a new incarnation.
    // 2402, 9238: the nemesis took a node's disk while a member no master had ever heard
    // from was still behind its bootstrap gate (it had applied nothing, which "about what
    // the master committed" let through at index 2): two of three without their state. A
    // simulator rule, not a node's bug: the nemesis now waits until every node applied.
    // 22797: the simulator's operator, replacing node 2, took a master cut off in a
    // minority (which did not list node 2 yet) for the cluster's, asked it to add node 2
    // again with a new incarnation, and then waited forever for the cluster, which listed
    // the first one, to list the second. It now goes on with any incarnation it asked for.
    // 213044: node 1 kept a latent read error its restart had not read, then node 3's disk
    // failed: two of three without their data, and the operator silently dropped the second
    // replacement. The nemesis now waits until no node holds unread damage.
    // 423270: the same refusal, by a voter that crashed before it applied node 2's removal
    // (its log held the new configuration, uncommitted as far as it knew): restarted, it
    // knew node 2 only from the command line, so when it forgot the link it did not know
    // which incarnation had been removed, and refused every one, the master's included. A
    // node now starts knowing each member the last configuration it saved listed.
    // 655582: a node crashed 15 ms after it adopted a snapshot by state transfer taken
    // after a learner's promotion: the snapshot was durable, the identity file's save of its
    // configuration (queued after it) was not, so the node restarted on the new snapshot
    // with the configuration from before, and the promoted member stayed a learner to it.
    // The identity file now holds a transferred snapshot's configuration before the
    // snapshot is made durable.
    // 301295, 302916: state transfers in chunks of 512 and 64 bytes over a network that
    // loses and reorders; each chunk the backup skipped made the master start the whole
    // snapshot again, and a learner was never promoted, a backup never caught up. The
    // master now sends the chunks in flight again from the gap.
    // 917249: a switchover to node 1 lapsed with its TimeoutNow still in the network; node
    // 1 was then removed, and the TimeoutNow reached it once it held the configuration
    // without it: it ran, the voters answered a switchover's vote request, and a non-voter
    // won (an assertion). A node that is not a voter now ignores TimeoutNow.
    // 1177807: the checker's own: a member's replacement began after the heal (its node
    // had refused to start on a damaged disk), and two fsyncs that stalled 2 s each (the
    // disk's kind, not a fault that ends) kept the new member from starting within the
    // 5 s in which every node had to agree on a master, while the other two had one all
    // along. The others must agree in 5 s; the replaced member now has until 15 s.
    // 1316868: node 2 restarted with a configuration that listed node 4, then adopted by
    // state transfer a snapshot whose configuration had removed it (the operator replacing
    // node 4 while node 2 was down). The node learned its members' incarnations only from
    // configurations it applied and from saved ones it no longer listed, so node 4 was in
    // neither: when node 2 forgot the link it did not know which incarnation was removed,
    // refused every one, and never followed node 4, the new node under that id, once it
    // became master. A node now starts knowing every member its configuration lists.
    // 1391507: the checker's own, as 1177807: the member being replaced had started 3 ms
    // before the 5 s deadline (its removal and its join slowed by stalled fsyncs), so it
    // was up but had not heard from the master, and only a replaced member that was still
    // down was excused. Up or down, it now has until 15 s; the others agreed all along.
    // 1592843: a flipped bit in the length field of a record in the middle of node 3's last
    // segment made it look as if it ran past the end of the file; recovery searched for a
    // valid record only after that (false) end, found none, and cut the record and the
    // acknowledged entries after it off as a torn tail: node 2 then applied a different
    // command at index 60. The search starts inside the bad record again.
    // 1684093: node 5, listed with the bootstrap incarnation 0, was removed and added back
    // while node 1 was paused; node 1 forgot its link and refused it as a departed member
    // whose incarnation it could not tell, so it never heard from node 5 as master again.
    // 3193564: a transfer to a new learner, node 2, lost chunks and was given up; node 2
    // kept its session (a retry comes within its idle time) and answered the next transfer
    // of the same snapshot with how far it had got, past the first window. The master then
    // sent the chunks in between anyway, whose answers repeated that offset, which read as
    // a gap its window could not fill: "chunks lost", every 500 ms, each try a chunk or two
    // further, and node 2 never caught up in time. The master now skips what the backup holds.
    // 3600994: a bit flipped in master node 2's newest snapshot, left running; its next
    // transfer of it must stop node 2 before the last chunk (the sender never read its
    // checksum, and node 1 received the damaged snapshot through, to fail it at the end).
    // 4114821: nodes 1 and 2 of five stopped before any master heard from them, and came
    // back to their bootstrap gate after the cluster formed; the new master took a late
    // refusal of its vote from each for "heard from" and bound their incarnations, and each
    // gate then refused to start, as a member that had lost its data after taking part.
    for (const seed of [
      8, 16, 18, 311, 323, 517, 794, 845, 1170, 1383, 1501, 2402, 2423, 4698, 9238, 22797, 213044,
      301295, 302916, 423270, 655582, 917249, 1177807, 1316868, 1391507, 1592843, 1684093, 3193564,
      3600994, 4114821,
    ]) {
      const r = await runWholeNode(seed);
      expect(r.ok, `seed ${seed}: ${r.violation}`).toBe(true);
    }
  }, 90_000);

  it("sim --whole-node: a calm run at 150-300 ms settles (seed 2692)", async () => {
    const fast = { calm: true, electionMs: { min: 150, max: 300 } };
    // Seed 2692 once started with two candidates at once and checked they did not flap.
    // Since recovery fsyncs the log and snapshot directories, the nodes of a calm run start
    // further apart, and no seed of 1..4000 has two candidates at the start any more.
    const r = await runWholeNode(2692, fast);
    expect(r.ok, r.violation).toBe(true);
    expect(r.elections).toBeGreaterThanOrEqual(1);
    // 6235: the end check compared the watch history with a backup one entry behind (a
    // lease's expiry committed while the watchers caught up); it now takes the store that
    // applied the most.
    const behind = await runWholeNode(6235, fast);
    expect(behind.ok, behind.violation).toBe(true);
  }, 60_000);

  it("sim --whole-node: a watcher that every node answers ERR_COMPACTED announces the gap and starts again from the current revision", async () => {
    // Seed 193 keeps a watch history of a few dozen changes and restarts nodes from
    // snapshots; its watchers meet compacted revisions on every node (seeds draw other
    // runs whenever the runtime's timing changes: find another with the same counts).
    const r = await runWholeNode(193);
    expect(r.ok, r.violation).toBe(true);
    expect(r.checks?.["watch compactions announced"]).toBeGreaterThan(0);
    expect(r.checks?.["watch changes missed after a compaction"]).toBeGreaterThan(0);
    expect(r.checks?.["watch changes checked"]).toBeGreaterThan(0);
  }, 60_000);
});
