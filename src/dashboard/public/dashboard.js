// The Baton dashboard, in the browser. It reads every member's GET /v1/status once a
// second and every member's GET /v1/events stream (server-sent events), and draws the
// members table, the timeline and the request charts from them. It starts from the node
// that served the page and learns the others from its member list (their advertised HTTP
// URLs), so it keeps working when the node it was opened on dies.
//
// On a node started with --tokens the page asks for an API token (a `read` one shows
// everything) and sends it with every request; api.js keeps it and reads the event streams
// through fetch, since an EventSource cannot send one.
//
// Plain JavaScript served as it is: no framework, no build step, nothing fetched from
// outside the cluster. Text from the nodes is only ever set as textContent, never as HTML.
// Rows and buttons are created once and updated in place, so keyboard focus survives the
// refreshes.

import {
  apiFetch,
  apiToken,
  onTokenChange,
  openEvents,
  reportMembers,
  setApiToken,
  withToken,
} from "./api.js";

const POLL_MS = 1000;
const STATUS_TIMEOUT_MS = 900;
const CHART_SECONDS = 60;
const TIMELINE_MAX = 200;
const SAMPLES_KEPT = 150;
const PAUSE_MS = 5000;
/** Contact older than this is "slow", older than LOST_MS "lost". */
const SLOW_MS = 300;
const LOST_MS = 2000;
/** A member this many entries behind the master is far behind, and the cluster not healthy. */
const LAG_FAR_ENTRIES = 1000;
/** How long a node that accepted a kill may go on answering before the page says so. */
const KILL_CONFIRM_MS = 3000;
/**
 * A sample counts the second before it was taken: it stands for a point of the chart up to
 * this long before it, so a sample that comes late fills its second, and one after a
 * silence does not fill the seconds the node was silent.
 */
const SAMPLE_REACH_MS = 1500;
/**
 * A node whose newest sample is older than this (by the nodes' clock) no longer holds the
 * chart's newest point back.
 */
const SAMPLE_STALE_MS = 3000;
const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * @typedef {{ url: string, id: number | null, status: any, ok: boolean, lastOkAt: number,
 *   failedSince: number | null, error: string | null, faults: boolean | null,
 *   faultToken: string | null, partitioned: boolean, everOk: boolean, settled: boolean,
 *   reachable: boolean, polling: boolean }} NodeView
 * `settled`: it answered, or failed to, at least once; until every node has, the page
 * says it is connecting rather than judge the cluster by the first node to answer.
 * `reachable`: its last poll got an HTTP answer, if only a refusal.
 */

/** @type {Map<string, NodeView>} by base URL */
const views = new Map();
/**
 * Origins the page's security policy kept it from reaching. The node lists its members'
 * addresses in the policy when it serves the page, so a member added later on another
 * host is out of the page's reach until it is loaded again. @type {Set<string>}
 */
const blockedOrigins = new Set();
document.addEventListener("securitypolicyviolation", (event) => {
  if (event.effectiveDirective !== "connect-src") return;
  try {
    blockedOrigins.add(new URL(event.blockedURI).origin);
  } catch {
    // Not a URL: nothing to name.
  }
});
/** @type {Map<string, { close(): void }>} by base URL */
const streams = new Map();
/**
 * Each node's samples, oldest first, with the browser's time each arrived (`receivedAt`).
 * @type {Map<number, {at: number, requestsPerSecond: number, errorsPerSecond: number, latencyMs: any, receivedAt: number}[]>}
 */
const samples = new Map();
/**
 * The nodes' clock minus the browser's, milliseconds: the charts run on the nodes' time,
 * so a browser whose clock is off still shows them.
 */
let clockOffsetMs = 0;
/** @type {Map<string, any>} state transfers under way, by transfer (see transferKey) */
const transfers = new Map();
/**
 * The timeline line of each transfer, by transfer: a progress event updates it, the end
 * closes it, and a transfer that starts again after its end gets a line of its own.
 * `movedBytes` is how far an ended one got, `count` how many such ends the line stands for
 * and `before` the line a transfer started again replaced (see onTransfer).
 * @typedef {{ li: HTMLLIElement, startedAt: number, ended: boolean, movedBytes: number,
 *   count: number, before: TransferLine | null }} TransferLine
 * @type {Map<string, TransferLine>}
 */
const transferLines = new Map();
/** Whether the page is still waiting for some node's first answer (see NodeView). */
let connecting = true;
/**
 * The advertised URL of a member the page first knew under another name (the page's own
 * node, opened at localhost), by that name. @type {Map<string, string>}
 */
const aliases = new Map();
/** @type {{ key: string, at: number, li: HTMLLIElement }[]} newest first */
const timeline = [];
/** Feed items already shown, by node, time and sequence; the oldest are forgotten. @type {Set<string>} */
const seen = new Set();
/** How many items `seen` remembers: far more than a stream's replay after a reconnect. */
const SEEN_KEPT = 5000;
/** @type {number[]} times of fail-overs, for the chart marks */
const failoverTimes = [];
/** @type {Map<number, HTMLTableRowElement>} */
const rows = new Map();
/**
 * The newest entry of each node, so that a message it repeats (a cut-off node asking for
 * pre-votes twice a second) is counted on one line rather than filling the timeline.
 * @type {Map<number, { kind: string, text: string, at: number, count: number, li: HTMLLIElement }>}
 */
const lastEntry = new Map();

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

function origin(/** @type {string} */ url) {
  try {
    return new URL(url).origin;
  } catch {
    return null;
  }
}

function addEndpoint(/** @type {string | null} */ url) {
  const base = url === null ? null : origin(url);
  if (base === null || views.has(base)) return;
  views.set(base, {
    url: base,
    id: null,
    status: null,
    ok: false,
    lastOkAt: 0,
    failedSince: null,
    error: null,
    faults: null,
    faultToken: null,
    partitioned: false,
    everOk: false,
    settled: false,
    reachable: false,
    polling: false,
  });
  openStream(base);
  // Asked at once rather than at the next round, so the page is not left judging the
  // cluster by the nodes it heard first.
  void pollOne(/** @type {NodeView} */ (views.get(base)));
}

// ------------------------------------------------------------------ polling

async function fetchJson(/** @type {string} */ url, timeoutMs = STATUS_TIMEOUT_MS) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const response = await apiFetch(url, { signal: controller.signal });
    if (!response.ok) throw new HttpError(response.status);
    return await response.json();
  } finally {
    clearTimeout(timer);
  }
}

/** An answer with an error status; 401 and 403 mean the token is missing or not enough. */
class HttpError extends Error {
  constructor(/** @type {number} */ status) {
    super(`HTTP ${status}`);
    this.status = status;
  }
}

/** What a refused token means to the user, or null when `error` is not about the token. */
function tokenProblem(/** @type {unknown} */ error) {
  const status = error instanceof HttpError ? error.status : null;
  if (status === 401) return apiToken() === "" ? "needs an API token" : "refuses this API token";
  if (status === 403) return "this API token may not read";
  return null;
}

async function pollOne(/** @type {NodeView} */ view) {
  // A node that takes long to answer (paused) is asked once at a time, not once a round.
  if (view.polling) return;
  view.polling = true;
  try {
    const status = await fetchJson(`${view.url}/v1/status`);
    const wasDown = view.everOk && !view.ok;
    view.status = status;
    view.id = status.id;
    view.ok = true;
    view.reachable = true;
    view.everOk = true;
    view.lastOkAt = Date.now();
    view.error = null;
    if (wasDown) {
      addLocal(`${view.url}:up:${Date.now()}`, "up", status.id, "answers the dashboard again");
      view.faults = null;
    }
    view.failedSince = null;
    for (const member of status.members ?? []) addEndpoint(member.httpUrl);
    if (view.faults !== false) void pollFaults(view);
  } catch (error) {
    // A node that refuses the token still answers: only silence is a node going down.
    if (view.ok && view.id !== null && tokenProblem(error) === null) {
      addLocal(
        `${view.url}:down:${Date.now()}`,
        "down",
        view.id,
        "stopped answering the dashboard",
      );
      endTransfersOf(view.id);
    }
    view.ok = false;
    view.reachable = error instanceof HttpError;
    view.failedSince ??= Date.now();
    const problem = tokenProblem(error);
    if (problem !== null) showTokenForm();
    view.error =
      problem ??
      (error instanceof Error && error.name === "AbortError" ? "no answer" : "unreachable");
  } finally {
    view.polling = false;
    view.settled = true;
    // Each answer is drawn as it comes: a paused node does not hold back the others'.
    scheduleRender();
  }
}

/** @type {Set<string>} URLs whose fault state is being asked */
const askingFaults = new Set();

async function pollFaults(/** @type {NodeView} */ view) {
  if (askingFaults.has(view.url)) return;
  askingFaults.add(view.url);
  try {
    const answer = await fetchJson(`${view.url}/v1/faults`);
    view.faults = answer.enabled === true;
    // The node's per-run fault token, given only to its own machine's dashboards.
    view.faultToken = typeof answer.token === "string" ? answer.token : null;
    view.partitioned = answer.partitioned === true;
  } catch {
    // An older node without the route, or a moment of silence: ask again next time.
  } finally {
    askingFaults.delete(view.url);
  }
}

async function poll() {
  await Promise.all([...views.values()].map(pollOne));
  refresh();
}

let renderQueued = false;

/** Redraws soon, once for every answer that arrives in the same moment. */
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  setTimeout(() => {
    renderQueued = false;
    refresh();
  }, 0);
}

function refresh() {
  forgetDuplicates();
  render();
}

/**
 * The page may have been opened at another name of a member than the one it advertises
 * (localhost rather than 127.0.0.1): keep the advertised URL only.
 */
function forgetDuplicates() {
  const advertised = advertisedOrigins(false);
  for (const view of [...views.values()]) {
    if (view.id === null || advertised.has(view.url)) continue;
    const twin = [...views.values()].find(
      (v) => v !== view && v.id === view.id && advertised.has(v.url),
    );
    if (twin === undefined) continue;
    // The key browser reads from the page's own name for the node.
    aliases.set(view.url, twin.url);
    forgetView(view);
  }
}

/**
 * Stops polling nodes the master no longer lists (they were removed from the cluster), and
 * addresses that never answered once no answering node advertises them (a member that
 * moved to another address; a node that still lists it would only add it again): the
 * page's own address is kept.
 */
function forgetRemoved(/** @type {number[]} */ ids) {
  const advertised = advertisedOrigins(true);
  for (const view of [...views.values()]) {
    const kept =
      view.id === null
        ? advertised.has(view.url) || view.url === location.origin
        : ids.includes(view.id);
    if (kept) continue;
    forgetView(view);
  }
}

/** The origins of the members' URLs in the nodes' statuses (`answering`: of those that answer now). */
function advertisedOrigins(/** @type {boolean} */ answering) {
  const advertised = new Set();
  for (const view of views.values()) {
    if (answering && !view.ok) continue;
    for (const member of view.status?.members ?? []) advertised.add(origin(member.httpUrl ?? ""));
  }
  return advertised;
}

/** Stops polling a node's address and closes its event stream. */
function forgetView(/** @type {NodeView} */ view) {
  views.delete(view.url);
  streams.get(view.url)?.close();
  streams.delete(view.url);
}

/** Polls forever, one round at a time, about once a second. */
async function pollLoop() {
  for (;;) {
    const started = Date.now();
    await poll();
    await new Promise((resolve) =>
      setTimeout(resolve, Math.max(100, POLL_MS - (Date.now() - started))),
    );
  }
}

// ------------------------------------------------------------------ events

function openStream(/** @type {string} */ base) {
  const stream = openEvents(`${base}/v1/events`, {
    onEvent: ({ data }) => {
      try {
        onFeedItem(JSON.parse(data));
      } catch {
        // A malformed message is skipped; the next one stands alone.
      }
    },
  });
  streams.set(base, stream);
}

/** A new token: every stream starts again with it, and the members are asked at once. */
function restartStreams() {
  for (const [base, stream] of streams) {
    stream.close();
    openStream(base);
  }
  void poll();
}

function onFeedItem(/** @type {any} */ item) {
  if (item.type === "sample") {
    let list = samples.get(item.node);
    if (list === undefined) {
      list = [];
      samples.set(item.node, list);
    }
    if (list.length > 0 && list[list.length - 1].at >= item.at) return;
    list.push({ ...item, receivedAt: Date.now() });
    if (list.length > SAMPLES_KEPT) list.shift();
    return;
  }
  const key = `${item.node}:${item.at}:${item.seq}`;
  if (seen.has(key)) return;
  seen.add(key);
  if (seen.size > SEEN_KEPT) seen.delete(/** @type {string} */ (seen.values().next().value));
  if (item.type === "transfer") {
    onTransfer(item);
    return;
  }
  const described = describe(item);
  if (described === null) return;
  if (item.type === "failover" && isTakeOver(item)) {
    failoverTimes.push(item.at);
    // Only the chart's minute is drawn; a page left open for days keeps no more than that.
    const oldest = item.at - 2 * CHART_SECONDS * 1000;
    for (let i = failoverTimes.length - 1; i >= 0; i--) {
      if (failoverTimes[i] < oldest) failoverTimes.splice(i, 1);
    }
  }
  addEntry(key, item.at, described.kind, item.node, described.text, described.minor);
}

function isTakeOver(/** @type {any} */ event) {
  return event.previousMaster !== null && event.previousMaster !== event.node;
}

/** @returns {{kind: string, text: string, minor: boolean} | null} */
function describe(/** @type {any} */ e) {
  switch (e.type) {
    case "started":
      return { kind: "up", text: `started (term ${e.term})`, minor: false };
    case "failover":
      if (isTakeOver(e)) {
        const ms =
          e.durationMs === null
            ? ""
            : `, ${Math.round(e.durationMs)} ms after last hearing from it`;
        return {
          kind: "failover",
          text: `Fail-over: became master of term ${e.term}, taking over from node ${e.previousMaster}${ms}`,
          minor: false,
        };
      }
      return {
        kind: "election",
        text:
          e.previousMaster === null
            ? `became master of term ${e.term} (elected)`
            : `became master again in term ${e.term}`,
        minor: false,
      };
    case "switchover":
      return {
        kind: "election",
        text:
          e.previousMaster === null
            ? `became master of term ${e.term} by a switchover`
            : `became master of term ${e.term}: node ${e.previousMaster} handed over (switchover)`,
        minor: false,
      };
    case "role":
      if (e.previousRole === "master" && e.role !== "master") {
        return {
          kind: "stepdown",
          text: `stepped down in term ${e.term}: ${e.reason}`,
          minor: false,
        };
      }
      if (e.role === "candidate") {
        return {
          kind: "election",
          text: e.preVote
            ? `asks for pre-votes for term ${e.term + 1}: ${e.reason}`
            : `stands for election in term ${e.term}: ${e.reason}`,
          minor: false,
        };
      }
      return {
        kind: "role",
        text:
          e.master === null
            ? `backup in term ${e.term}: ${e.reason}`
            : `backup of node ${e.master} in term ${e.term}`,
        minor: true,
      };
    case "peer":
      return e.up
        ? { kind: "peer", text: `connected to node ${e.peer}`, minor: true }
        : {
            kind: "down",
            text: `lost its connection to node ${e.peer} (${e.reason})`,
            minor: false,
          };
    case "fault": {
      const what = {
        kill: "killed on request (SIGKILL)",
        pause: `paused on request for ${formatMs(e.durationMs)}`,
        partition: "cut off from its peers on request (partition)",
        heal: "partition healed on request",
      };
      return { kind: "fault", text: what[e.fault] ?? e.fault, minor: false };
    }
    case "fatal":
      return { kind: "down", text: `stopped: ${e.message}`, minor: false };
    default:
      return null;
  }
}

/** One transfer: the node that reports it, which way, with whom, of which snapshot. */
function transferKey(/** @type {any} */ e) {
  return `${e.node}:${e.direction}:${e.peer}:${e.snapshotIndex}`;
}

function onTransfer(/** @type {any} */ e) {
  const key = transferKey(e);
  let line = transferLines.get(key);
  if (line === undefined || line.ended) {
    // A new transfer, or the same snapshot sent again: a line of its own, at its own time,
    // when it began (a page opened long after that sees only its latest progress).
    const startedAt = typeof e.startedAt === "number" ? e.startedAt : e.at;
    const li = addEntry(`${key}:${startedAt}`, startedAt, "transfer", e.node, "", false, false);
    if (line !== undefined) line.before = null;
    line = { li, startedAt, ended: false, movedBytes: 0, count: 1, before: line ?? null };
    transferLines.set(key, line);
  }
  if (!e.done) {
    transfers.set(key, e);
    setMessage(line.li, transferText(e, null));
    return;
  }
  transfers.delete(key);
  line.ended = true;
  line.movedBytes = e.bytes;
  // A transfer whose line the timeline let go of while it ran: nothing more to show.
  if (!line.li.isConnected) {
    transferLines.delete(key);
    return;
  }
  const before = line.before;
  // (Only onto a line still on the page: one the timeline let go of would hide them all.)
  if (
    e.bytes === 0 &&
    before !== null &&
    before.ended &&
    before.movedBytes === 0 &&
    before.li.isConnected
  ) {
    // A master retries a dead receiver every few seconds: each attempt that moved nothing
    // is counted on the line of the one before rather than given a line of its own.
    removeEntry(line.li);
    before.count++;
    transferLines.set(key, before);
    const repeat = before.li.querySelector(".repeat");
    if (repeat !== null)
      repeat.textContent = ` (${before.count} times, last at ${formatClock(e.at)})`;
    return;
  }
  setMessage(line.li, transferText(e, e.at - line.startedAt));
}

/**
 * A line the timeline let go of: off the page, and out of the transfer lines once its
 * transfer has ended (an ongoing one keeps its line, to end it when its last event comes).
 */
function forgetLine(/** @type {HTMLLIElement} */ li) {
  li.remove();
  for (const [key, line] of transferLines) {
    if (line.li === li && line.ended) transferLines.delete(key);
  }
}

/** Takes a line off the timeline. */
function removeEntry(/** @type {HTMLLIElement} */ li) {
  const index = timeline.findIndex((entry) => entry.li === li);
  if (index >= 0) timeline.splice(index, 1);
  li.remove();
}

/** What a transfer event says; `tookMs` for an ended one whose start the page saw. */
function transferText(/** @type {any} */ e, /** @type {number | null} */ tookMs) {
  const toward = towardPeer(e);
  const of = `${percentOf(e)}% of ${formatBytes(e.totalBytes)}`;
  const snapshot = `snapshot at index ${e.snapshotIndex}`;
  if (!e.done) return `state transfer ${toward}: ${of} (${snapshot})`;
  // The node reports the whole size only for a transfer that completed.
  if (e.bytes >= e.totalBytes) {
    const took = tookMs === null || tookMs <= 0 ? "" : ` in ${formatMs(tookMs)}`;
    return `state transfer ${toward} completed: ${formatBytes(e.totalBytes)}${took} (${snapshot})`;
  }
  return `state transfer ${toward} abandoned at ${of} (${formatBytes(e.bytes)} moved; ${snapshot})`;
}

/** "to node 2" for a transfer the reporting node sends, "from node 2" for one it receives. */
function towardPeer(/** @type {any} */ e) {
  return e.direction === "sending" ? `to node ${e.peer}` : `from node ${e.peer}`;
}

function percentOf(/** @type {any} */ e) {
  return e.totalBytes > 0 ? Math.floor((100 * e.bytes) / e.totalBytes) : 100;
}

/**
 * Node `id` stopped answering: the transfers it reported will get no end from it, so its
 * lines say so and its progress bars go (the other side reports its own end).
 */
function endTransfersOf(/** @type {number} */ id) {
  for (const [key, e] of [...transfers]) {
    if (e.node !== id) continue;
    transfers.delete(key);
    const line = transferLines.get(key);
    if (line === undefined) continue;
    line.ended = true;
    const toward = towardPeer(e);
    setMessage(
      line.li,
      `state transfer ${toward}: no longer reported at ${percentOf(e)}% of ${formatBytes(e.totalBytes)}, since node ${id} stopped answering (snapshot at index ${e.snapshotIndex})`,
    );
  }
}

/** Replaces the words of a timeline line, keeping the node's name before them. */
function setMessage(/** @type {HTMLLIElement} */ li, /** @type {string} */ text) {
  const message = li.querySelector(".message");
  if (message !== null && message.textContent !== text) message.textContent = text;
}

/** An event the dashboard saw itself (a node stopped or resumed answering it). */
function addLocal(
  /** @type {string} */ key,
  /** @type {string} */ kind,
  /** @type {number} */ node,
  /** @type {string} */ text,
) {
  // On the nodes' clock, as their own events are (the charts' offset): with the browser's
  // own, a skewed clock put these lines in the wrong place among theirs.
  addEntry(key, Date.now() + clockOffsetMs, kind, node, text, false);
}

const KIND_LABELS = /** @type {Record<string, string>} */ ({
  failover: "fail-over",
  election: "election",
  stepdown: "step-down",
  role: "role",
  peer: "peer",
  down: "down",
  up: "up",
  transfer: "state transfer",
  fault: "fault",
});

/**
 * Adds a line to the timeline, or counts a repeat of the node's newest line (unless
 * `collapse` is false); returns the line.
 */
function addEntry(
  /** @type {string} */ key,
  /** @type {number} */ at,
  /** @type {string} */ kind,
  /** @type {number} */ node,
  /** @type {string} */ text,
  /** @type {boolean} */ minor,
  collapse = true,
) {
  const previous = lastEntry.get(node);
  if (
    collapse &&
    previous !== undefined &&
    previous.kind === kind &&
    previous.text === text &&
    at >= previous.at &&
    // A line the timeline's cap already removed would count repeats no one sees.
    previous.li.isConnected
  ) {
    previous.count++;
    previous.at = at;
    const repeat = previous.li.querySelector(".repeat");
    if (repeat !== null)
      repeat.textContent = ` (${previous.count} times, last at ${formatClock(at)})`;
    return previous.li;
  }
  const li = document.createElement("li");
  li.dataset.kind = kind;
  li.dataset.minor = String(minor);
  li.dataset.new = "true";
  const time = document.createElement("time");
  time.dateTime = new Date(at).toISOString();
  time.textContent = formatClock(at);
  const label = document.createElement("span");
  label.className = "kind";
  label.textContent = KIND_LABELS[kind] ?? kind;
  const body = document.createElement("span");
  body.className = "text";
  const who = document.createElement("strong");
  who.textContent = `Node ${node} `;
  const message = document.createElement("span");
  message.className = "message";
  message.textContent = text;
  const repeat = document.createElement("span");
  repeat.className = "repeat";
  body.append(who, message, repeat);
  if (collapse && at >= (previous?.at ?? 0)) lastEntry.set(node, { kind, text, at, count: 1, li });
  li.append(time, label, body);
  const list = $("timeline");
  let index = timeline.findIndex((entry) => entry.at < at);
  if (index === -1) index = timeline.length;
  const before = timeline[index];
  list.insertBefore(li, before === undefined ? null : before.li);
  timeline.splice(index, 0, { key, at, li });
  while (timeline.length > TIMELINE_MAX) {
    const dropped = timeline.pop();
    if (dropped !== undefined) forgetLine(dropped.li);
  }
  setTimeout(() => {
    li.dataset.new = "false";
  }, 1500);
  return li;
}

// ------------------------------------------------------------------ members

/** The node that says it is master in the highest term, among those answering. */
function currentMaster() {
  let master = null;
  for (const view of views.values()) {
    if (view.ok && view.status.role === "master") {
      if (master === null || view.status.term > master.status.term) master = view;
    }
  }
  return master;
}

function viewOf(/** @type {number} */ id) {
  for (const view of views.values()) if (view.id === id) return view;
  // A node that has not answered yet has no id: it is found by the URL it is listed at.
  for (const view of views.values()) {
    const listed = view.status?.members?.find((/** @type {any} */ m) => m.id === id);
    const found = views.get(origin(listed?.httpUrl ?? "") ?? "");
    if (found !== undefined && found.id === null) return found;
  }
  return null;
}

/**
 * The members to show: those the master lists when there is one (a removed member goes
 * from the page); without a master, every node heard of.
 */
function memberIds() {
  const listed = currentMaster()?.status.members;
  if (Array.isArray(listed) && listed.length > 0) {
    return listed.map((/** @type {any} */ member) => member.id).sort((a, b) => a - b);
  }
  const ids = new Set();
  for (const view of views.values()) {
    if (view.id !== null) ids.add(view.id);
    for (const member of view.status?.members ?? []) ids.add(member.id);
  }
  return [...ids].sort((a, b) => a - b);
}

function render() {
  const master = currentMaster();
  const ids = memberIds();
  const faults = [...views.values()].some((view) => view.faults === true);
  $("fault-toolbar").hidden = !faults;
  for (const th of document.querySelectorAll(".fault-column")) {
    /** @type {HTMLElement} */ (th).hidden = !faults;
  }
  // Only once the master has said it takes faults.
  /** @type {HTMLButtonElement} */ ($("kill-master")).disabled =
    master === null || master.faults !== true || master.faultToken === null;
  const body = /** @type {HTMLTableSectionElement} */ (document.querySelector("#members tbody"));
  for (const [id, row] of rows) {
    if (ids.includes(id)) continue;
    row.remove();
    rows.delete(id);
  }
  if (master !== null) forgetRemoved(ids);
  ids.forEach((id, position) => {
    let row = rows.get(id);
    if (row === undefined) {
      row = createRow(id);
      rows.set(id, row);
    }
    if (body.rows[position] !== row) body.insertBefore(row, body.rows[position] ?? null);
    updateRow(row, id, master, faults);
  });
  renderVerdict(master, ids);
  renderCharts();
  shareMembers();
  const answering = [...views.values()].filter((v) => v.ok).length;
  const changing =
    master?.status.changeInProgress === true ? "; a membership change is in progress" : "";
  $("sources").textContent =
    `${answering} of ${views.size} nodes (${[...views.keys()].join(", ")})${changing}`;
}

/**
 * Tells the key browser which members answer, if only to refuse, and which of them is the
 * page's node (under its advertised URL when the page was opened under another name).
 */
function shareMembers() {
  /** @type {Map<string, boolean>} */
  const answers = new Map();
  for (const view of views.values()) if (view.settled) answers.set(view.url, view.reachable);
  reportMembers(answers, aliases.get(location.origin) ?? location.origin);
}

function createRow(/** @type {number} */ id) {
  const row = document.createElement("tr");
  row.dataset.node = String(id);
  const names = ["node", "role", "term", "indexes", "health", "lag", "transfer", "faults"];
  for (const name of names) {
    const cell = document.createElement(name === "node" ? "th" : "td");
    if (name === "node") cell.setAttribute("scope", "row");
    cell.className = `col-${name}`;
    if (name === "faults") cell.classList.add("fault-column");
    row.append(cell);
  }
  const faults = /** @type {HTMLElement} */ (row.querySelector("td.col-faults"));
  const group = document.createElement("div");
  group.className = "faults";
  group.append(
    faultButton(id, "kill", `Kill node ${id}`, "Kill"),
    faultButton(
      id,
      "pause",
      `Pause node ${id} for ${PAUSE_MS / 1000} seconds`,
      `Pause ${PAUSE_MS / 1000} s`,
    ),
    faultButton(id, "partition", `Partition node ${id}`, "Partition"),
  );
  const note = document.createElement("span");
  note.className = "fault-note hint";
  faults.append(group, note);
  return row;
}

function faultButton(
  /** @type {number} */ id,
  /** @type {string} */ fault,
  /** @type {string} */ label,
  /** @type {string} */ text,
) {
  const button = document.createElement("button");
  button.type = "button";
  button.dataset.fault = fault;
  button.setAttribute("aria-label", label);
  button.textContent = text;
  button.addEventListener("click", () => {
    const view = viewOf(id);
    const action = fault === "partition" && view?.partitioned ? "heal" : fault;
    void inject(id, action);
  });
  return button;
}

function cell(/** @type {HTMLTableRowElement} */ row, /** @type {string} */ name) {
  return /** @type {HTMLElement} */ (row.querySelector(`.col-${name}`));
}

function setText(/** @type {HTMLElement} */ element, /** @type {string} */ text) {
  if (element.textContent !== text) element.textContent = text;
}

function updateRow(
  /** @type {HTMLTableRowElement} */ row,
  /** @type {number} */ id,
  /** @type {NodeView | null} */ master,
  /** @type {boolean} */ faults,
) {
  const view = viewOf(id);
  const status = view?.ok ? view.status : null;
  const role =
    status !== null
      ? status.role
      : view === null
        ? "unknown"
        : view.settled
          ? "unreachable"
          : "connecting";
  row.dataset.role = role;

  const nodeCell = cell(row, "node");
  const url = view?.url ?? "";
  if (nodeCell.dataset.url !== url || nodeCell.childElementCount === 0) {
    nodeCell.dataset.url = url;
    nodeCell.replaceChildren();
    const name = document.createElement("span");
    name.className = "node-id";
    name.textContent = `Node ${id}`;
    const link = document.createElement(url === "" ? "span" : "a");
    link.className = "node-url";
    link.textContent = url === "" ? "address unknown" : url.replace(/^https?:\/\//, "");
    if (link instanceof HTMLAnchorElement) link.href = `${url}/`;
    nodeCell.append(name, link);
  }

  const roleCell = cell(row, "role");
  let badge = roleCell.querySelector(".role");
  if (badge === null) {
    badge = document.createElement("span");
    roleCell.append(badge);
  }
  badge.className = `role role-${role}`;
  // Only a node that answers is known to be partitioned: one restarted after it stopped
  // answering comes back whole, and a dead one is not partitioned but gone.
  const partitioned = view?.ok === true && view.partitioned ? " (partitioned)" : "";
  // The master's configuration decides who is a learner; else this node's own.
  const listed = (master?.status.members ?? status?.members ?? []).find(
    (/** @type {any} */ m) => m.id === id,
  );
  const learner = listed?.voter === false ? " (learner)" : "";
  setText(/** @type {HTMLElement} */ (badge), role + learner + partitioned);
  nodeCell.title =
    typeof listed?.incarnation === "number" && listed.incarnation > 0
      ? `member incarnation ${listed.incarnation}`
      : "";

  setText(cell(row, "term"), status === null ? "–" : String(status.term));
  cell(row, "term").classList.add("num");
  setText(
    cell(row, "indexes"),
    status === null ? "–" : `${status.commitIndex} / ${status.appliedIndex}`,
  );
  cell(row, "indexes").classList.add("num");

  renderHealth(cell(row, "health"), id, view, master);
  renderLag(cell(row, "lag"), id, master);
  renderTransfer(cell(row, "transfer"), id);

  cell(row, "faults").hidden = !faults;
  // The node gives its fault token only to pages it takes faults from (docs/dashboard.md).
  const refuses = view?.ok === true && view.faults === true && view.faultToken === null;
  setText(
    /** @type {HTMLElement} */ (row.querySelector(".fault-note")),
    refuses ? "refuses faults from this page" : "",
  );
  for (const button of row.querySelectorAll("button")) {
    const b = /** @type {HTMLButtonElement} */ (button);
    b.disabled = view === null || !view.ok || view.faults !== true || refuses;
    if (b.dataset.fault === "partition") {
      const heal = view?.partitioned === true;
      setText(b, heal ? "Heal" : "Partition");
      b.setAttribute("aria-label", `${heal ? "Heal" : "Partition"} node ${id}`);
    }
  }
}

function renderHealth(
  /** @type {HTMLElement} */ target,
  /** @type {number} */ id,
  /** @type {NodeView | null} */ view,
  /** @type {NodeView | null} */ master,
) {
  if (view !== null && !view.settled) {
    target.className = "col-health";
    setText(target, "connecting…");
    return;
  }
  if (view === null || !view.ok) {
    const since = view?.failedSince;
    const refused = view?.error?.includes("token") === true ? view.error : null;
    const blocked =
      view !== null && blockedOrigins.has(origin(view.url) ?? "")
        ? "out of this page's reach (it joined after the page was opened): reload the page"
        : null;
    const text =
      refused ??
      blocked ??
      (since == null ? "not heard from" : `no answer for ${formatMs(Date.now() - since)}`);
    target.className = "col-health health-lost";
    setText(target, text);
    return;
  }
  const cutOff = master !== null && master.id !== id ? masterContact(master, id) : null;
  if (cutOff?.word === "lost" && cutOff.ms === null) {
    target.className = "col-health health-lost";
    setText(target, "lost, the master has no link to it");
    return;
  }
  // The freshest contact any other answering member had with this one.
  let contact = null;
  const viewers = master !== null && master.id !== id ? [master] : [...views.values()];
  for (const viewer of viewers) {
    if (!viewer.ok || viewer.id === id) continue;
    const member = viewer.status.members?.find((/** @type {any} */ m) => m.id === id);
    if (member?.lastContactMs != null && (contact === null || member.lastContactMs < contact)) {
      contact = member.lastContactMs;
    }
  }
  if (contact === null) {
    target.className = "col-health";
    setText(target, "answers the dashboard");
    return;
  }
  const word = contactWord(contact);
  target.className = `col-health health-${word} num`;
  setText(target, `${word}, ${formatMs(contact)} ago`);
}

function contactWord(/** @type {number} */ ms) {
  return ms < SLOW_MS ? "ok" : ms < LOST_MS ? "slow" : "lost";
}

/**
 * How the master last heard from member `id`: the health word and milliseconds since, with
 * `ms` null and "lost" for a member it has no link to and never heard from; null when the
 * master does not say.
 * @returns {{ word: string, ms: number | null } | null}
 */
function masterContact(/** @type {NodeView} */ master, /** @type {number} */ id) {
  const member = master.status.members?.find((/** @type {any} */ m) => m.id === id);
  if (member === undefined) return null;
  if (member.lastContactMs != null) {
    return { word: contactWord(member.lastContactMs), ms: member.lastContactMs };
  }
  return member.connected === false ? { word: "lost", ms: null } : null;
}

/**
 * What keeps the cluster from being healthy besides members that do not answer the page,
 * as the members table shows it: a member the master lost contact with, one far behind.
 * @returns {string[]}
 */
function memberProblems(/** @type {NodeView} */ master, /** @type {number[]} */ ids) {
  const problems = [];
  for (const id of ids) {
    if (id === master.id) continue;
    const contact = masterContact(master, id);
    if (contact?.word === "lost") {
      // No running count here: the verdict is a live region, and a number that changes
      // every second would be read out every second (the health cell shows it).
      problems.push(`node ${id} is cut off from the master`);
      continue;
    }
    const member = master.status.members?.find((/** @type {any} */ m) => m.id === id);
    if (member?.lag == null) continue;
    if (member.lagBytes === null) {
      problems.push(`node ${id} is behind and needs a state transfer`);
    } else if (member.lag >= LAG_FAR_ENTRIES) {
      problems.push(`node ${id} is ${member.lag} entries behind`);
    }
  }
  return problems;
}

function renderLag(
  /** @type {HTMLElement} */ target,
  /** @type {number} */ id,
  /** @type {NodeView | null} */ master,
) {
  target.classList.add("num");
  if (master === null) return setText(target, "–");
  if (master.id === id) return setText(target, "master");
  const member = master.status.members?.find((/** @type {any} */ m) => m.id === id);
  if (member === undefined || member.lag === null) return setText(target, "–");
  const bytes =
    member.lagBytes === undefined
      ? ""
      : member.lagBytes === null
        ? ", needs state transfer"
        : `, ${formatBytes(member.lagBytes)}`;
  setText(target, `${member.lag} ${member.lag === 1 ? "entry" : "entries"}${bytes}`);
}

function renderTransfer(/** @type {HTMLElement} */ target, /** @type {number} */ id) {
  let active = null;
  for (const transfer of transfers.values()) {
    const receiver = transfer.direction === "sending" ? transfer.peer : transfer.node;
    if (receiver === id) active = transfer;
  }
  if (active === null) {
    if (target.childElementCount > 0 || target.textContent !== "–") target.replaceChildren("–");
    return;
  }
  const percent =
    active.totalBytes > 0 ? Math.floor((100 * active.bytes) / active.totalBytes) : 100;
  const label = `${percent}% of ${formatBytes(active.totalBytes)}`;
  let bar = target.querySelector("progress");
  if (bar === null) {
    target.replaceChildren();
    bar = document.createElement("progress");
    bar.max = 100;
    const text = document.createElement("span");
    text.className = "transfer-text";
    target.append(bar, " ", text);
  }
  bar.value = percent;
  bar.setAttribute("aria-label", `State transfer to node ${id}: ${label}`);
  setText(/** @type {HTMLElement} */ (target.querySelector(".transfer-text")), label);
}

function renderVerdict(/** @type {NodeView | null} */ master, /** @type {number[]} */ ids) {
  const answering = [...views.values()].filter((view) => view.ok);
  const of = `${answering.length} of ${ids.length} nodes answer`;
  let verdict;
  let text;
  const refused = [...views.values()].find((view) => !view.ok && view.error?.includes("token"));
  connecting &&= [...views.values()].some((view) => !view.settled);
  const problems = master === null ? [] : memberProblems(master, ids);
  if (connecting) {
    verdict = "unknown";
    text = `Connecting to the cluster: ${answering.length} of ${ids.length} nodes answered so far…`;
  } else if (answering.length === 0 && refused !== undefined) {
    verdict = "unreachable";
    text = `The nodes ask for an API token (${refused.error}): give one above.`;
  } else if (answering.length === 0) {
    verdict = "unreachable";
    text = "No node answers. Is the cluster running?";
  } else if (master === null) {
    const electing = answering.some((view) => view.status.role === "candidate");
    verdict = electing ? "election" : "no-master";
    text = electing ? `Election under way; ${of}.` : `No master; ${of}.`;
  } else {
    verdict = answering.length === ids.length && problems.length === 0 ? "healthy" : "degraded";
    const state = verdict === "healthy" ? "Healthy" : "Degraded";
    const why = problems.map((problem) => `; ${problem}`).join("");
    text = `${state}: node ${master.id} is master in term ${master.status.term}; ${of}${why}.`;
  }
  const element = $("verdict");
  element.dataset.verdict = verdict;
  setText(element, text);
}

// ------------------------------------------------------------------ faults

/**
 * Sends `fault` to node `id` and says what came of it, only from evidence: the node's
 * answer, and for a kill that it then stops answering. A browser shows a refused CORS
 * pre-check and a dead node alike (no answer it may read), so after no answer the page
 * asks the node's status to tell the two apart.
 */
async function inject(/** @type {number} */ id, /** @type {string} */ fault) {
  const view = viewOf(id);
  const message = $("fault-message");
  if (view === null) return;
  const query = fault === "pause" ? `?ms=${PAUSE_MS}` : "";
  const wasMaster = view.ok && view.status.role === "master";
  const who = `node ${id}${wasMaster ? " (the master)" : ""}`;
  const Who = `N${who.slice(1)}`;
  if (view.faults !== true) {
    // Sent anyway, the request went without a token and its refusal said nothing useful.
    message.textContent =
      view.faults === false
        ? `${Who} does not take faults: start it with --allow-fault-injection (baton demo does).`
        : `${Who} has not said yet whether it takes faults; try again in a moment.`;
    return;
  }
  if (view.faultToken === null) {
    message.textContent = `${Who} refuses faults from this page (${location.origin}): it gives its fault token only to the cluster's own dashboards. Open the dashboard at ${view.url}/ to use its buttons.`;
    return;
  }
  message.textContent = `Sending ${fault} to ${who}…`;
  /** @type {any} */
  let answer;
  try {
    const response = await fetch(`${view.url}/v1/faults/${fault}${query}`, {
      method: "POST",
      headers: withToken({ "X-Baton-Fault": view.faultToken ?? "" }),
    });
    answer = await response.json().catch(() => ({}));
    if (!response.ok) {
      message.textContent = `${Who} refused ${fault}: ${answer.error ?? `HTTP ${response.status}`}`;
      return;
    }
  } catch {
    const alive = await answersStatus(view);
    message.textContent = alive
      ? `${Who} refused ${fault}: the browser got no answer it may read (a refused CORS pre-check, for one), and the node still answers, so nothing was done.`
      : `${Who} did not answer the ${fault} request and does not answer now: whether the request reached it is unknown.`;
    return;
  }
  if (fault === "kill") {
    message.textContent = `${Who} accepted kill; waiting for it to stop answering…`;
    if (!(await stopsAnswering(view))) {
      message.textContent = `${Who} accepted kill but still answers after ${KILL_CONFIRM_MS / 1000} s.`;
      return;
    }
  }
  if (fault === "partition" || fault === "heal") view.partitioned = answer.partitioned === true;
  const next = wasMaster
    ? " Watch the timeline: a backup takes over, usually within a second."
    : "";
  const done = {
    kill: `Killed ${who}: it accepted the request and no longer answers.`,
    pause: `Paused ${who} for ${PAUSE_MS / 1000} s (it accepted the request).`,
    partition: `Cut ${who} off from its peers.`,
    heal: `Healed the partition of node ${id}.`,
  };
  message.textContent = `${done[/** @type {keyof typeof done} */ (fault)]}${fault === "heal" ? "" : next}`;
  render();
}

/** Whether `view`'s node answers its status now. */
async function answersStatus(/** @type {NodeView} */ view) {
  try {
    await fetchJson(`${view.url}/v1/status`);
    return true;
  } catch (error) {
    // A refusal of the token is an answer too: the node is up.
    return tokenProblem(error) !== null;
  }
}

/** Whether `view`'s node stops answering within KILL_CONFIRM_MS. */
async function stopsAnswering(/** @type {NodeView} */ view) {
  const deadline = Date.now() + KILL_CONFIRM_MS;
  while (Date.now() < deadline) {
    if (!(await answersStatus(view))) return true;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return false;
}

$("kill-master").addEventListener("click", () => {
  const master = currentMaster();
  if (master?.id != null) void inject(master.id, "kill");
});

// ------------------------------------------------------------------ charts

/**
 * The nodes' time now, by the samples: a sample is sent as it is taken, so the newest
 * arrivals put the nodes' clock at most a little ahead of the browser's plus the offset
 * they show. Samples replayed on connecting are older and show less; the largest offset
 * of the last minute's arrivals wins.
 */
function nodesNow() {
  const now = Date.now();
  let offset = null;
  for (const list of samples.values()) {
    for (const sample of list) {
      if (now - sample.receivedAt > 60_000) continue;
      const seen = sample.at - sample.receivedAt;
      if (offset === null || seen > offset) offset = seen;
    }
  }
  if (offset !== null) clockOffsetMs = offset;
  return now + clockOffsetMs;
}

/**
 * Per-second totals over the chart window, oldest first, on the nodes' clock. Point `s`
 * stands for the second [s, s + 1) and takes from each node the sample that counted its
 * middle: the first one taken at or after it, if no more than SAMPLE_REACH_MS after. So
 * each node counts once in every second whatever the moment it samples at, a sample that
 * comes late still fills its second, and a silent node adds nothing. The newest point is
 * the newest second every sampling node has reported.
 */
function series() {
  const now = nodesNow();
  let last = null;
  for (const list of samples.values()) {
    const newest = list[list.length - 1];
    if (newest === undefined || newest.at < now - SAMPLE_STALE_MS) continue;
    const covered = Math.floor((newest.at - 500) / 1000);
    last = last === null ? covered : Math.min(last, covered);
  }
  last ??= Math.floor((now - 500) / 1000) - 1;
  const first = last - CHART_SECONDS;
  const points = [];
  for (let second = first; second <= last; second++) {
    points.push({ second, rate: 0, errors: 0, p50: null, p99: null, seen: false });
  }
  for (const list of samples.values()) {
    let k = 0;
    for (const point of points) {
      const middle = point.second * 1000 + 500;
      while (k < list.length && list[k].at < middle) k++;
      const sample = list[k];
      if (sample === undefined) break;
      // The first sample kept counted one second, the seconds before it are unknown.
      if (k === 0 ? sample.at - middle >= 1000 : sample.at - middle > SAMPLE_REACH_MS) continue;
      point.seen = true;
      point.rate += sample.requestsPerSecond;
      point.errors += sample.errorsPerSecond;
      // A node's percentiles cannot be merged with another's: the slowest node's are shown.
      if (sample.latencyMs !== null) {
        point.p50 = Math.max(point.p50 ?? 0, sample.latencyMs.p50);
        point.p99 = Math.max(point.p99 ?? 0, sample.latencyMs.p99);
      }
    }
  }
  return points;
}

function renderCharts() {
  const points = series();
  const last = [...points].reverse().find((point) => point.seen);
  const latency =
    last?.p50 == null
      ? "no requests to time"
      : `slowest node's median ${round(last.p50)} ms, 99th percentile ${round(last.p99)} ms`;
  $("chart-summary").textContent =
    last === undefined
      ? "No samples yet."
      : `Last second: ${round(last.rate)} requests/s, ${round(last.errors)} errors/s; ${latency}.`;
  drawChart(
    /** @type {SVGSVGElement} */ (/** @type {unknown} */ ($("rate-chart"))),
    points,
    [
      ["rate", (/** @type {any} */ p) => (p.seen ? p.rate : null)],
      ["errors", (/** @type {any} */ p) => (p.seen ? p.errors : null)],
    ],
    "/s",
  );
  // A second without requests has no latency: no point, not a zero.
  drawChart(
    /** @type {SVGSVGElement} */ (/** @type {unknown} */ ($("latency-chart"))),
    points,
    [
      ["p50", (/** @type {any} */ p) => p.p50],
      ["p99", (/** @type {any} */ p) => p.p99],
    ],
    " ms",
  );
}

function drawChart(
  /** @type {SVGSVGElement} */ svg,
  /** @type {any[]} */ points,
  /** @type {[string, (p: any) => number | null][]} */ lines,
  /** @type {string} */ unit,
) {
  const width = Math.max(200, Math.round(svg.clientWidth || 600));
  const height = 180;
  const left = 62;
  const right = 8;
  const top = 10;
  const bottom = 22;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "xMinYMin meet");
  const title = svg.querySelector("title");
  svg.replaceChildren();
  if (title !== null) svg.append(title);
  let max = 0;
  for (const [, value] of lines) for (const point of points) max = Math.max(max, value(point) ?? 0);
  const top_ = niceCeiling(max);
  const x = (/** @type {number} */ i) => left + ((width - left - right) * i) / (points.length - 1);
  const y = (/** @type {number} */ v) => top + (height - top - bottom) * (1 - v / top_);
  for (const fraction of [0, 0.5, 1]) {
    const value = top_ * fraction;
    svg.append(
      svgElement("line", {
        class: "grid",
        x1: left,
        x2: width - right,
        y1: y(value),
        y2: y(value),
      }),
      svgText(left - 6, y(value) + 4, `${round(value)}${fraction === 1 ? unit : ""}`, "end"),
    );
  }
  svg.append(
    svgText(left, height - 6, `${CHART_SECONDS} s ago`, "start"),
    svgText(width - right, height - 6, "now", "end"),
  );
  const firstSecond = points[0].second;
  for (const at of failoverTimes) {
    // Point i stands for the middle of its second.
    const i = (at - 500) / 1000 - firstSecond;
    if (i < 0 || i > points.length - 1) continue;
    const mark = svgElement("line", {
      class: "failover-mark",
      x1: x(i),
      x2: x(i),
      y1: top,
      y2: height - bottom,
    });
    const tip = document.createElementNS(SVG_NS, "title");
    tip.textContent = `fail-over at ${formatClock(at)}`;
    mark.append(tip);
    svg.append(mark);
  }
  for (const [name, value] of lines) {
    let d = "";
    points.forEach((point, i) => {
      const v = value(point);
      if (v === null) return;
      const joined = i > 0 && value(points[i - 1]) !== null;
      d += `${joined ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    });
    if (d !== "") svg.append(svgElement("path", { class: `line line-${name}`, d }));
  }
}

function svgElement(
  /** @type {string} */ name,
  /** @type {Record<string, string | number>} */ attributes,
) {
  const element = document.createElementNS(SVG_NS, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

function svgText(
  /** @type {number} */ x,
  /** @type {number} */ y,
  /** @type {string} */ text,
  /** @type {string} */ anchor,
) {
  const element = svgElement("text", { x, y, class: "axis-label", "text-anchor": anchor });
  element.textContent = text;
  return element;
}

function niceCeiling(/** @type {number} */ value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

// ------------------------------------------------------------------ formatting

function round(/** @type {number} */ value) {
  if (value >= 100) return Math.round(value);
  return Math.round(value * 10) / 10;
}

function formatMs(/** @type {number} */ ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  if (ms < 86_400_000) return `${(ms / 3_600_000).toFixed(1)} h`;
  return `${(ms / 86_400_000).toFixed(1)} days`;
}

function formatBytes(/** @type {number} */ bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}

function formatClock(/** @type {number} */ at) {
  const date = new Date(at);
  const pad = (/** @type {number} */ n, w = 2) => String(n).padStart(w, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

// ------------------------------------------------------------------ start

// ------------------------------------------------------------------ token

function showTokenForm() {
  $("token-form").hidden = false;
}

function startTokenForm() {
  const form = /** @type {HTMLFormElement} */ ($("token-form"));
  const input = /** @type {HTMLInputElement} */ ($("token-input"));
  if (apiToken() !== "") showTokenForm();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setApiToken(input.value.trim());
    input.value = "";
  });
  $("token-forget").addEventListener("click", () => setApiToken(""));
  const render = () => {
    const given = apiToken() !== "";
    setText($("token-state"), given ? "A token is set for this tab." : "No token set.");
    /** @type {HTMLButtonElement} */ ($("token-forget")).disabled = !given;
  };
  render();
  onTokenChange(() => {
    render();
    restartStreams();
  });
}

startTokenForm();
addEndpoint(location.origin);
void pollLoop();
window.addEventListener("resize", () => renderCharts());
