// What the dashboard's scripts share to talk to the nodes: the API token the user gave
// (on a node started with --tokens every route but the page and the health checks needs
// one), requests that carry it, and server-sent event streams read through fetch, since a
// browser's EventSource cannot send an Authorization header.
//
// The token is kept in sessionStorage: for this tab only, gone when it closes, never sent
// anywhere but to the cluster's own members (the URLs their status lists). A `read` token
// shows everything; the fault buttons need `admin`.

const TOKEN_KEY = "baton-api-token";
const TOKEN_EVENT = "baton-token";
const MEMBERS_EVENT = "baton-members";

/** The tab's stored token, read once when the page loads. */
function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}

/** The token in use: the one source every request and the form read. */
let token = storedToken();

/** The token the user gave, or "" for none. */
export function apiToken() {
  return token;
}

/** Keeps `given` ("" forgets it) and tells every listener of `onTokenChange`. */
export function setApiToken(/** @type {string} */ given) {
  token = given;
  try {
    if (given === "") sessionStorage.removeItem(TOKEN_KEY);
    else sessionStorage.setItem(TOKEN_KEY, given);
  } catch {
    // Storage refused (a private window's quota): the token lasts until the page reloads.
  }
  window.dispatchEvent(new Event(TOKEN_EVENT));
}

export function onTokenChange(/** @type {() => void} */ listener) {
  window.addEventListener(TOKEN_EVENT, listener);
}

/**
 * Whether each member answers the dashboard (if only to refuse), by its advertised base URL,
 * and which of them served the page: the members table's polling finds out, and the key
 * browser reads from another member that answers while the page's node does not.
 */
let members = { answers: /** @type {Map<string, boolean>} */ (new Map()), pageNode: "" };

/** Records what the members table found, and tells every listener of `onMembersChange`. */
export function reportMembers(
  /** @type {Map<string, boolean>} */ answers,
  /** @type {string} */ pageNode,
) {
  members = { answers, pageNode };
  window.dispatchEvent(new Event(MEMBERS_EVENT));
}

/** Whether the page's node answers: true, false, or undefined before it was asked. */
export function pageNodeAnswers() {
  return members.answers.get(members.pageNode);
}

/** Whether the member at `url` answers: true, false, or undefined before it was asked. */
export function memberAnswers(/** @type {string} */ url) {
  return members.answers.get(url);
}

/** The base URLs of the other members that answer. */
export function otherMembersAnswering() {
  return [...members.answers]
    .filter(([url, ok]) => ok && url !== members.pageNode)
    .map(([url]) => url);
}

export function onMembersChange(/** @type {() => void} */ listener) {
  window.addEventListener(MEMBERS_EVENT, listener);
}

/** `headers` with the token's Authorization header added when there is a token. */
export function withToken(/** @type {Record<string, string>} */ headers = {}) {
  return token === "" ? headers : { ...headers, Authorization: `Bearer ${token}` };
}

/** fetch() with the token and no cache. */
export function apiFetch(/** @type {string} */ url, /** @type {RequestInit} */ init = {}) {
  const headers = withToken(/** @type {Record<string, string>} */ (init.headers ?? {}));
  return fetch(url, { cache: "no-store", ...init, headers });
}

/** Thrown for an answer that is not a stream: its HTTP status, for the caller to show. */
export class StreamRefused extends Error {
  constructor(/** @type {number} */ status) {
    super(`HTTP ${status}`);
    this.status = status;
  }
}

/**
 * Reads the server-sent events of `url` (as EventSource does, but through fetch, with the
 * token) and calls `onEvent({ data, id })` for each event with data. When the stream ends
 * or fails it reconnects after `retryMs` (or the server's `retry:`), sending the id of the
 * last event that had one as Last-Event-ID, so a node resumes where it left off.
 * `onError(error)` hears of each failure (a StreamRefused for an error status), and
 * `onClose()` of the end of a stream that had opened, however it ended. Returns a handle
 * whose close() ends it for good.
 *
 * `lastEventId` resumes a stream an earlier handle read, from the id of its last event.
 *
 * @param {string} url
 * @param {{ onEvent: (event: { data: string, id: string | null }) => void,
 *   onOpen?: () => void, onError?: (error: unknown) => void, onClose?: () => void,
 *   retryMs?: number, lastEventId?: string | null }} handlers
 */
export function openEvents(url, handlers) {
  let retryMs = handlers.retryMs ?? 3000;
  /** @type {string | null} */
  let lastId = handlers.lastEventId ?? null;
  let closed = false;
  /** @type {AbortController | null} */
  let controller = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  let timer = null;
  /** Attempts that failed in a row: each waits twice as long, up to STREAM_RETRY_MS_MAX. */
  let failures = 0;

  // A hidden tab lets its streams go and takes them up again (from the last event id) when
  // it is shown: the browser allows six connections per node across all the tabs of a
  // site, and a few open dashboards holding a stream to every member took them all, so
  // that status requests queued, timed out and showed healthy nodes as unreachable.
  const onVisibility = () => {
    if (closed) return;
    if (pageHidden()) {
      if (timer !== null) clearTimeout(timer);
      timer = null;
      controller?.abort();
    } else if (controller === null && timer === null) {
      void connect();
    }
  };
  // (No document outside a browser: the tests run this reader in Node.js.)
  globalThis.document?.addEventListener("visibilitychange", onVisibility);

  /** A consumer's bad event (malformed data) must not end the stream. */
  const deliver = (/** @type {{ data: string, id: string | null }} */ event) => {
    try {
      handlers.onEvent(event);
    } catch {
      // Skipped; the next event stands alone.
    }
  };

  const connect = async () => {
    timer = null;
    if (closed || pageHidden()) return;
    const ownController = new AbortController();
    controller = ownController;
    let opened = false;
    // A stream that sends nothing (not even the node's keep-alive comment, every 15 s) for
    // this long is dead (a machine gone without a reset): drop it and connect again.
    /** @type {ReturnType<typeof setTimeout> | null} */
    let silence = null;
    const heard = () => {
      if (silence !== null) clearTimeout(silence);
      silence = setTimeout(() => ownController.abort(), STREAM_SILENCE_MS_MAX);
    };
    try {
      const headers = withToken(
        lastId === null
          ? { Accept: "text/event-stream" }
          : { Accept: "text/event-stream", "Last-Event-ID": lastId },
      );
      heard();
      const response = await fetch(url, {
        headers,
        cache: "no-store",
        signal: ownController.signal,
      });
      const type = response.headers.get("content-type") ?? "";
      if (!response.ok || !type.startsWith("text/event-stream") || response.body === null) {
        void response.body?.cancel();
        throw new StreamRefused(response.status);
      }
      opened = true;
      failures = 0;
      handlers.onOpen?.();
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      /** @type {string[]} */
      let data = [];
      /** @type {string | null} */
      let id = null;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        heard();
        buffer += value;
        let end = buffer.indexOf("\n");
        while (end >= 0) {
          const line = buffer.slice(0, end).replace(/\r$/, "");
          buffer = buffer.slice(end + 1);
          end = buffer.indexOf("\n");
          if (line === "") {
            if (id !== null) lastId = id;
            if (data.length > 0) deliver({ data: data.join("\n"), id });
            data = [];
            id = null;
            continue;
          }
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (field === "data") data.push(text);
          else if (field === "id") id = text;
          else if (field === "retry" && /^\d+$/.test(text)) retryMs = Number(text);
        }
      }
    } catch (error) {
      // Let go while hidden: not a failure, and nothing to retry until shown.
      if (!closed && !pageHidden()) handlers.onError?.(error);
    }
    if (silence !== null) clearTimeout(silence);
    if (controller === ownController) controller = null;
    if (opened && !closed) handlers.onClose?.();
    if (closed || pageHidden()) return;
    if (!opened) failures++;
    // The first try again after retryMs, then twice as long after each failure in a row.
    const doublings = Math.min(Math.max(failures - 1, 0), 5);
    timer = setTimeout(connect, Math.min(retryMs * 2 ** doublings, STREAM_RETRY_MS_MAX));
  };

  void connect();
  return {
    close() {
      closed = true;
      globalThis.document?.removeEventListener("visibilitychange", onVisibility);
      controller?.abort();
      if (timer !== null) clearTimeout(timer);
    },
  };
}

/** Whether the page is hidden (a background tab); never outside a browser. */
function pageHidden() {
  return globalThis.document?.hidden === true;
}

/** The longest a stream may stay silent before it is taken for dead, ms. */
const STREAM_SILENCE_MS_MAX = 40_000;
/** The longest wait before connecting again after failures in a row, ms. */
const STREAM_RETRY_MS_MAX = 30_000;
