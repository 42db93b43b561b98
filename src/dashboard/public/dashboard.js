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

import { apiFetch, apiToken, onTokenChange, openEvents, setApiToken, withToken } from "./api.js";

const POLL_MS = 1000;
const STATUS_TIMEOUT_MS = 900;
const CHART_SECONDS = 60;
const TIMELINE_MAX = 200;
const SAMPLES_KEPT = 150;
const PAUSE_MS = 5000;
/** Contact older than this is "slow", older than LOST_MS "lost". */
const SLOW_MS = 300;
const LOST_MS = 2000;
const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * @typedef {{ url: string, id: number | null, status: any, ok: boolean, lastOkAt: number,
 *   failedSince: number | null, error: string | null, faults: boolean | null,
 *   faultToken: string | null, partitioned: boolean, everOk: boolean }} NodeView
 */

/** @type {Map<string, NodeView>} by base URL */
const views = new Map();
/** @type {Map<string, { close(): void }>} by base URL */
const streams = new Map();
/** @type {Map<number, {at: number, requestsPerSecond: number, errorsPerSecond: number, latencyMs: any}[]>} */
const samples = new Map();
/** @type {Map<string, any>} active state transfers by key */
const transfers = new Map();
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
  });
  openStream(base);
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
  try {
    const status = await fetchJson(`${view.url}/v1/status`);
    const wasDown = view.everOk && !view.ok;
    view.status = status;
    view.id = status.id;
    view.ok = true;
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
    if (view.ok && view.id !== null) {
      addLocal(
        `${view.url}:down:${Date.now()}`,
        "down",
        view.id,
        "stopped answering the dashboard",
      );
    }
    view.ok = false;
    view.failedSince ??= Date.now();
    const problem = tokenProblem(error);
    if (problem !== null) showTokenForm();
    view.error =
      problem ??
      (error instanceof Error && error.name === "AbortError" ? "no answer" : "unreachable");
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
  forgetDuplicates();
  render();
}

/**
 * The page may have been opened at another name of a member than the one it advertises
 * (localhost rather than 127.0.0.1): keep the advertised URL only.
 */
function forgetDuplicates() {
  const advertised = new Set();
  for (const view of views.values()) {
    for (const member of view.status?.members ?? []) advertised.add(origin(member.httpUrl ?? ""));
  }
  for (const view of [...views.values()]) {
    if (view.id === null || advertised.has(view.url)) continue;
    const twin = [...views.values()].some(
      (v) => v !== view && v.id === view.id && advertised.has(v.url),
    );
    if (!twin) continue;
    views.delete(view.url);
    streams.get(view.url)?.close();
    streams.delete(view.url);
  }
}

/** Stops polling nodes the master no longer lists: they were removed from the cluster. */
function forgetRemoved(/** @type {number[]} */ ids) {
  for (const view of [...views.values()]) {
    if (view.id === null || ids.includes(view.id)) continue;
    views.delete(view.url);
    streams.get(view.url)?.close();
    streams.delete(view.url);
  }
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
    list.push(item);
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

function onTransfer(/** @type {any} */ e) {
  const key = `${e.node}:transfer:${e.direction}:${e.peer}:${e.snapshotIndex}`;
  if (e.done) transfers.delete(key);
  else transfers.set(key, e);
  const percent = e.totalBytes > 0 ? Math.floor((100 * e.bytes) / e.totalBytes) : 100;
  const toward = e.direction === "sending" ? `to node ${e.peer}` : `from node ${e.peer}`;
  const text = e.done
    ? `state transfer ${toward} ended: snapshot at index ${e.snapshotIndex}, ${formatBytes(e.totalBytes)}`
    : `state transfer ${toward}: ${percent}% of ${formatBytes(e.totalBytes)} (snapshot at index ${e.snapshotIndex})`;
  const existing = timeline.find((entry) => entry.key === key);
  if (existing !== undefined) {
    const textCell = existing.li.querySelector(".text");
    if (textCell !== null) textCell.textContent = text;
    return;
  }
  addEntry(key, e.at, "transfer", e.node, text, false);
}

/** An event the dashboard saw itself (a node stopped or resumed answering it). */
function addLocal(
  /** @type {string} */ key,
  /** @type {string} */ kind,
  /** @type {number} */ node,
  /** @type {string} */ text,
) {
  addEntry(key, Date.now(), kind, node, text, false);
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

function addEntry(
  /** @type {string} */ key,
  /** @type {number} */ at,
  /** @type {string} */ kind,
  /** @type {number} */ node,
  /** @type {string} */ text,
  /** @type {boolean} */ minor,
) {
  const previous = lastEntry.get(node);
  if (
    previous !== undefined &&
    previous.kind === kind &&
    previous.text === text &&
    at >= previous.at
  ) {
    previous.count++;
    previous.at = at;
    const repeat = previous.li.querySelector(".repeat");
    if (repeat !== null)
      repeat.textContent = ` (${previous.count} times, last at ${formatClock(at)})`;
    return;
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
  const repeat = document.createElement("span");
  repeat.className = "repeat";
  body.append(who, text, repeat);
  if (at >= (previous?.at ?? 0)) lastEntry.set(node, { kind, text, at, count: 1, li });
  li.append(time, label, body);
  const list = $("timeline");
  let index = timeline.findIndex((entry) => entry.at < at);
  if (index === -1) index = timeline.length;
  const before = timeline[index];
  list.insertBefore(li, before === undefined ? null : before.li);
  timeline.splice(index, 0, { key, at, li });
  while (timeline.length > TIMELINE_MAX) timeline.pop()?.li.remove();
  setTimeout(() => {
    li.dataset.new = "false";
  }, 1500);
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
  /** @type {HTMLButtonElement} */ ($("kill-master")).disabled = master === null;
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
  const answering = [...views.values()].filter((v) => v.ok).length;
  const changing =
    master?.status.changeInProgress === true ? "; a membership change is in progress" : "";
  $("sources").textContent =
    `${answering} of ${views.size} nodes (${[...views.keys()].join(", ")})${changing}`;
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
  faults.append(group);
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
  const role = status === null ? (view === null ? "unknown" : "unreachable") : status.role;
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
  const partitioned = view?.partitioned === true ? " (partitioned)" : "";
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
  for (const button of row.querySelectorAll("button")) {
    const b = /** @type {HTMLButtonElement} */ (button);
    b.disabled = view === null || !view.ok || view.faults !== true;
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
  if (view === null || !view.ok) {
    const since = view?.failedSince;
    const refused = view?.error?.includes("token") === true ? view.error : null;
    const text =
      refused ??
      (since == null ? "not heard from" : `no answer for ${formatMs(Date.now() - since)}`);
    target.className = "col-health health-lost";
    setText(target, text);
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
  const word = contact < SLOW_MS ? "ok" : contact < LOST_MS ? "slow" : "lost";
  target.className = `col-health health-${word} num`;
  setText(target, `${word}, ${formatMs(contact)} ago`);
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
  if (answering.length === 0 && refused !== undefined) {
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
    verdict = answering.length === ids.length ? "healthy" : "degraded";
    const state = verdict === "healthy" ? "Healthy" : "Degraded";
    text = `${state}: node ${master.id} is master in term ${master.status.term}; ${of}.`;
  }
  const element = $("verdict");
  element.dataset.verdict = verdict;
  setText(element, text);
}

// ------------------------------------------------------------------ faults

async function inject(/** @type {number} */ id, /** @type {string} */ fault) {
  const view = viewOf(id);
  const message = $("fault-message");
  if (view === null) return;
  const query = fault === "pause" ? `?ms=${PAUSE_MS}` : "";
  const wasMaster = view.ok && view.status.role === "master";
  const who = `node ${id}${wasMaster ? " (the master)" : ""}`;
  message.textContent = `Sending ${fault} to ${who}…`;
  try {
    const response = await fetch(`${view.url}/v1/faults/${fault}${query}`, {
      method: "POST",
      headers: withToken({ "X-Baton-Fault": view.faultToken ?? "" }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      message.textContent = `${who} refused ${fault}: ${body.error ?? `HTTP ${response.status}`}`;
      return;
    }
  } catch {
    if (fault !== "kill") {
      message.textContent = `${who} did not answer the ${fault} request.`;
      return;
    }
  }
  if (fault === "partition" || fault === "heal") view.partitioned = fault === "partition";
  const next = wasMaster
    ? " Watch the timeline: a backup takes over, usually within a second."
    : "";
  const done = {
    kill: `Killed ${who}.`,
    pause: `Paused ${who} for ${PAUSE_MS / 1000} s.`,
    partition: `Cut ${who} off from its peers.`,
    heal: `Healed the partition of node ${id}.`,
  };
  message.textContent = `${done[/** @type {keyof typeof done} */ (fault)]}${fault === "heal" ? "" : next}`;
  render();
}

$("kill-master").addEventListener("click", () => {
  const master = currentMaster();
  if (master?.id != null) void inject(master.id, "kill");
});

// ------------------------------------------------------------------ charts

/** Per-second totals over the chart window, oldest first. */
function series() {
  // The current second is still filling (each node samples at its own moment): stop before.
  const now = Math.floor(Date.now() / 1000) - 1;
  const points = [];
  for (let second = now - CHART_SECONDS; second <= now; second++) {
    points.push({ second, rate: 0, errors: 0, p50: 0, p99: 0, seen: false });
  }
  const first = now - CHART_SECONDS;
  for (const list of samples.values()) {
    for (const sample of list) {
      const point = points[Math.floor(sample.at / 1000) - first];
      if (point === undefined) continue;
      point.seen = true;
      point.rate += sample.requestsPerSecond;
      point.errors += sample.errorsPerSecond;
      if (sample.latencyMs !== null) {
        point.p50 = Math.max(point.p50, sample.latencyMs.p50);
        point.p99 = Math.max(point.p99, sample.latencyMs.p99);
      }
    }
  }
  return points;
}

function renderCharts() {
  const points = series();
  const last = [...points].reverse().find((point) => point.seen);
  $("chart-summary").textContent =
    last === undefined
      ? "No samples yet."
      : `Last second: ${round(last.rate)} requests/s, ${round(last.errors)} errors/s, median ${round(last.p50)} ms, 99th percentile ${round(last.p99)} ms.`;
  drawChart(
    /** @type {SVGSVGElement} */ (/** @type {unknown} */ ($("rate-chart"))),
    points,
    [
      ["rate", (/** @type {any} */ p) => p.rate],
      ["errors", (/** @type {any} */ p) => p.errors],
    ],
    "/s",
  );
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
  /** @type {[string, (p: any) => number][]} */ lines,
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
  for (const [, value] of lines) for (const point of points) max = Math.max(max, value(point));
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
    const i = at / 1000 - firstSecond;
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
      if (!point.seen) return;
      d += `${d === "" || !points[i - 1]?.seen ? "M" : "L"}${x(i).toFixed(1)},${y(value(point)).toFixed(1)}`;
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
  return `${Math.round(ms / 60_000)} min`;
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
