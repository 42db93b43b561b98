/**
 * The structural rules every decoded frame must satisfy before any other code sees it:
 * the frame types that may cross the wire (protocol messages plus the handshake's control
 * frames), the fields each one has and what values they may hold. It owns turning
 * "whatever msgpack produced" into a fresh, well-typed Frame, or a protocol error value.
 *
 * It must never throw for bad input and never pass through an object it did not build
 * itself: the result holds only known fields, and byte fields are copied into plain
 * Uint8Arrays that share no memory with the receive buffer. A peer's bad bytes are a
 * protocol error, never an assertion in the core.
 *
 * The schema table is typed against the `Message` union, so adding a message type or a
 * field in src/protocol/messages.ts fails to compile here until its rule is written down.
 */

import type { Append, Entry, ForwardOutcome, NodeId, WireMessage } from "../protocol/messages.js";
import type { PeerInfo } from "./transport.js";

/** Written by the dialer in its hello; anything else is not a Baton node. */
export const PROTOCOL_MAGIC = "baton";
/**
 * Bumped on any incompatible change of frames or messages. Version 2 added `advertise` to
 * hello and hello_ok; version 3 added the forward_* messages (a backup forwards proposals
 * and read-index requests to the master over the peer link) and switchover (timeout_now,
 * and `handover` in vote_request); version 4 added `incarnation` (the sender's member
 * incarnation) to every core message and `config` log entries (membership changes);
 * version 5 added the cluster id drawn at bootstrap (`clusterUid` in hello and hello_ok)
 * and the bootstrap gate's fields in term_probe_response; version 6 added the dialler's
 * member incarnation and peer address (`memberIncarnation`, `peerAddress` in hello), by
 * which a node tells a member that was removed from one added back under the same id, and
 * can answer a member added while it was behind on the log; version 7 added ping and pong,
 * by which each side of a connection learns that the other still hears it. Nodes of
 * different versions refuse each other.
 */
export const PROTOCOL_VERSION = 7;
/**
 * Largest frame accepted before a handshake is done, in bytes, and the size of the frames
 * sent outside it (pings, pongs). A hello and its answers are far smaller; a small bound
 * keeps strangers from making a node buffer megabytes.
 */
export const HANDSHAKE_FRAME_BYTES_MAX = 8 * 1024;
/** Node ids are positive integers up to this value (an unsigned 32-bit integer). */
export const NODE_ID_MAX = 0xffff_ffff;
/** Longest string a frame may carry (cluster id, refusal reason), in UTF-16 code units. */
export const FRAME_TEXT_CHARS_MAX = 1024;
/** Longest `PeerInfo.httpUrl`, in bytes (the URL is printable ASCII, one byte a char). */
export const HTTP_URL_BYTES_MAX = 256;

/**
 * A random number a transport draws when it is created and presents in every handshake.
 * A peer dialling in with a new incarnation has restarted, which proves that any older
 * connection to it is dead even if TCP has not noticed yet (a crashed host sends no FIN).
 */
export type Incarnation = number;

/** Incarnations are drawn from 1..INCARNATION_MAX, a safe integer range. */
export const INCARNATION_MAX = 2 ** 48;

/** The first frame on every connection, sent by the side that dialled. */
export interface Hello {
  readonly type: "hello";
  readonly magic: typeof PROTOCOL_MAGIC;
  readonly protocolVersion: number;
  readonly clusterId: string;
  /**
   * The cluster id drawn when the cluster bootstrapped, from the dialler's data directory,
   * or "" while it has none. `clusterId` is the operator's name for the cluster
   * (`--cluster-id`, certificates); this one tells two clusters of one name apart.
   */
  readonly clusterUid: string;
  readonly fromId: NodeId;
  readonly toId: NodeId;
  /** Identifies the dialling process; see `Incarnation`. */
  readonly incarnation: number;
  /**
   * The dialler's member incarnation (its data directory's, see Member), or 0 while it
   * has none (the bootstrap incarnation, transports without a data directory).
   */
  readonly memberIncarnation: number;
  /**
   * The address the dialler listens on for peers, as its members know it ("host:port"),
   * or "" when it does not know it: a node it dials may not have it yet (see
   * Transport.onUnknownPeer).
   */
  readonly peerAddress: string;
  /** What the dialling node tells about itself. */
  readonly advertise: PeerInfo;
}

/** The acceptor's answer when it accepts the hello. */
export interface HelloOk {
  readonly type: "hello_ok";
  readonly protocolVersion: number;
  readonly nodeId: NodeId;
  /** The acceptor's cluster id drawn at bootstrap, or "" while it has none; see Hello. */
  readonly clusterUid: string;
  /** Identifies the accepting process; see `Incarnation`. */
  readonly incarnation: number;
  /** What the accepting node tells about itself. */
  readonly advertise: PeerInfo;
}

/** The acceptor's answer when it refuses the hello; it closes the connection after it. */
export interface HelloError {
  readonly type: "hello_error";
  readonly reason: string;
}

/**
 * Sent by the dialler about once a second once the handshake is done, on its own
 * connection: the acceptor answers each with a pong on the same connection, and sends one
 * unasked at most once a second while other frames arrive. A connection that carries
 * neither for a while is dead even if TCP has not noticed (see silence-watch.ts).
 */
export interface Ping {
  readonly type: "ping";
}

/** The acceptor's answer to a ping. */
export interface Pong {
  readonly type: "pong";
}

export type ControlFrame = Hello | HelloOk | HelloError | Ping | Pong;
export type Frame = WireMessage | ControlFrame;
export type FrameType = Frame["type"];

/**
 * Why bytes from a peer were rejected. `oversized_frame`: the length prefix exceeds the
 * limit. `empty_frame`: the length prefix is zero. `bad_msgpack`: the payload does not
 * decode. `invalid_frame`: it decodes but breaks the schema. `unexpected_frame`: a valid
 * frame arrived where the connection's state does not allow it (a message before the
 * handshake, a message claiming another sender).
 */
export type ProtocolErrorCode =
  | "oversized_frame"
  | "empty_frame"
  | "bad_msgpack"
  | "invalid_frame"
  | "unexpected_frame";

/** A protocol violation by a peer: a value, never thrown. */
export interface ProtocolError {
  readonly code: ProtocolErrorCode;
  readonly detail: string;
}

export type FrameResult =
  | { readonly ok: true; readonly frame: Frame }
  | { readonly ok: false; readonly error: ProtocolError };

/** What one field may hold. */
export type FieldKind =
  | "uint" // a safe integer >= 0
  | "node_id" // an integer in 1..NODE_ID_MAX
  | "bool"
  | "text" // a string of at most FRAME_TEXT_CHARS_MAX code units
  | "magic" // exactly PROTOCOL_MAGIC
  | "entries" // an array of well-formed entries
  | "bytes" // a byte array (see ownBytes)
  | "peer_info" // a well-formed PeerInfo
  | "forward_outcome"; // one of FORWARD_OUTCOMES

type Schema<F extends Frame> = { readonly [K in Exclude<keyof F, "type">]-?: FieldKind };
type SchemaTable<F extends Frame> = { readonly [T in F["type"]]: Schema<Extract<F, { type: T }>> };

const envelope = { from: "node_id", to: "node_id", term: "uint" } as const;
/** The core's messages also carry the sender's member incarnation. */
const memberEnvelope = { ...envelope, incarnation: "uint" } as const;

const messageSchemas: SchemaTable<WireMessage> = {
  vote_request: {
    ...memberEnvelope,
    preVote: "bool",
    handover: "bool",
    lastIndex: "uint",
    lastTerm: "uint",
  },
  vote_response: { ...memberEnvelope, preVote: "bool", granted: "bool" },
  append: {
    ...memberEnvelope,
    prevIndex: "uint",
    prevTerm: "uint",
    entries: "entries",
    commitIndex: "uint",
  },
  append_response: {
    ...memberEnvelope,
    success: "bool",
    index: "uint",
    hintIndex: "uint",
    hintTerm: "uint",
  },
  heartbeat: { ...memberEnvelope, commitIndex: "uint", readContext: "uint" },
  heartbeat_response: { ...memberEnvelope, readContext: "uint" },
  term_probe: { ...memberEnvelope },
  term_probe_response: {
    ...memberEnvelope,
    clusterId: "text",
    bootstrapping: "bool",
    welcome: "bool",
    bound: "bool",
    listed: "bool",
  },
  timeout_now: { ...memberEnvelope },
  snapshot_chunk: {
    ...envelope,
    snapshotIndex: "uint",
    snapshotTerm: "uint",
    offset: "uint",
    totalBytes: "uint",
    crc32: "uint",
    data: "bytes",
    config: "bytes",
  },
  snapshot_ack: {
    ...envelope,
    snapshotIndex: "uint",
    nextOffset: "uint",
    done: "bool",
    accepted: "bool",
  },
  forward_proposal: { ...envelope, requestId: "uint", data: "bytes" },
  forward_proposal_response: {
    ...envelope,
    requestId: "uint",
    outcome: "forward_outcome",
    index: "uint",
    entryTerm: "uint",
  },
  forward_read: { ...envelope, requestId: "uint" },
  forward_read_response: { ...envelope, requestId: "uint", ok: "bool", index: "uint" },
  forward_switchover: { ...envelope, requestId: "uint", target: "uint" },
  forward_switchover_response: { ...envelope, requestId: "uint", outcome: "text", target: "uint" },
};

const controlSchemas: SchemaTable<ControlFrame> = {
  hello: {
    magic: "magic",
    protocolVersion: "uint",
    clusterId: "text",
    clusterUid: "text",
    fromId: "node_id",
    toId: "node_id",
    incarnation: "uint",
    memberIncarnation: "uint",
    peerAddress: "text",
    advertise: "peer_info",
  },
  hello_ok: {
    protocolVersion: "uint",
    nodeId: "node_id",
    clusterUid: "text",
    incarnation: "uint",
    advertise: "peer_info",
  },
  hello_error: { reason: "text" },
  ping: {},
  pong: {},
};

const schemas: SchemaTable<Frame> = { ...messageSchemas, ...controlSchemas };

/**
 * Every frame type with the kind of each of its fields, read-only, so that property tests
 * can generate frames of every type from the rules themselves.
 */
export const FRAME_SCHEMAS: Readonly<Record<FrameType, Readonly<Record<string, FieldKind>>>> =
  schemas;

/** Derived from the schema table, so that a new message type cannot be forgotten here. */
const messageTypes: ReadonlySet<string> = new Set(Object.keys(messageSchemas));

/** True for protocol messages, false for the handshake's control frames. */
export function isMessage(frame: Frame): frame is WireMessage {
  return messageTypes.has(frame.type);
}

/** A field's value after checking: a fresh copy for entries, the value itself otherwise. */
type FieldCheck = { ok: true; value: unknown } | { ok: false; detail: string };

/**
 * Checks an untrusted decoded value against the schema and returns a freshly built frame.
 * Never throws: every failure is an `invalid_frame` protocol error naming the field, or
 * the protocol version when a handshake frame of another version breaks this version's
 * schema (an older node omits newer fields): that mismatch is what an operator must fix.
 */
export function validateFrame(value: unknown): FrameResult {
  const result = buildFrame(value);
  if (result.ok || !isPlainObject(value)) return result;
  const { type, protocolVersion } = value;
  const handshake = type === "hello" || type === "hello_ok";
  if (!handshake || !isUint(protocolVersion) || protocolVersion === PROTOCOL_VERSION) {
    return result;
  }
  const mismatch = `protocol version ${protocolVersion} is not supported`;
  return invalid(
    `${type}: ${mismatch} (this node speaks ${PROTOCOL_VERSION}); ${result.error.detail}`,
  );
}

function buildFrame(value: unknown): FrameResult {
  if (!isPlainObject(value)) return invalid("frame is not a map");
  const type = value.type;
  if (typeof type !== "string" || !Object.hasOwn(schemas, type)) {
    return invalid(`unknown frame type ${describe(type)}`);
  }
  const schema: Readonly<Record<string, FieldKind>> = schemas[type as FrameType];
  const fields = Object.keys(schema);
  if (Object.keys(value).length !== fields.length + 1) {
    return invalid(`${type}: expected exactly the fields type, ${fields.join(", ")}`);
  }
  const built: Record<string, unknown> = { type };
  for (const field of fields) {
    if (!Object.hasOwn(value, field)) return invalid(`${type}: missing field ${field}`);
    const check = checkField(schema[field]!, value[field]);
    if (!check.ok) return invalid(`${type}.${field}: ${check.detail}`);
    built[field] = check.value;
  }
  const frame = built as unknown as Frame;
  const detail = checkSemantics(frame);
  return detail === null ? { ok: true, frame } : invalid(`${type}: ${detail}`);
}

function checkField(kind: FieldKind, value: unknown): FieldCheck {
  switch (kind) {
    case "uint":
      return isUint(value) ? { ok: true, value } : bad(`expected an integer >= 0`, value);
    case "node_id":
      return isNodeId(value) ? { ok: true, value } : bad(`expected a node id`, value);
    case "bool":
      return typeof value === "boolean" ? { ok: true, value } : bad("expected a boolean", value);
    case "text":
      return typeof value === "string" && value.length <= FRAME_TEXT_CHARS_MAX
        ? { ok: true, value }
        : bad(`expected a string of at most ${FRAME_TEXT_CHARS_MAX} chars`, value);
    case "magic":
      return value === PROTOCOL_MAGIC ? { ok: true, value } : bad("not a Baton hello", value);
    case "entries":
      return checkEntries(value);
    case "bytes":
      return value instanceof Uint8Array
        ? { ok: true, value: ownBytes(value) }
        : bad("expected bytes", value);
    case "peer_info":
      return checkPeerInfoField(value);
    case "forward_outcome":
      return typeof value === "string" && FORWARD_OUTCOMES.has(value)
        ? { ok: true, value }
        : bad(`expected one of ${[...FORWARD_OUTCOMES].join(", ")}`, value);
  }
}

/**
 * Bytes decoded from a frame, as a plain Uint8Array the frame does not keep alive for
 * nothing: a copy when they are a small part of the buffer they view (the socket's chunk,
 * a frame of other fields), else a view of it. A snapshot chunk is nearly all of its
 * frame's buffer, and copying a mebibyte per chunk cost as much as writing it to disk.
 * The buffers a decoded frame views are its own (see FrameDecoder), never reused.
 */
function ownBytes(value: Uint8Array): Uint8Array {
  if (value.buffer.byteLength - value.byteLength > value.byteLength / 16) {
    return new Uint8Array(value);
  }
  return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
}

const FORWARD_OUTCOMES: ReadonlySet<string> = new Set<ForwardOutcome>([
  "proposed",
  "not_master",
  "busy",
]);

/** A fresh, frozen PeerInfo holding only known fields, or what is wrong with `value`. */
function checkPeerInfoField(value: unknown): FieldCheck {
  if (!isPlainObject(value)) return bad("expected a map", value);
  const keys = Object.keys(value);
  if (keys.length !== 1 || keys[0] !== "httpUrl") {
    return { ok: false, detail: "expected exactly the field httpUrl" };
  }
  const { httpUrl } = value;
  if (httpUrl === null) return { ok: true, value: Object.freeze({ httpUrl: null }) };
  const problem = checkHttpUrl(httpUrl);
  if (problem !== null) return { ok: false, detail: `httpUrl: ${problem}` };
  return { ok: true, value: Object.freeze({ httpUrl }) };
}

/**
 * What is wrong with `value` as a `PeerInfo` (exactly the field httpUrl, see
 * `checkHttpUrl`), or null when it is valid. Configuration parsing and the frame schema
 * share it, so that a node never advertises what its peers would refuse.
 */
export function checkPeerInfo(value: unknown): string | null {
  const check = checkPeerInfoField(value);
  return check.ok ? null : check.detail;
}

/**
 * What is wrong with `value` as an advertised HTTP base URL, or null when it is valid: a
 * string of 1..HTTP_URL_BYTES_MAX printable ASCII characters (so its size in bytes is its
 * length, and no control character or space reaches a log line or a status page) that
 * parses as an http: or https: URL without credentials, query or fragment, because
 * clients' request paths are appended to it. Never throws.
 */
export function checkHttpUrl(value: unknown): string | null {
  if (typeof value !== "string") return `expected a string or null, got ${describe(value)}`;
  if (value.length === 0 || value.length > HTTP_URL_BYTES_MAX) {
    return `expected 1..${HTTP_URL_BYTES_MAX} bytes, got ${value.length} chars`;
  }
  if (!/^[\x21-\x7e]+$/.test(value)) return "expected printable ASCII without spaces";
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `not a URL: ${describe(value)}`;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return `expected an http: or https: URL, got ${describe(url.protocol)}`;
  }
  if (url.username !== "" || url.password !== "") return "a URL must not carry credentials";
  if (value.includes("?") || value.includes("#")) return "a base URL has no query or fragment";
  return null;
}

function checkEntries(value: unknown): FieldCheck {
  if (!Array.isArray(value)) return bad("expected an array of entries", value);
  const entries: Entry[] = [];
  for (let i = 0; i < value.length; i++) {
    const entry = checkEntry(value[i]);
    if (typeof entry === "string") return { ok: false, detail: `entry ${i}: ${entry}` };
    entries.push(entry);
  }
  return { ok: true, value: entries };
}

/** Returns a fresh entry whose data owns its memory, or what is wrong with it. */
function checkEntry(value: unknown): Entry | string {
  if (!isPlainObject(value)) return "not a map";
  if (Object.keys(value).length !== 4) return "expected exactly index, term, kind, data";
  const { index, term, kind, data } = value;
  if (!isUint(index) || index < 1) return `index ${describe(index)} is not an integer >= 1`;
  if (!isUint(term)) return `term ${describe(term)} is not an integer >= 0`;
  if (kind !== "noop" && kind !== "command" && kind !== "config")
    return `unknown kind ${describe(kind)}`;
  if (!(data instanceof Uint8Array)) return `data is ${describe(data)}, not bytes`;
  if (kind === "noop" && data.length > 0) return "a noop entry carries no data";
  // Copying detaches the entry from the receive buffer, which may be large and is reused.
  return { index, term, kind, data: new Uint8Array(data) };
}

/** Rules that relate fields to each other; null when the frame is well-formed. */
function checkSemantics(frame: Frame): string | null {
  if ("from" in frame && frame.from === frame.to) return "a message from a node to itself";
  if (frame.type === "append") return checkAppendEntries(frame);
  if (frame.type === "snapshot_chunk" && frame.offset + frame.data.length > frame.totalBytes) {
    return "chunk extends beyond the snapshot's total size";
  }
  // No snapshot holds an entry newer than the master's own term; adopted, one would leave
  // a log whose last term is above the node's hard state, which refuses to start.
  if (frame.type === "snapshot_chunk" && frame.snapshotTerm > frame.term) {
    return "snapshotTerm is above the message term";
  }
  if (frame.type === "hello" && frame.fromId === frame.toId) return "a node dialling itself";
  return null;
}

/**
 * Raft §5.3: the entries of an append follow `prevIndex` without gaps, and a log's terms
 * never decrease; no entry is newer than the master's own term. A message breaking this
 * would trip an assertion in the core, so it is stopped here as a protocol error instead.
 */
function checkAppendEntries(append: Append): string | null {
  if (append.prevTerm > append.term) return "prevTerm is above the message term";
  let expectedIndex = append.prevIndex + 1;
  let previousTerm = append.prevTerm;
  for (const entry of append.entries) {
    if (entry.index !== expectedIndex)
      return `entry index ${entry.index}, ${expectedIndex} expected`;
    if (entry.term < previousTerm) return `entry ${entry.index} has a lower term than before it`;
    if (entry.term > append.term) return `entry ${entry.index} has a term above the message term`;
    expectedIndex++;
    previousTerm = entry.term;
  }
  return null;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

function isUint(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0;
}

function isNodeId(value: unknown): value is NodeId {
  return isUint(value) && value >= 1 && value <= NODE_ID_MAX;
}

function invalid(detail: string): FrameResult {
  return { ok: false, error: { code: "invalid_frame", detail } };
}

function bad(expected: string, value: unknown): FieldCheck {
  return { ok: false, detail: `${expected}, got ${describe(value)}` };
}

/** A short, safe description of an untrusted value for error messages and logs. */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "string") return JSON.stringify(value.slice(0, 40));
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  if (typeof value === "bigint") return `${value}n`;
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === "object") return "a map";
  return typeof value;
}
