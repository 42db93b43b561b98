// Run by deploy/systemd/smoke.sh under baton.service's own sandbox (the unit with its
// ExecStart replaced): what Node.js and Baton's dependencies read from the system and
// where they may write. One line per probe, "probe <what>: <result>"; a line starting
// "probe FAILED" is something `baton start` relies on that the sandbox took away.
"use strict";
const fs = require("node:fs");
const os = require("node:os");
const net = require("node:net");
const dgram = require("node:dgram");
const { Worker } = require("node:worker_threads");
const { monitorEventLoopDelay } = require("node:perf_hooks");

const lines = [];
const report = (ok, what, value) => lines.push(`probe ${ok ? "" : "FAILED "}${what}: ${value}`);
/** Something Baton needs: it must work. */
function needs(what, read) {
  try {
    report(true, what, read());
  } catch (error) {
    report(false, what, `${error.code ?? ""} ${error.message}`);
  }
}
/** Something the sandbox must refuse. */
function refused(what, attempt) {
  try {
    attempt();
    report(false, what, "allowed");
  } catch (error) {
    report(true, what, `refused (${error.code})`);
  }
}
/** Only reported: Baton does not use it, but a dependency added later might. */
function noted(what, read) {
  try {
    lines.push(`probe (not used by baton start) ${what}: ${read()}`);
  } catch (error) {
    lines.push(`probe (not used by baton start) ${what}: ${error.code ?? error.message}`);
  }
}

needs("user", () => os.userInfo().username);
needs("os.availableParallelism()", () => os.availableParallelism());
needs("os.networkInterfaces() (Fastify, HTTP API on 0.0.0.0)", () =>
  Object.keys(os.networkInterfaces()).join(","),
);
needs("os.hostname()", () => os.hostname());
needs("os.totalmem()", () => os.totalmem());
needs("process.memoryUsage().rss", () => process.memoryUsage().rss);
for (const file of ["/proc/self/stat", "/proc/self/status", "/proc/self/limits"]) {
  needs(`${file} (prom-client)`, () => `${fs.readFileSync(file, "utf8").length} bytes`);
}
needs("/proc/self/fd (prom-client)", () => `${fs.readdirSync("/proc/self/fd").length} entries`);
needs("write and fsync in /var/lib/baton", () => {
  const file = "/var/lib/baton/.probe";
  const fd = fs.openSync(file, "w", 0o600);
  fs.writeSync(fd, "probe");
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.unlinkSync(file);
  return "ok";
});
needs("statfs /var/lib/baton", () => `${fs.statfsSync("/var/lib/baton").bavail} blocks free`);
needs("write in the private /tmp", () => {
  const file = `${os.tmpdir()}/probe`;
  fs.writeFileSync(file, "probe");
  fs.unlinkSync(file);
  return os.tmpdir();
});
needs(
  "read /etc/baton/baton.json",
  () => `${fs.readFileSync("/etc/baton/baton.json").length} bytes`,
);
refused("write /etc/baton", () => fs.writeFileSync("/etc/baton/probe", "probe"));
refused("write /opt/baton", () => fs.writeFileSync("/opt/baton/probe", "probe"));
refused("read /root", () => fs.readdirSync("/root"));
noted(
  "os.cpus().length (ProcSubset=pid hides /proc/cpuinfo and /proc/stat)",
  () => os.cpus().length,
);
noted("os.loadavg()", () => os.loadavg().join(" "));
noted("os.uptime()", () => os.uptime());
noted("processes visible in /proc", () =>
  fs
    .readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .join(","),
);

const delay = monitorEventLoopDelay();
delay.enable();
const server = net.createServer();
server.listen(`${os.tmpdir()}/probe.sock`, async () => {
  report(true, "AF_UNIX listen", "ok");
  server.close();
  const udp = dgram.createSocket("udp4");
  udp.bind(0, "127.0.0.1", async () => {
    report(true, "AF_INET (udp4 bind 127.0.0.1)", "ok");
    udp.close();
    await new Promise((resolve) => setTimeout(resolve, 200));
    delay.disable();
    report(delay.count > 0, "monitorEventLoopDelay (prom-client)", `${delay.count} samples`);
    const exit = await new Promise((resolve) => {
      new Worker("process.exit(0)", { eval: true })
        .on("exit", (code) => resolve(`exit ${code}`))
        .on("error", (error) => resolve(`error ${error.message}`));
    });
    report(exit === "exit 0", "worker thread", exit);
    try {
      const prom = require("/opt/baton/node_modules/prom-client");
      const registry = new prom.Registry();
      prom.collectDefaultMetrics({ register: registry });
      const text = await registry.metrics();
      const wanted = ["process_cpu_seconds_total", "process_open_fds", "process_max_fds"];
      const missing = wanted.filter((name) => !text.includes(`\n${name} `));
      report(missing.length === 0, "prom-client default metrics", missing.join(",") || "all there");
    } catch (error) {
      report(false, "prom-client default metrics", error.message);
    }
    for (const line of lines) console.log(line);
  });
});
