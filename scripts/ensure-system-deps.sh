#!/usr/bin/env bash
# Runs before `npm test`: installs the system packages the test suite drives (HAProxy,
# for the load-balancer test; iptables, for the fault campaign's network partitions) when
# they are missing and this is a Debian machine where we are root, so that
# `npm ci && npm test` is the whole set-up on a fresh machine. Anywhere else it says what
# to install and lets the tests say what they miss (the fault campaign then partitions
# through its TCP relay instead).
set -u
missing=()
if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then missing+=(haproxy); fi
if ! command -v iptables >/dev/null 2>&1 && [ ! -x /usr/sbin/iptables ]; then missing+=(iptables); fi
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} (for test/integration/haproxy.test.ts and test/chaos)..."
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; then
    exit 0
  fi
  echo "could not install ${missing[*]} with apt-get; the tests that need them will fail or fall back" >&2
  exit 0
fi
echo "not installed: ${missing[*]} (apt-get install -y ${missing[*]}); the HAProxy test will fail without haproxy, the fault campaign uses its TCP relay without iptables" >&2
exit 0
