// The dashboard's key browser: lists the keys under a prefix (GET /v1/kv?prefix=, a page
// of 100 at a time) and keeps the list live from a watch of the same prefix
// (GET /v1/watch?prefix=&fromRevision=, server-sent events) starting just after the
// revision the list was read at, so no change between the read and the watch is missed.
//
// Plain JavaScript served as it is, like dashboard.js. Keys and values from the store are
// only ever set as textContent, never as HTML, with the characters that would show as
// something else or as nothing (controls, bidirectional overrides, zero-width spaces) drawn
// as visible escapes. It reads from the node that served the page, which answers ranges
// linearizably (through the master) and watches from its own copy (api.js, with the API
// token when one is set). When the page's node stops answering (its stream drops, or the
// members table finds it silent) the browser says it is not connected and watches again,
// from the revision after the last one it showed, on a member that answers (the members
// let the cluster's own dashboards read their keys across origins, no other page), and
// goes back to the page's node once that answers again.

import {
  apiFetch,
  memberAnswers,
  onMembersChange,
  onTokenChange,
  openEvents,
  otherMembersAnswering,
  pageNodeAnswers,
  StreamRefused,
} from "./api.js";

const PAGE_LIMIT = 100;
/** Longest value shown in a cell, in characters; the rest is cut with an ellipsis. */
const VALUE_CHARS_MAX = 200;
/** How long a listing may take before the page says the node does not answer, ms. */
const LIST_TIMEOUT_MS = 5000;
/** Wait before listing or watching again after the node did not answer, milliseconds. */
const RETRY_MS = 1000;

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** The rows shown, by key. @type {Map<string, HTMLTableRowElement>} */
const rows = new Map();
/** @type {{ close(): void } | null} */
let watch = null;
let prefix = "";
/** The `next` token of the last page read, or null after the last page. */
let next = /** @type {string | null} */ (null);
/**
 * Which listing is current: a page or a watch event that arrives for an earlier one (the
 * prefix changed while it was on its way) is dropped, so two listings never mix.
 */
let listing = 0;
/** The revision the list is known to be current at: the first page's, then the watch's. */
let revision = 0;
/**
 * The id of the last change shown ("R.n": the n-th change of revision R), so that a watch
 * opened again resumes inside a revision that changed many keys (a transaction, a prefix
 * delete) rather than after it; null until the watch delivered one.
 */
let lastEventId = /** @type {string | null} */ (null);
/** The last key of the pages read so far: a key past it appears when its page is read. */
let lastRead = "";
/**
 * How many rows the table holds at most: a page's worth for each page read. The watch
 * adds the keys made among the rows shown; past this many, the last row goes and is read
 * again with the next page (More keys), so a busy prefix never grows the table unbounded.
 */
let shownMax = 0;
/** Whether the watch is connected; false between a drop and the next connection. */
let live = false;
/** Why the watch is not connected, for the status line; null while it is. */
let dropped = /** @type {string | null} */ (null);
/** The next attempt to list or watch, while one is waiting. */
let retry = /** @type {ReturnType<typeof setTimeout> | null} */ (null);
/**
 * Where the keys are read: "" for the page's node, or the base URL of another member while
 * the members table finds the page's node silent.
 */
let source = "";

/** The page's node unless the members table finds it silent, then the first member that answers. */
function pickSource() {
  if (pageNodeAnswers() !== false) return "";
  return otherMembersAnswering()[0] ?? "";
}

/** The node the keys are read from, for the status line. */
function sourceName() {
  return source === ""
    ? `this page's node, ${location.host}`
    : `member ${source.replace(/^https?:\/\//, "")}`;
}

/** What the status line adds while the keys come from another member. */
function via() {
  return source === ""
    ? ""
    : ` (from member ${source.replace(/^https?:\/\//, "")}: this page's node does not answer)`;
}

function start() {
  const form = /** @type {HTMLFormElement} */ ($("keys-form"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    browse(/** @type {HTMLInputElement} */ ($("keys-prefix")).value);
  });
  $("keys-more").addEventListener("click", () => void morePages());
  onTokenChange(() => browse(prefix));
  // A paused node keeps its stream open and sends nothing: the members table notices. Only
  // the moment it does counts: a node that came back may answer the watch before it
  // answers the table again.
  let sourceDown = false;
  let watched = source;
  onMembersChange(() => {
    if (watched !== source) sourceDown = false;
    watched = source;
    const down = (source === "" ? pageNodeAnswers() : memberAnswers(source)) === false;
    if (down && !sourceDown && watch !== null) {
      drop("it stopped answering");
    } else if (source !== "" && pageNodeAnswers() === true && watch !== null) {
      // The page's node answers again: watch there, from the next revision.
      stopWatch();
      source = "";
      follow();
    }
    sourceDown = down;
  });
  browse("");
}

async function browse(/** @type {string} */ chosen) {
  const current = ++listing;
  prefix = chosen;
  next = null;
  lastEventId = null;
  lastRead = "";
  shownMax = 0;
  rows.clear();
  $("keys-body").replaceChildren();
  stopWatch();
  source = pickSource();
  const read = await readPage();
  if (current !== listing) return;
  if (read === "unreachable") {
    retry = setTimeout(() => browse(prefix), RETRY_MS);
  } else if (read !== null) {
    revision = read;
    follow();
  }
}

/**
 * Reads the next page and adds its rows; returns the revision it was read at, null when the
 * node refused it, or "unreachable" when it did not answer.
 * @returns {Promise<number | null | "unreachable">}
 */
async function readPage() {
  const current = listing;
  const query = new URLSearchParams({ prefix, limit: String(PAGE_LIMIT) });
  if (next !== null) query.set("after", next);
  try {
    const response = await apiFetch(`${source}/v1/kv?${query}`, {
      signal: AbortSignal.timeout(LIST_TIMEOUT_MS),
    });
    const page = await response.json();
    if (current !== listing) return null;
    if (!response.ok) {
      if (response.status >= 500) {
        // Busy, stopping, no master for a moment: the same listing may succeed soon.
        say(
          `cannot list keys: ${page.error ?? `the node answered ${response.status}`}; retrying…`,
          true,
        );
        return "unreachable";
      }
      say(page.error ?? `the node answered ${response.status}`);
      return null;
    }
    for (const item of page.items) upsert(item.key, item.value, item.revision);
    lastRead = page.items.at(-1)?.key ?? lastRead;
    next = page.next;
    shownMax += PAGE_LIMIT;
    keepShownMax();
    /** @type {HTMLButtonElement} */ ($("keys-more")).hidden = next === null;
    say(`${rows.size} keys shown, read at revision ${page.revision}${via()}`);
    return page.revision;
  } catch (error) {
    if (current === listing) {
      const why = error instanceof Error ? error.message : String(error);
      say(`cannot list keys: ${sourceName()} does not answer (${why}); retrying…`, true);
      source = pickSource();
    }
    return "unreachable";
  }
}

/** Reads the next page (More keys), again after RETRY_MS while the node does not answer. */
async function morePages() {
  const current = listing;
  while ((await readPage()) === "unreachable" && current === listing) {
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    if (current !== listing) return;
  }
}

/** Watches the prefix from the revision after the newest one shown. */
function follow() {
  const current = listing;
  const query = new URLSearchParams({ prefix, fromRevision: String(revision + 1) });
  watch = openEvents(`${source}/v1/watch?${query}`, {
    lastEventId,
    onOpen: () => {
      live = true;
      if (dropped !== null) {
        dropped = null;
        say(`${rows.size} keys shown, live at revision ${revision}${via()}`);
      }
    },
    onEvent: ({ data, id }) => {
      if (current !== listing) return;
      const change = JSON.parse(data);
      if (id !== null) lastEventId = id;
      if (change.type === "delete") remove(change.key);
      // Keys past the pages read so far appear when their page is read.
      // (Compared with the last key read, not the last row: that row may have been deleted.)
      else if (next === null || rows.has(change.key) || change.key <= lastRead) {
        upsert(change.key, change.value, change.revision);
        keepShownMax();
      }
      revision = change.revision;
      say(`${rows.size} keys shown, live at revision ${change.revision}${via()}`);
    },
    onError: (error) => {
      if (current !== listing) return;
      if (!(error instanceof StreamRefused)) {
        drop(live ? "its stream dropped" : "it does not answer");
      } else if (error.status === 410) {
        // The node no longer holds the changes since the list was read (compacted): the
        // list is stale, so read it again and watch from there.
        say("the list fell behind the node's history: reading it again");
        void browse(prefix);
      } else {
        // The stream tries again by itself; once it opens, the status line says so.
        dropped = `the node answered ${error.status}`;
        say(`live updates stopped: the node answered ${error.status}; retrying…`);
      }
    },
    onClose: () => {
      if (current === listing) drop("its stream ended");
    },
  });
}

/**
 * The watch lost its node: say so, and watch again soon from the revision after the last
 * one shown (the stream's own reconnect would wait on a paused node's open stream), on the
 * page's node or, while the members table finds that silent, on a member that answers.
 */
function drop(/** @type {string} */ why) {
  const current = listing;
  stopWatch();
  dropped = why;
  say(
    `${rows.size} keys shown as of revision ${revision}; not connected to live updates (${sourceName()}: ${why}): retrying…`,
    true,
  );
  retry = setTimeout(() => {
    retry = null;
    if (current !== listing) return;
    source = pickSource();
    follow();
  }, RETRY_MS);
}

function stopWatch() {
  watch?.close();
  watch = null;
  live = false;
  if (retry !== null) clearTimeout(retry);
  retry = null;
}

function upsert(
  /** @type {string} */ key,
  /** @type {string} */ value,
  /** @type {number} */ changedAt,
) {
  let row = rows.get(key);
  if (row === undefined) {
    row = document.createElement("tr");
    row.dataset.key = key;
    for (let i = 0; i < 3; i++) row.append(document.createElement(i === 0 ? "th" : "td"));
    row.firstElementChild?.setAttribute("scope", "row");
    showText(/** @type {HTMLElement} */ (row.firstElementChild), key);
    rows.set(key, row);
    insertSorted(row, key);
  }
  const [, valueCell, revisionCell] = row.children;
  showText(/** @type {HTMLElement} */ (valueCell), cut(value));
  /** @type {HTMLElement} */ (revisionCell).textContent = String(changedAt);
  row.classList.remove("changed");
  void row.offsetWidth; // restart the highlight
  row.classList.add("changed");
}

/** `value`, cut to VALUE_CHARS_MAX characters, never inside a surrogate pair. */
function cut(/** @type {string} */ value) {
  if (value.length <= VALUE_CHARS_MAX) return value;
  const end = /[\uD800-\uDBFF]/.test(value[VALUE_CHARS_MAX - 1] ?? "")
    ? VALUE_CHARS_MAX - 1
    : VALUE_CHARS_MAX;
  return `${value.slice(0, end)}…`;
}

/**
 * One character that would show as something else or as nothing: controls, format
 * characters (bidirectional overrides and isolates, zero-width spaces and joiners, the
 * byte-order mark), lone surrogates, line and paragraph separators, and every space but
 * the plain one. A key "a\u202Etxt.exe" must not read as "aexe.txt".
 */
const HIDDEN = /([\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]|(?! )\p{Zs})/u;

/** Sets `text` as `cell`'s content, with each HIDDEN character drawn as a \u{…} escape. */
function showText(/** @type {HTMLElement} */ cell, /** @type {string} */ text) {
  const parts = text.split(HIDDEN);
  if (parts.length === 1) {
    cell.textContent = text;
    return;
  }
  cell.replaceChildren();
  parts.forEach((part, i) => {
    if (i % 2 === 0) {
      if (part !== "") cell.append(part);
      return;
    }
    const code = (part.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0");
    const mark = document.createElement("span");
    mark.className = "escape";
    mark.title = `character U+${code}, which would show as something else or not at all`;
    mark.textContent = `\\u{${code}}`;
    cell.append(mark);
  });
}

function insertSorted(/** @type {HTMLTableRowElement} */ row, /** @type {string} */ key) {
  const body = $("keys-body");
  for (const other of body.children) {
    const otherKey = /** @type {HTMLElement} */ (other).dataset.key ?? "";
    if (otherKey > key) {
      body.insertBefore(row, other);
      return;
    }
  }
  body.append(row);
}

/**
 * Leaves out the last rows while the table holds more than `shownMax`: the pages read end
 * at the last row kept, and More keys reads on from it.
 */
function keepShownMax() {
  if (rows.size <= shownMax) return;
  const body = $("keys-body");
  while (rows.size > shownMax) {
    const last = /** @type {HTMLElement} */ (body.lastElementChild);
    remove(last.dataset.key ?? "");
  }
  lastRead = /** @type {HTMLElement} */ (body.lastElementChild).dataset.key ?? "";
  next = tokenAfter(lastRead);
  /** @type {HTMLButtonElement} */ ($("keys-more")).hidden = false;
}

/**
 * The `after` of a page that starts past `key`: the key's UTF-8 bytes in base64url, as
 * the node makes a page's `next` (src/http/store-input.ts). The API calls the token
 * opaque to clients; this page is the node's own.
 */
function tokenAfter(/** @type {string} */ key) {
  const bytes = new TextEncoder().encode(key);
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function remove(/** @type {string} */ key) {
  rows.get(key)?.remove();
  rows.delete(key);
}

/**
 * Shows `text` as the key browser's state; with `elsewhere`, followed by a link to the
 * dashboard of a member that answers, where the keys can be read meanwhile.
 */
function say(/** @type {string} */ text, elsewhere = false) {
  const status = $("keys-status");
  const [other] = elsewhere ? otherMembersAnswering() : [];
  if (other === undefined) {
    status.textContent = text;
    return;
  }
  const link = document.createElement("a");
  link.href = `${other}/`;
  link.textContent = other.replace(/^https?:\/\//, "");
  status.replaceChildren(`${text} The keys can be read meanwhile on `, link, ".");
}

start();
