/**
 * The settings of `baton start`, from three places checked by one schema: flags
 * (`--heartbeat-ms 50`), a JSON config file (`"heartbeatMs": 50`) and environment variables
 * (`BATON_HEARTBEAT_MS=50`). Flags win over the environment, the environment over the file.
 * Every problem is reported at once, each naming where the bad value came from.
 *
 * Nothing is guessed: a config file key that is not a setting is an error with the nearest
 * setting's name ("dataDir" → "data"); so is a BATON_ variable one or two letters away from
 * a setting's. The data directory (`data`) or an explicit `memory` is required, and so is
 * the HTTP address (`http`) or an explicit `http: false` (`--no-http`). This module owns the
 * names and the translation to NodeConfig; it never starts anything.
 */

import { accessSync, constants, readFileSync } from "node:fs";
import { z } from "zod";
import { defaultStoreQuota, type StoreQuota } from "../../app/store-quota.js";
import { parseTokensFile } from "../../http/tokens.js";
import {
  defaultNodeConfig,
  type NodeConfig,
  NodeConfigError,
  type NodeConfigInput,
  parseElectionMs,
  parseNodeConfig,
  parsePeers,
} from "../../server/node-config.js";
import { statOf } from "../../shared/make-directory.js";
import { parseAddress } from "../../transport/address.js";

/** A number from JSON, or from the text of a flag or a variable. */
const fromText = (value: unknown): unknown =>
  typeof value === "string" && /^-?\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : value;

/** A boolean from JSON, or "true"/"false" (also 1/0, yes/no) from a variable. */
const booleanFromText = (value: unknown): unknown => {
  if (typeof value !== "string") return value;
  const text = value.trim().toLowerCase();
  if (["true", "1", "yes"].includes(text)) return true;
  if (["false", "0", "no"].includes(text)) return false;
  return value;
};

/** A number schema whose wrong-type message is `expected`; range checks keep their own. */
const numberOf = (expected: string) =>
  z.number({ error: (issue) => (issue.code === "invalid_type" ? expected : undefined) });
const positive = z.preprocess(fromText, numberOf("expected a number").positive("must be above 0"));
const positiveInteger = z.preprocess(
  fromText,
  numberOf("expected a whole number").int("expected a whole number").positive("must be above 0"),
);
const nonNegativeInteger = z.preprocess(
  fromText,
  numberOf("expected a whole number")
    .int("expected a whole number")
    .nonnegative("must be 0 or more"),
);
const flag = z.preprocess(booleanFromText, z.boolean({ error: "expected true or false" }));
const file = z.string().min(1, "expected a file name");
const address = z.string().refine((text) => parseAddress(text).ok, {
  error: (issue) => `"${String(issue.input)}" is not host:port (e.g. 10.0.0.1:7101, [::1]:7101)`,
});
/** An address other nodes dial or are sent to: port 0 ("any free port") is for listening only. */
const dialledAddress = address.refine((text) => portOf(text) !== 0, {
  error: (issue) =>
    `"${String(issue.input)}" has port 0, which no one can connect to: give the port the node listens on`,
});
const peers = z
  .union(
    [
      z.string().min(1),
      z.array(z.strictObject({ id: z.number().int().positive(), address: z.string() })).min(1),
    ],
    {
      error: 'expected "1=10.0.0.1:7101,2=10.0.0.2:7101,..." or [{"id":1,"address":"..."}, ...]',
    },
  )
  .superRefine((value, context) => {
    for (const message of peerListProblems(value)) context.addIssue({ code: "custom", message });
  });

function portOf(text: string): number | null {
  const parsed = parseAddress(text);
  return parsed.ok ? parsed.address.port : null;
}

/**
 * What is wrong with a member list before the node checks it (its addresses, its ids): an
 * item that is not `<id>=<host>:<port>`, or a member at port 0, which no member can dial.
 */
function peerListProblems(value: string | readonly { id: number; address: string }[]): string[] {
  let list: readonly { id: number; address: string }[];
  try {
    list = typeof value === "string" ? parsePeers(value) : value;
  } catch (error) {
    return [(error as Error).message.replace(/^--peers: /, "")];
  }
  return list
    .filter((peer) => portOf(peer.address) === 0)
    .map(
      (peer) =>
        `node ${peer.id} is listed at ${peer.address}: port 0 cannot be dialled; give the port node ${peer.id} listens on`,
    );
}

/** Every setting, by its config file name; the flag and the variable derive from it. */
const SETTINGS = {
  id: positiveInteger,
  listen: address,
  http: z.preprocess((v) => (v === "false" ? false : v), z.union([z.literal(false), address])),
  advertiseHttp: dialledAddress,
  advertisePeer: dialledAddress,
  peers,
  data: z.string().min(1, "expected a directory"),
  memory: flag,
  clusterId: z.string().min(1, "must not be empty"),
  heartbeatMs: positive,
  electionMs: z.preprocess(
    (v) => (typeof v === "number" ? String(v) : v),
    z
      .string({ error: 'expected "<min>-<max>" milliseconds, e.g. "300-600"' })
      .regex(/^\d+(-\d+)?$/, 'expected "<min>-<max>" milliseconds, e.g. "300-600"'),
  ),
  tickMs: positive,
  snapshotEntries: positiveInteger,
  snapshotBytes: positiveInteger,
  snapshotKeepEntries: nonNegativeInteger,
  snapshotKeepBytes: nonNegativeInteger,
  join: flag,
  logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace"]),
  allowFaultInjection: flag,
  quotaKeys: nonNegativeInteger,
  quotaBytes: nonNegativeInteger,
  tlsCa: file,
  tlsCert: file,
  tlsKey: file,
  httpTlsCert: file,
  httpTlsKey: file,
  tokens: file,
  insecure: flag,
} as const;

export type SettingName = keyof typeof SETTINGS;
export type StartSettings = Partial<{ [K in SettingName]: z.output<(typeof SETTINGS)[K]> }>;

export const SETTING_NAMES = Object.keys(SETTINGS) as SettingName[];

/** `heartbeatMs` → `--heartbeat-ms`. */
export function flagName(name: string): string {
  return `--${name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** `heartbeatMs` → `BATON_HEARTBEAT_MS`. */
export function envName(name: string): string {
  return `BATON_${name.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/** Where each value came from, for messages and `baton config check`. */
export type Origin = { kind: "flag" } | { kind: "env" } | { kind: "file"; file: string };

function label(name: string, origin: Origin): string {
  if (origin.kind === "flag") return flagName(name);
  if (origin.kind === "env") return envName(name);
  return `${origin.file}: "${name}"`;
}

/**
 * Setting `name` as the user gave it (its flag, variable or file key), from the origins
 * loadStartConfig found; the file key with the flag when the origin is not known.
 */
export function settingLabel(name: SettingName, origins: ReadonlyMap<SettingName, Origin>): string {
  const origin = origins.get(name);
  return origin === undefined ? `${name} (${flagName(name)})` : label(name, origin);
}

export interface StartSources {
  /** Flags as commander parsed them (camelCase names; values as given). */
  readonly flags: Readonly<Record<string, unknown>>;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The config file's name (`--config`, else BATON_CONFIG), if any. */
  readonly configFile?: string | undefined;
  /**
   * The config file's text as read once (see readConfigOnce), or why it could not be read;
   * absent, the file is read wherever a setting of it is needed.
   */
  readonly configRead?: { readonly text: string } | { readonly error: string } | undefined;
}

/**
 * `sources` with the config file read now, once: every later look at them (the settings
 * `--join` needs first, then the whole configuration) sees the same file, even one being
 * edited meanwhile.
 */
export function readConfigOnce(sources: StartSources): StartSources {
  if (sources.configFile === undefined) return sources;
  try {
    return { ...sources, configRead: { text: readFileSync(sources.configFile, "utf8") } };
  } catch (error) {
    return { ...sources, configRead: { error: (error as Error).message } };
  }
}

export type LoadedStartConfig =
  | {
      readonly ok: true;
      readonly config: NodeConfig;
      readonly settings: StartSettings;
      readonly origins: ReadonlyMap<SettingName, Origin>;
    }
  | { readonly ok: false; readonly problems: readonly string[] };

/**
 * Reads, merges and checks the settings of `baton start`; returns the node's configuration
 * or every problem, each naming its flag, variable or file key and what to do.
 */
export function loadStartConfig(sources: StartSources): LoadedStartConfig {
  const problems: string[] = [];
  const merged: Record<string, unknown> = {};
  const origins = new Map<SettingName, Origin>();
  /** Every setting some layer gave, valid or not: a bad value is not a missing one. */
  const given = new Set<string>();
  const layers: [Record<string, unknown>, Origin][] = [];
  if (sources.configFile !== undefined) {
    const fromFile = readConfigFile(sources, sources.configFile, problems);
    // A file that cannot be read leaves every setting it holds unknown: what else is
    // missing or wrong cannot be told until it can be, and would only bury the cause.
    if (fromFile === null) return { ok: false, problems };
    layers.push([fromFile, { kind: "file", file: sources.configFile }]);
  }
  layers.push([fromEnv(sources.env, problems), { kind: "env" }]);
  layers.push([pickSettings(sources.flags), { kind: "flag" }]);
  for (const [values, origin] of layers) {
    for (const [name, value] of Object.entries(values)) {
      if (value === undefined) continue;
      given.add(name);
      const parsed = SETTINGS[name as SettingName].safeParse(value);
      if (!parsed.success) {
        const why = parsed.error.issues.map((issue) => issue.message).join("; ");
        problems.push(`${label(name, origin)}: ${why}`);
        continue;
      }
      merged[name] = parsed.data;
      origins.set(name as SettingName, origin);
    }
  }
  const settings = merged as StartSettings;
  problems.push(...requiredProblems(settings, given));
  // The node's own checks run as soon as it has an id and members, so that one run
  // reports every problem, not the first layer's.
  let config: NodeConfig | null = null;
  if (settings.id !== undefined && settings.peers !== undefined) {
    try {
      config = parseNodeConfig(nodeConfigInput(settings));
    } catch (error) {
      if (!(error instanceof NodeConfigError)) throw error;
      problems.push(...nodeProblemsAsGiven(error.problems, settings, origins));
    }
  }
  if (problems.length > 0 || config === null) return { ok: false, problems };
  return { ok: true, config, settings, origins };
}

/**
 * The node's own problems with its configuration (parseNodeConfig names its fields:
 * `heartbeatMs`, `electionMsMax`), said of the settings as the user gave them: the flag, the
 * variable or the file's key. A setting left at its default is named in the form of the
 * one it is compared with. A problem not known here is kept as the node says it.
 * Exported for the test that feeds it every problem parseNodeConfig says in these words.
 */
export function nodeProblemsAsGiven(
  problems: readonly string[],
  settings: StartSettings,
  origins: ReadonlyMap<SettingName, Origin>,
): string[] {
  const originOf = (name: SettingName, like: SettingName): Origin =>
    origins.get(name) ?? origins.get(like) ?? { kind: "flag" };
  /** The setting as the first words of a problem: `--election-ms`, `x.json: "electionMs"`. */
  const at = (name: SettingName): string => label(name, originOf(name, name));
  /** The setting within a sentence: `--peers`, `BATON_PEERS`, `"peers"`. */
  const short = (name: SettingName, like: SettingName = name): string => {
    const origin = originOf(name, like);
    if (origin.kind === "flag") return flagName(name);
    return origin.kind === "env" ? envName(name) : `"${name}"`;
  };
  /** The setting within a sentence, with its file, and whether it is at its default. */
  const ref = (name: SettingName, like: SettingName): string => {
    const origin = originOf(name, like);
    const where =
      origin.kind === "file" ? `${short(name, like)} in ${origin.file}` : short(name, like);
    return origins.has(name) ? where : `${where}, by default`;
  };
  /** How to give `name` the value `value`, in the form `like` was given. */
  const giving = (name: SettingName, like: SettingName, value: string): string => {
    const origin = originOf(name, like);
    if (origin.kind === "flag") return `${flagName(name)} ${value}`;
    return origin.kind === "env" ? `${envName(name)}=${value}` : `"${name}": "${value}"`;
  };
  const defaults = defaultNodeConfig();
  const tick = settings.tickMs ?? defaults.tickMs;
  const heartbeat = settings.heartbeatMs ?? defaults.heartbeatMs;
  const election = (settings.electionMs === undefined
    ? null
    : parseElectionMs(settings.electionMs)) ?? {
    min: defaults.electionMsMin,
    max: defaults.electionMsMax,
  };
  const tlsTogether = (names: readonly SettingName[], all: string): string => {
    const given = names.filter((name) => origins.has(name));
    const missing = names.filter((name) => !origins.has(name));
    const like = given[0] ?? names[0]!;
    return `${given.map((name) => short(name)).join(" and ")} given without ${missing.map((name) => short(name, like)).join(" and ")}: they go together; give ${all}`;
  };
  /** Each problem the node may find, and what to say instead (null: said by another). */
  const rules: [RegExp, (m: RegExpExecArray) => string | null][] = [
    [
      /^heartbeatMs must be at least tickMs$/,
      () =>
        `the heartbeat (${heartbeat} ms, ${ref("heartbeatMs", "tickMs")}) must be at least the tick (${tick} ms, ${ref("tickMs", "heartbeatMs")}): give a longer heartbeat or a shorter tick`,
    ],
    [
      /^electionMsMin must be above heartbeatMs$/,
      // A minimum of 0 is said of the range itself, below.
      () =>
        election.min > 0
          ? `the election timeout's minimum (${election.min} ms, ${ref("electionMs", "heartbeatMs")}) must be above the heartbeat (${heartbeat} ms, ${ref("heartbeatMs", "electionMs")}): give a longer election timeout or a shorter heartbeat`
          : null,
    ],
    [
      /^electionMsMax must be at least electionMsMin$/,
      () =>
        `${at("electionMs")}: ${settings.electionMs} has its maximum below its minimum: give "<min>-<max>" with the smaller first, e.g. "300-600"`,
    ],
    [
      /^electionMsMin must be a positive number/,
      () =>
        `${at("electionMs")}: ${settings.electionMs} has a minimum of 0: give "<min>-<max>" above 0, e.g. "300-600"`,
    ],
    // A maximum of 0 is below the minimum (said above) or with a minimum of 0 (said above).
    [/^electionMsMax must be a positive number/, () => null],
    [
      /^advertisePeer (\S+) differs from node (\d+)'s address in peers \((.*)\): members dial the address in peers, so make them the same$/,
      (m) =>
        `${at("advertisePeer")}: ${m[1]} differs from node ${m[2]}'s address in ${ref("peers", "advertisePeer")} (${m[3]}): members dial the address in ${short("peers", "advertisePeer")}, so make them the same`,
    ],
    [
      /^advertisePeer (\S+) is a wildcard address$/,
      // Unless given, it is the node's entry in peers, whose wildcard is said of peers.
      (m) =>
        origins.has("advertisePeer")
          ? `${at("advertisePeer")}: ${m[1]} is a wildcard address, which members cannot dial: give this node's routable address`
          : null,
    ],
    [
      /^http (\S+) is a wildcard address, which clients and members cannot reach: give advertiseHttp \(--advertise-http <host:port>\), the address they should use$/,
      (m) =>
        `${at("http")}: ${m[1]} is a wildcard address, which clients and members cannot reach: give ${giving("advertiseHttp", "http", "<host:port>")}, the address they should use`,
    ],
    [
      /^advertiseHttp is given but there is no http API$/,
      () =>
        `${at("advertiseHttp")}: given, but this node serves no HTTP API: remove it, or give the node an HTTP address`,
    ],
    [
      /^peers: (node \d+ is listed at the wildcard address \S+, which members cannot dial: list its routable address) \(bind every interface with listen instead\)$/,
      (m) =>
        `${at("peers")}: ${m[1]} (bind every interface with ${short("listen", "peers")} instead)`,
    ],
    [
      /^id (\d+) is not one of the peers \((.*)\)$/,
      (m) => `${at("id")}: ${m[1]} is not one of the members in ${short("peers", "id")} (${m[2]})`,
    ],
    [/^peer (id |\d+: )/, (m) => `${at("peers")}: ${m.input}`],
    [
      /^join: (.*)start it without --join(.*)$/,
      (m) => `${at("join")}: ${m[1]}start it without ${short("join")}${m[2]}`,
    ],
    [
      /^tlsCa, tlsCert and tlsKey \(/,
      () => tlsTogether(["tlsCa", "tlsCert", "tlsKey"], "all three"),
    ],
    [/^httpTlsCert and httpTlsKey \(/, () => tlsTogether(["httpTlsCert", "httpTlsKey"], "both")],
  ];
  const out: string[] = [];
  for (const problem of problems) {
    const rule = rules.find(([pattern]) => pattern.test(problem));
    const said = rule === undefined ? problem : rule[1](rule[0].exec(problem)!);
    if (said !== null) out.push(said);
  }
  return out;
}

/**
 * The value setting `name` has in `sources` before any check (flags over environment over
 * the file), and where it came from; undefined when none was given. For what `baton start`
 * needs before the whole configuration can be checked (`--join` reads the id and the data
 * directory first); loadStartConfig reports every problem afterwards.
 */
function rawSettingFrom(
  sources: StartSources,
  name: SettingName,
): { readonly value: unknown; readonly origin: Origin } | undefined {
  const flag = pickSettings(sources.flags)[name];
  if (flag !== undefined) return { value: flag, origin: { kind: "flag" } };
  const fromEnvironment = fromEnv(sources.env, [])[name];
  if (fromEnvironment !== undefined) return { value: fromEnvironment, origin: { kind: "env" } };
  if (sources.configFile === undefined) return undefined;
  const fromFile = readConfigFile(sources, sources.configFile, [])?.[name];
  return fromFile === undefined
    ? undefined
    : { value: fromFile, origin: { kind: "file", file: sources.configFile } };
}

/** The value of setting `name` before any check (see rawSettingFrom), or undefined. */
export function rawSetting(sources: StartSources, name: SettingName): unknown {
  return rawSettingFrom(sources, name)?.value;
}

/**
 * How the user gave the value `rawSetting` finds for `name` ("--tls-ca", "BATON_TLS_CA",
 * `baton.json: "tlsCa"`), for a message about it; undefined when none was given.
 */
export function rawSettingLabel(sources: StartSources, name: SettingName): string | undefined {
  const found = rawSettingFrom(sources, name);
  return found === undefined ? undefined : label(name, found.origin);
}

/** The file's settings, or null (with the problem) when it cannot be read as an object. */
function readConfigFile(
  sources: StartSources,
  name: string,
  problems: string[],
): Record<string, unknown> | null {
  let read = sources.configRead;
  if (read === undefined) {
    try {
      read = { text: readFileSync(name, "utf8") };
    } catch (error) {
      read = { error: (error as Error).message };
    }
  }
  if ("error" in read) {
    problems.push(`${name}: cannot read it: ${read.error}`);
    return null;
  }
  const { text } = read;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    problems.push(`${name}: cannot read it as JSON: ${(error as Error).message}`);
    return null;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    problems.push(`${name}: expected a JSON object of settings, such as {"id": 1, ...}`);
    return null;
  }
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value)) {
    if (key in SETTINGS) out[key] = v;
    else problems.push(`${name}: "${key}" is not a setting${suggestion(key, SETTING_NAMES)}`);
  }
  return out;
}

/**
 * The BATON_ variables that are settings. Other BATON_ variables belong to other tools (the
 * client's BATON_ENDPOINTS, BATON_TOKEN, BATON_CA, test tools' own) and are left alone,
 * unless one is within two letters of a setting's variable: that is a typo, and an error.
 */
function fromEnv(env: StartSources["env"], problems: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const byVariable = new Map(SETTING_NAMES.map((name) => [envName(name), name]));
  const others = new Set(["BATON_CONFIG", "BATON_ENDPOINTS", "BATON_TOKEN", "BATON_CA"]);
  for (const [variable, value] of Object.entries(env)) {
    if (!variable.startsWith("BATON_") || value === undefined || others.has(variable)) continue;
    const name = byVariable.get(variable);
    if (name !== undefined) {
      out[name] = value;
      continue;
    }
    const near = [...byVariable.keys()].find((known) => distance(variable, known) <= 2);
    if (near !== undefined) problems.push(`${variable} is not a setting (did you mean ${near}?)`);
  }
  return out;
}

function pickSettings(flags: StartSources["flags"]): Record<string, unknown> {
  return Object.fromEntries(Object.entries(flags).filter(([key]) => key in SETTINGS));
}

function requiredProblems(s: StartSettings, given: ReadonlySet<string>): string[] {
  const problems: string[] = [];
  const where = (name: SettingName, example: string) =>
    `${flagName(name)} ${example} (or "${name}" in the config file, or ${envName(name)})`;
  if (!given.has("id")) problems.push(`no node id: give ${where("id", "<n>")}`);
  if (!given.has("peers"))
    problems.push(`no members: give ${where("peers", "1=<host>:<port>,2=...,3=...")}`);
  if (!given.has("http"))
    problems.push(
      `no HTTP API address: give ${where("http", "<host:port>")}, or --no-http ("http": false, BATON_HTTP=false) for a node that serves no HTTP API`,
    );
  if (!given.has("data") && s.memory !== true)
    problems.push(
      `no data directory: give ${where("data", "<dir>")}, or --memory for a node that keeps everything in memory and loses it when it stops (tests and demos only)`,
    );
  if (s.data !== undefined && s.memory === true)
    problems.push("data and memory both given: a node keeps its data in a directory or in memory");
  return problems;
}

function nodeConfigInput(s: StartSettings): NodeConfigInput {
  const peerList = typeof s.peers === "string" ? parsePeers(s.peers) : [...(s.peers ?? [])];
  const election = s.electionMs === undefined ? null : parseElectionMs(s.electionMs);
  const input: Record<string, unknown> = {
    ...s,
    peers: peerList,
    http: s.http === false ? null : s.http,
    advertiseHttp: s.advertiseHttp ?? null,
    dataDir: s.memory === true ? null : (s.data ?? null),
    electionMsMin: election?.min,
    electionMsMax: election?.max,
  };
  for (const key of [
    "data",
    "memory",
    "electionMs",
    "logLevel",
    "allowFaultInjection",
    "quotaKeys",
    "quotaBytes",
  ])
    delete input[key];
  return input as unknown as NodeConfigInput;
}

/**
 * The configuration a node would run with, every default filled in, as a config file: what
 * `baton config check` prints. Feeding it back to `baton start --config` gives the same node.
 */
export function effectiveSettings(
  config: NodeConfig,
  settings: StartSettings,
): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: config.id,
    clusterId: config.clusterId,
    peers: config.peers.map((p) => `${p.id}=${p.address}`).join(","),
    listen: config.listen,
    advertisePeer: config.advertisePeer,
    http: config.http ?? false,
    advertiseHttp: config.advertiseHttp ?? undefined,
    ...(config.dataDir === null ? { memory: true } : { data: config.dataDir }),
    tickMs: config.tickMs,
    heartbeatMs: config.heartbeatMs,
    electionMs: `${config.electionMsMin}-${config.electionMsMax}`,
    snapshotEntries: config.snapshotEntries,
    snapshotBytes: config.snapshotBytes,
    snapshotKeepEntries: config.snapshotKeepEntries,
    snapshotKeepBytes: config.snapshotKeepBytes,
    join: config.join,
    logLevel: settings.logLevel ?? "info",
    allowFaultInjection: settings.allowFaultInjection ?? false,
    ...storeQuotaSettings(settings),
    tlsCa: config.tlsCa ?? undefined,
    tlsCert: config.tlsCert ?? undefined,
    tlsKey: config.tlsKey ?? undefined,
    httpTlsCert: config.httpTlsCert ?? undefined,
    httpTlsKey: config.httpTlsKey ?? undefined,
    tokens: config.tokens ?? undefined,
    insecure: config.insecure,
  };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined));
}

/** The store's quota of `settings` (`quotaKeys`, `quotaBytes`), defaults filled in. */
export function storeQuotaOf(settings: StartSettings): StoreQuota {
  const defaults = defaultStoreQuota();
  return Object.freeze({
    keyCountMax: settings.quotaKeys ?? defaults.keyCountMax,
    bytesMax: settings.quotaBytes ?? defaults.bytesMax,
  });
}

function storeQuotaSettings(settings: StartSettings): { quotaKeys: number; quotaBytes: number } {
  const quota = storeQuotaOf(settings);
  return { quotaKeys: quota.keyCountMax, quotaBytes: quota.bytesMax };
}

/**
 * A note when the port this node listens on is not the port its peers dial (its own entry
 * in peers, or advertisePeer): right only behind a port forward, and otherwise a node no
 * member can reach. Null when they agree.
 */
export function peerPortNote(config: NodeConfig): string | null {
  const listening = portOf(config.listen);
  const dialled = portOf(config.advertisePeer);
  if (listening === null || dialled === null || listening === 0 || listening === dialled) {
    return null;
  }
  return `node ${config.id} listens for peers on port ${listening} (listen ${config.listen}), but its peers dial ${config.advertisePeer} (its entry in peers): right only if a port forward joins the two; otherwise give them the same port`;
}

/**
 * The files a node reads at start that cannot be read now, each with its setting, and a
 * data directory that is not one (a file under that name would fail the node's first
 * write as a disk error).
 */
export function unusablePaths(
  config: NodeConfig,
  origins: ReadonlyMap<SettingName, Origin> = new Map(),
): string[] {
  const problems: string[] = [];
  if (config.dataDir !== null) {
    let kind: ReturnType<typeof statOf>;
    try {
      kind = statOf(config.dataDir);
    } catch (error) {
      // EACCES (a directory under one this user may not enter), ELOOP, …
      const code = (error as NodeJS.ErrnoException).code ?? "EIO";
      problems.push(
        `${settingLabel("data", origins)}: cannot look at ${config.dataDir}: ${code}; check the permissions of the directories above it`,
      );
      kind = undefined;
    }
    if (kind !== undefined && !kind.isDirectory()) {
      problems.push(
        `${settingLabel("data", origins)}: ${config.dataDir} is a file, not a directory; give a directory (it is created if missing)`,
      );
    }
  }
  for (const name of [
    "tlsCa",
    "tlsCert",
    "tlsKey",
    "httpTlsCert",
    "httpTlsKey",
    "tokens",
  ] as const) {
    const path = config[name];
    if (path === null) continue;
    try {
      accessSync(path, constants.R_OK);
    } catch (error) {
      problems.push(
        `${settingLabel(name, origins)}: cannot read ${path}: ${(error as NodeJS.ErrnoException).code}`,
      );
      continue;
    }
    if (name === "tokens") {
      // What the node would refuse at start (and keep the old tokens over, on SIGHUP).
      try {
        parseTokensFile(readFileSync(path, "utf8"));
      } catch (error) {
        problems.push(`${settingLabel("tokens", origins)}: ${path}: ${(error as Error).message}`);
      }
    }
  }
  return problems;
}

/** ' (did you mean "x"?)' for the nearest of `known` within a few edits, else "". */
export function suggestion(word: string, known: readonly string[]): string {
  const aliases: Record<string, string> = { dataDir: "data", dir: "data", clusterID: "clusterId" };
  const alias = aliases[word];
  if (alias !== undefined) return ` (did you mean "${alias}"?)`;
  let best: { name: string; d: number } | null = null;
  for (const name of known) {
    const d = distance(word.toLowerCase(), name.toLowerCase());
    if (best === null || d < best.d) best = { name, d };
  }
  return best !== null && best.d <= Math.max(2, Math.floor(word.length / 3))
    ? ` (did you mean "${best.name}"?)`
    : ` (the settings: ${known.join(", ")})`;
}

/** Levenshtein distance between two short strings. */
function distance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row.push(Math.min(row[j - 1]! + 1, previous[j]! + 1, previous[j - 1]! + cost));
    }
    previous = row;
  }
  return previous[b.length]!;
}
