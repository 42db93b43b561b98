/**
 * The deployment kit, checked offline. Every Kubernetes object in deploy/kubernetes/ passes
 * the schema of its kind (kubernetes-models: the Kubernetes OpenAPI schemas compiled to
 * validators: types, required fields, enums) and has no key its kind lacks (TypeScript's
 * excess-property check against the same package's types, since the schemas allow any
 * key), and the choices Baton depends on hold: parallel start, member ids from the pod ordinal, probes
 * on the health endpoints, a headless Service whose names exist before readiness, a
 * disruption budget that keeps a majority. The settings the pods get through BATON_*
 * variables pass `baton start`'s own schema. The systemd unit's hardening is checked too.
 */

import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { StatefulSet } from "kubernetes-models/apps/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { Service } from "kubernetes-models/v1";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { loadStartConfig } from "../../src/cli/commands/start-config.js";

const ROOT = resolve(import.meta.dirname, "..", "..");
const K8S = join(ROOT, "deploy", "kubernetes");

interface Manifest {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: { readonly name: string };
  // biome-ignore lint/suspicious/noExplicitAny: the tests below read what the schema checked.
  readonly spec: any;
}

function manifests(): Manifest[] {
  return readdirSync(K8S)
    .filter((name) => name.endsWith(".yaml"))
    .flatMap((name) =>
      // YAML 1.1, as Kubernetes reads it (0440 is octal there).
      parseAllDocuments(readFileSync(join(K8S, name), "utf8"), { version: "1.1" }).map((doc) => {
        expect(doc.errors, name).toEqual([]);
        return doc.toJS() as Manifest;
      }),
    )
    .filter((m) => m !== null);
}

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  "v1/Service": Service,
  "apps/v1/StatefulSet": StatefulSet,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
};

function one(kind: string, name?: string): Manifest {
  const found = manifests().filter(
    (m) => m.kind === kind && (name === undefined || m.metadata.name === name),
  );
  expect(found, `${kind} ${name ?? ""}`).toHaveLength(1);
  return found[0]!;
}

describe("deploy", () => {
  it("deploy: the StatefulSet runs the image deploy/container/build.sh tags (this version), and the client package has the server's version", () => {
    const version = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version;
    const set = one("StatefulSet");
    expect(set.spec.template.spec.containers[0].image).toBe(`localhost/baton-ha:${version}`);
    const client = JSON.parse(
      readFileSync(join(ROOT, "packages", "client", "package.json"), "utf8"),
    );
    expect(client.version).toBe(version);
  });

  it("deploy: every Kubernetes object passes its kind's schema", () => {
    const all = manifests();
    expect(all.length).toBeGreaterThanOrEqual(4);
    for (const m of all) {
      const Model = MODELS[`${m.apiVersion}/${m.kind}`];
      expect(Model, `a schema for ${m.apiVersion} ${m.kind}`).toBeDefined();
      expect(() => new Model!(m as never).validate(), `${m.kind} ${m.metadata.name}`).not.toThrow();
    }
  });

  it("deploy: no object has a key its kind does not know (a misspelt key is not ignored)", () => {
    expect(unknownKeys(manifests())).toEqual([]);
    const typo = structuredClone(one("StatefulSet")) as Manifest;
    typo.spec.template.spec.containers[0].imagePullPolcy = "IfNotPresent";
    expect(unknownKeys([typo]).join("\n")).toMatch(
      /imagePullPolcy.* does not exist in type 'IContainer'/,
    );
  }, 30_000);

  it("deploy: the schema check catches a wrong type, a missing field and a bad enum", () => {
    const set = one("StatefulSet");
    const broken = structuredClone(set) as Manifest;
    broken.spec.podManagementPolicy = "AllAtOnce";
    expect(() => new StatefulSet(broken as never).validate()).toThrow(/podManagementPolicy/);
    const noPort = structuredClone(set) as Manifest;
    delete noPort.spec.template.spec.containers[0].livenessProbe.httpGet.port;
    expect(() => new StatefulSet(noPort as never).validate()).toThrow(/port/);
  });

  it("deploy: parallel start, ids from the ordinal, probes on /health, a headless Service and a budget that keeps a majority", () => {
    const set = one("StatefulSet").spec;
    expect(set.podManagementPolicy).toBe("Parallel");
    expect(set.ordinals.start).toBe(1);
    const container = set.template.spec.containers[0];
    const env = new Map<
      string,
      { value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }
    >(container.env.map((e: { name: string }) => [e.name, e]));
    expect(env.get("BATON_ID")?.valueFrom?.fieldRef?.fieldPath).toBe(
      "metadata.labels['apps.kubernetes.io/pod-index']",
    );
    for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"]) {
      expect(container[probe].httpGet.path, probe).toMatch(/^\/health/);
    }
    const headless = one("Service", set.serviceName).spec;
    expect(headless.clusterIP).toBe("None");
    expect(headless.publishNotReadyAddresses).toBe(true);
    const budget = one("PodDisruptionBudget").spec;
    expect(budget.maxUnavailable).toBe(1);
    expect(budget.selector.matchLabels).toEqual(set.selector.matchLabels);
    expect(set.template.metadata.labels).toMatchObject(set.selector.matchLabels);
    // The pods' settings are a valid `baton start` configuration for each member.
    for (let id = set.ordinals.start; id < set.ordinals.start + set.replicas; id++) {
      const vars: Record<string, string> = {};
      for (const [name, e] of env) {
        if (!name.startsWith("BATON_")) continue;
        vars[name] = (e.value ?? String(id))
          .replace("$(POD_NAME)", `${"baton"}-${id}`)
          .replace("$(BATON_ID)", String(id));
      }
      const loaded = loadStartConfig({ flags: {}, env: vars });
      expect(loaded.ok ? [] : loaded.problems, `member ${id}`).toEqual([]);
      expect(set.replicas).toBe(loaded.ok ? loaded.config.peers.length : 0);
    }
  });

  it("deploy: the systemd unit runs as its own user with the sandboxing options", () => {
    const unit = readFileSync(join(ROOT, "deploy", "systemd", "baton.service"), "utf8");
    for (const line of [
      "User=baton",
      "NoNewPrivileges=yes",
      "ProtectSystem=strict",
      "ProtectHome=yes",
      "PrivateTmp=yes",
      "StateDirectory=baton",
      "CapabilityBoundingSet=",
      `ExecReload=/bin/sh -c 'kill -HUP "$MAINPID"'`,
    ]) {
      expect(unit, line).toContain(`\n${line}`);
    }
  });

  it.runIf(hasSystemdAnalyze())(
    "deploy: systemd-analyze finds no unknown key in the unit and rates its exposure OK",
    () => {
      const file = join(ROOT, "deploy", "systemd", "baton.service");
      const verify = spawnSync("systemd-analyze", ["verify", file], { encoding: "utf8" });
      expect(verify.stderr + verify.stdout).toBe("");
      const security = spawnSync("systemd-analyze", ["security", "--offline=yes", file], {
        encoding: "utf8",
      });
      const level = /Overall exposure level for baton\.service: ([\d.]+) (\w+)/.exec(
        security.stdout,
      );
      expect(level?.[2], security.stdout.slice(-300)).toBe("OK");
      expect(Number(level?.[1])).toBeLessThan(2);
    },
  );
});

function hasSystemdAnalyze(): boolean {
  return spawnSync("systemd-analyze", ["--version"]).status === 0;
}

/**
 * The keys of `objects` that their kind does not have, as TypeScript's excess-property
 * check on kubernetes-models' types finds them (the schemas themselves allow any key).
 * The check file lives under node_modules/.cache so that it resolves kubernetes-models.
 */
function unknownKeys(objects: readonly Manifest[]): string[] {
  const types: Record<string, [string, string]> = {
    "v1/Service": ["kubernetes-models/v1", "IService"],
    "apps/v1/StatefulSet": ["kubernetes-models/apps/v1", "IStatefulSet"],
    "policy/v1/PodDisruptionBudget": ["kubernetes-models/policy/v1", "IPodDisruptionBudget"],
  };
  const lines = objects.map((m, i) => {
    const [module, type] = types[`${m.apiVersion}/${m.kind}`] ?? ["", ""];
    return `export const m${i} = ${JSON.stringify(m)} satisfies import("${module}").${type};`;
  });
  const dir = join(ROOT, "node_modules", ".cache", `baton-manifests-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, "check.ts");
  writeFileSync(file, lines.join("\n"));
  try {
    const program = ts.createProgram([file], {
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      types: [],
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      target: ts.ScriptTarget.ES2022,
    });
    return ts
      .getPreEmitDiagnostics(program)
      .map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n"));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
