// The dashboard's key browser: lists the keys under a prefix (GET /v1/kv?prefix=, a page
// of 100 at a time) and keeps the list live from a watch of the same prefix
// (GET /v1/watch?prefix=&fromRevision=, server-sent events) starting just after the
// revision the list was read at, so no change between the read and the watch is missed.
//
// Plain JavaScript served as it is, like dashboard.js. Keys and values from the store are
// only ever set as textContent, never as HTML. It reads from the node that served the
// page, which answers ranges linearizably (through the master) and watches from its own
// copy; the stream (api.js, with the API token when one is set) reconnects after the last
// event it got (Last-Event-ID).

import { apiFetch, onTokenChange, openEvents, StreamRefused } from "./api.js";

const PAGE_LIMIT = 100;
/** Longest value shown in a cell, in characters; the rest is cut with an ellipsis. */
const VALUE_CHARS_MAX = 200;

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

function start() {
  const form = /** @type {HTMLFormElement} */ ($("keys-form"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    browse(/** @type {HTMLInputElement} */ ($("keys-prefix")).value);
  });
  $("keys-more").addEventListener("click", () => readPage());
  onTokenChange(() => browse(prefix));
  browse("");
}

async function browse(/** @type {string} */ chosen) {
  const current = ++listing;
  prefix = chosen;
  next = null;
  rows.clear();
  $("keys-body").replaceChildren();
  watch?.close();
  watch = null;
  const revision = await readPage();
  if (revision !== null && current === listing) follow(revision + 1);
}

/** Reads the next page and adds its rows; returns the revision it was read at, or null. */
async function readPage() {
  const current = listing;
  const query = new URLSearchParams({ prefix, limit: String(PAGE_LIMIT) });
  if (next !== null) query.set("after", next);
  try {
    const response = await apiFetch(`/v1/kv?${query}`);
    const page = await response.json();
    if (current !== listing) return null;
    if (!response.ok) {
      say(page.error ?? `the node answered ${response.status}`);
      return null;
    }
    for (const item of page.items) upsert(item.key, item.value, item.revision);
    next = page.next;
    /** @type {HTMLButtonElement} */ ($("keys-more")).hidden = next === null;
    say(`${rows.size} keys shown, read at revision ${page.revision}`);
    return page.revision;
  } catch (error) {
    if (current === listing) {
      say(`cannot list keys: ${error instanceof Error ? error.message : String(error)}`);
    }
    return null;
  }
}

function follow(/** @type {number} */ fromRevision) {
  const query = new URLSearchParams({ prefix, fromRevision: String(fromRevision) });
  watch = openEvents(`/v1/watch?${query}`, {
    onEvent: ({ data }) => {
      const change = JSON.parse(data);
      if (change.type === "delete") remove(change.key);
      // Keys past the pages read so far appear when their page is read.
      else if (next === null || rows.has(change.key) || change.key < lastKey()) {
        upsert(change.key, change.value, change.revision);
      }
      say(`${rows.size} keys shown, live at revision ${change.revision}`);
    },
    onError: (error) => {
      if (!(error instanceof StreamRefused)) return; // a dropped stream: it reconnects
      if (error.status === 410) {
        // The node no longer holds the changes since the list was read (compacted): the
        // list is stale, so read it again and watch from there.
        say("the list fell behind the node's history: reading it again");
        void browse(prefix);
      } else {
        say(`live updates stopped: the node answered ${error.status}`);
      }
    },
  });
}

function lastKey() {
  const last = $("keys-body").lastElementChild;
  return last === null ? "" : (last.firstElementChild?.textContent ?? "");
}

function upsert(
  /** @type {string} */ key,
  /** @type {string} */ value,
  /** @type {number} */ revision,
) {
  let row = rows.get(key);
  if (row === undefined) {
    row = document.createElement("tr");
    for (let i = 0; i < 3; i++) row.append(document.createElement(i === 0 ? "th" : "td"));
    row.firstElementChild?.setAttribute("scope", "row");
    /** @type {HTMLElement} */ (row.firstElementChild).textContent = key;
    rows.set(key, row);
    insertSorted(row, key);
  }
  const [, valueCell, revisionCell] = row.children;
  const shown = value.length > VALUE_CHARS_MAX ? `${value.slice(0, VALUE_CHARS_MAX)}…` : value;
  /** @type {HTMLElement} */ (valueCell).textContent = shown;
  /** @type {HTMLElement} */ (revisionCell).textContent = String(revision);
  row.classList.remove("changed");
  void row.offsetWidth; // restart the highlight
  row.classList.add("changed");
}

function insertSorted(/** @type {HTMLTableRowElement} */ row, /** @type {string} */ key) {
  const body = $("keys-body");
  for (const other of body.children) {
    if ((other.firstElementChild?.textContent ?? "") > key) {
      body.insertBefore(row, other);
      return;
    }
  }
  body.append(row);
}

function remove(/** @type {string} */ key) {
  rows.get(key)?.remove();
  rows.delete(key);
}

function say(/** @type {string} */ text) {
  $("keys-status").textContent = text;
}

start();
