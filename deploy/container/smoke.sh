#!/usr/bin/env bash
# Three containers of the Baton image form a cluster: each with its own volume, on the
# host's loopback (so no TLS is needed); a write through one is read through another, the
# master's container is killed, a backup takes over, and the write is still there.
#
# Usage: deploy/container/smoke.sh [image]      (default localhost/baton-ha:<version>)
# PODMAN: the engine command (default "podman"; "docker" works too).
# PODMAN_RUN_FLAGS: extra flags for `run`. A sandbox without cgroup v2 delegation or
# CAP_SYS_RESOURCE needs, for podman:
#   PODMAN="podman --storage-driver vfs --runtime runc --cgroup-manager cgroupfs" \
#   PODMAN_RUN_FLAGS="--ulimit nofile=4096:4096 --ulimit nproc=4096:4096" deploy/container/smoke.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
version="$(node -p 'require("./package.json").version')"
image="${1:-localhost/baton-ha:${version}}"
read -r -a engine <<<"${PODMAN:-podman}"
read -r -a run_flags <<<"${PODMAN_RUN_FLAGS:-}"
tag="baton-smoke-$$"
peers="1=127.0.0.1:17101,2=127.0.0.1:17102,3=127.0.0.1:17103"

cleanup() {
  for id in 1 2 3; do
    "${engine[@]}" rm -f "$tag-$id" >/dev/null 2>&1 || true
    "${engine[@]}" volume rm -f "$tag-$id" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT

status() { curl -sf --max-time 1 "http://127.0.0.1:1810$1/v1/status" || true; }
master_of() { status "$1" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{try{const j=JSON.parse(s);console.log(j.role==="master"?j.id:"")}catch{console.log("")}})'; }
wait_master() {
  for _ in $(seq 1 100); do
    for id in "$@"; do
      m="$(master_of "$id")"
      if [ -n "$m" ]; then echo "$m"; return 0; fi
    done
    sleep 0.2
  done
  echo "no master among $*" >&2
  return 1
}

for id in 1 2 3; do
  "${engine[@]}" run -d --name "$tag-$id" --network host "${run_flags[@]}" \
    -v "$tag-$id:/var/lib/baton" \
    -e BATON_ID="$id" -e BATON_PEERS="$peers" \
    -e BATON_HTTP="127.0.0.1:1810$id" -e BATON_DATA=/var/lib/baton \
    "$image" start >/dev/null
done
master="$(wait_master 1 2 3)"
echo "master: node $master"
curl -sf -X PUT --data hello "http://127.0.0.1:1810${master}/v1/kv/greeting"
echo
other=$(( master % 3 + 1 ))
# The first master may be elected by two nodes while the third container still starts.
for _ in $(seq 1 100); do
  [ "$(status "$other" | node -p 'try{JSON.parse(require("fs").readFileSync(0,"utf8")).master}catch{0}')" = "$master" ] && break
  sleep 0.2
done
curl -sf "http://127.0.0.1:1810${other}/v1/kv/greeting" | grep -q '"value":"hello"'
echo "read back through node $other"
"${engine[@]}" kill "$tag-$master" >/dev/null
rest=()
for id in 1 2 3; do [ "$id" = "$master" ] || rest+=("$id"); done
new="$(wait_master "${rest[@]}")"
echo "after killing node $master's container: node $new is master"
curl -sf "http://127.0.0.1:1810${new}/v1/kv/greeting" | grep -q '"value":"hello"'
echo "smoke: ok (three containers, a write read back, the master's container killed, the write still there)"
