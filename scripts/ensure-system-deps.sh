#!/usr/bin/env bash
# Runs before `npm test`: installs the system packages the test suite drives (HAProxy,
# for the load-balancer test) when they are missing and this is a Debian machine where
# we are root, so that `npm ci && npm test` is the whole set-up on a fresh machine.
# Anywhere else it says what to install and lets the tests say what they miss.
set -u
if command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing haproxy (for test/integration/haproxy.test.ts)..."
  if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; then
    exit 0
  fi
  echo "could not install haproxy with apt-get; the HAProxy test will fail" >&2
  exit 0
fi
echo "haproxy is not installed: install it (apt-get install -y haproxy) or the HAProxy test will fail" >&2
exit 0
