#!/usr/bin/env bash
# Runs before `npm test`: installs the system packages the test suite drives when they are
# missing and this is a Debian machine where we are root, so that `npm ci && npm test` is
# the whole set-up on a fresh machine:
#   haproxy   for test/integration/haproxy.test.ts (the load-balancer example)
#   chromium  for test/browser/dashboard.test.ts (the dashboard, driven by playwright-core)
#   wrk       for the throughput benchmark's C load generator (bench/wrk-load.ts and its
#             tests: test/bench/wrk-load.test.ts, the smoke run of --generator wrk)
#   iptables  for partitions: test/integration/hosts.test.ts (nodes on separate hosts, in
#             network namespaces), the benchmarks' and the fault campaign's iptables modes
# Anywhere else it says what to install and lets the tests say what they miss.
set -u
missing=()
if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then missing+=(haproxy); fi
if [ ! -x /usr/bin/chromium ]; then missing+=(chromium); fi
if ! command -v iptables >/dev/null 2>&1 && [ ! -x /usr/sbin/iptables ]; then missing+=(iptables); fi
if ! command -v wrk >/dev/null 2>&1; then missing+=(wrk); fi
if [ "${#missing[@]}" -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} (for the HAProxy, browser, network and load-generator tests)..."
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; then
    exit 0
  fi
  echo "could not install ${missing[*]} with apt-get; the tests that need them will fail" >&2
  exit 0
fi
echo "not installed: ${missing[*]}: install them (apt-get install -y ${missing[*]}) or the tests that need them will fail" >&2
exit 0
