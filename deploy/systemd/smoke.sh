#!/usr/bin/env bash
# Runs deploy/systemd/baton.service for real: three containers boot systemd as init from a
# Debian 13 (trixie) root file system, each with Baton installed from `npm pack` of this
# checkout, the baton user, the unit and a configuration installed as the unit's header and
# docs/operations.md say (mutual TLS, HTTPS and tokens, every port bound to 0.0.0.0,
# peers on loopback). Then, through systemctl and the HTTP API:
#   the unit starts, runs as the baton user, sandboxed;
#   a configuration `baton start` refuses leaves the unit failed (exit 2), never restarted;
#   a write through one node is read through another; /metrics answers;
#   systemctl reload (SIGHUP) reloads the certificates and tokens, same process;
#   systemctl stop of the master is clean (exit 0, role handed over);
#   every node stopped and started again: the write is still there;
#   the unit's sandbox around a Node.js probe: what Node.js reads and may write;
#   the journals hold no EPERM, EACCES, EAFNOSUPPORT, missing file, error or crash.
# Containers and their copies of the root file system are removed on exit, even on failure.
#
# Usage (as root; debootstrap, podman, node and npm installed):
#   deploy/systemd/smoke.sh [work-directory]          (default: ./build/systemd)
# The root file system is made once (debootstrap, a few minutes) and kept in
# <work-directory>/rootfs; later runs reuse it (delete it to make a new one). The package
# is packed from this checkout on every run.
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian); PODMAN, the engine
# command (default "podman"); PODMAN_RUN_FLAGS, extra flags for `run`. A sandbox without
# cgroup v2 delegation or CAP_SYS_RESOURCE needs:
#   PODMAN="podman --storage-driver vfs --runtime runc --cgroup-manager cgroupfs" \
#   PODMAN_RUN_FLAGS="--ulimit nofile=20000:20000 --ulimit nproc=4096:4096" deploy/systemd/smoke.sh
# The containers are --privileged so that systemd inside can build the unit's sandbox
# (mount, UTS and other namespaces, seccomp) as it does on a host; without it systemd
# skips the namespaces it may not create, and the sandbox would not be tested.
set -euo pipefail
cd "$(dirname "$0")/../.."
checkout="$(pwd)"
out="$(realpath -m "${1:-build/systemd}")"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
read -r -a engine <<<"${PODMAN:-podman}"
read -r -a run_flags <<<"${PODMAN_RUN_FLAGS:-}"
version="$(node -p 'require("./package.json").version')"
for tool in debootstrap npm node "${engine[0]}"; do
  command -v "$tool" >/dev/null || { echo "smoke.sh: $tool is missing" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "smoke.sh: debootstrap and systemd containers need root" >&2; exit 2; }

tag="baton-systemd-$$"
run="$out/run-$$"
ids=(1 2 3)
peers="1=127.0.0.1:27101,2=127.0.0.1:27102,3=127.0.0.1:27103"
checks=0

cleanup() {
  local status=$?
  for id in "${ids[@]}"; do
    "${engine[@]}" stop -t 30 "$tag-$id" >/dev/null 2>&1 || true
    "${engine[@]}" rm -f "$tag-$id" >/dev/null 2>&1 || true
  done
  rm -rf "$run"
  if [ "$status" = 0 ]; then echo "smoke: ok ($checks checks)"; else echo "smoke: FAILED (exit $status)" >&2; fi
}
trap cleanup EXIT

ok() { checks=$((checks + 1)); echo "  ok: $*"; }
fail() { echo "  FAILED: $*" >&2; exit 1; }
in_node() { local id="$1"; shift; "${engine[@]}" exec "$tag-$id" "$@"; }
show() { in_node "$1" systemctl show baton --value -p "$2"; }
api() {
  # api <node> <curl arguments...>: the node's HTTPS API with the admin token.
  local id="$1"; shift
  in_node "$id" curl -sS --max-time 5 --cacert /etc/baton/ca.crt -H "Authorization: Bearer $token" "$@"
}
role_of() { api "$1" -f "https://127.0.0.1:2810$1/v1/status" 2>/dev/null | node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>{try{console.log(JSON.parse(s).role)}catch{console.log("")}})'; }
wait_master() {
  for _ in $(seq 1 150); do
    for id in "$@"; do
      if [ "$(role_of "$id")" = master ]; then echo "$id"; return 0; fi
    done
    sleep 0.2
  done
  fail "no master among nodes $*"
}

echo "== 1/6 the root file system ($out/rootfs)"
if [ -x "$out/rootfs/usr/lib/systemd/systemd" ] && [ -x "$out/rootfs/usr/bin/node" ]; then
  echo "  reusing it"
else
  mkdir -p "$out"
  rm -rf "$out/rootfs.tmp"
  # minbase has no procps (no /bin/kill, no ps): the unit must not need them.
  nice debootstrap --variant=minbase --include=systemd,nodejs,ca-certificates,curl \
    trixie "$out/rootfs.tmp" "$mirror" >"$out/debootstrap.log"
  mv "$out/rootfs.tmp" "$out/rootfs"
fi
echo "  $(chroot "$out/rootfs" /usr/lib/systemd/systemd --version | head -1), Node.js $(chroot "$out/rootfs" node --version)"

echo "== 2/6 the package of this checkout, its production dependencies, the certificates"
rm -rf "$run" && mkdir -p "$run/app" "$run/pki"
nice npm pack --silent --pack-destination "$run" >/dev/null
echo '{"private": true}' >"$run/app/package.json"
(cd "$run/app" && nice npm install --silent --omit=dev --no-audit --no-fund --no-save "$run/baton-ha-${version}.tgz")
baton=("$run/app/node_modules/.bin/baton")
"${baton[@]}" certs ca --out "$run/pki" >/dev/null
for id in "${ids[@]}"; do
  "${baton[@]}" certs node --id "$id" --ca "$run/pki" --host 127.0.0.1 --host localhost \
    --out "$run/pki/node$id" >/dev/null
done
token="$("${baton[@]}" certs token --name admin --role admin --tokens "$run/pki/tokens.json" | head -1)"
[ -n "$token" ] || fail "no token from baton certs token"

echo "== 3/6 three containers boot systemd"
for id in "${ids[@]}"; do
  root="$run/node$id"
  cp -a "$out/rootfs" "$root"
  mkdir -p "$root/opt/baton" "$root/root/install"
  cp -a "$run/app/node_modules" "$root/opt/baton/"
  ln -sf /opt/baton/node_modules/.bin/baton "$root/usr/local/bin/baton"
  cp "$checkout/deploy/systemd/baton.service" "$checkout/deploy/systemd/probe.cjs" \
    "$run/pki/node$id/ca.crt" "$run/pki/node$id/node.crt" "$run/pki/node$id/node.key" \
    "$run/pki/tokens.json" "$root/root/install/"
  cat >"$root/root/install/baton.json" <<EOF
{
  "id": $id,
  "peers": "$peers",
  "listen": "0.0.0.0:2710$id",
  "http": "0.0.0.0:2810$id",
  "advertiseHttp": "127.0.0.1:2810$id",
  "data": "/var/lib/baton",
  "tlsCa": "/etc/baton/ca.crt",
  "tlsCert": "/etc/baton/node.crt",
  "tlsKey": "/etc/baton/node.key",
  "httpTlsCert": "/etc/baton/node.crt",
  "httpTlsKey": "/etc/baton/node.key",
  "tokens": "/etc/baton/tokens.json"
}
EOF
  "${engine[@]}" run -d --name "$tag-$id" --systemd=always --privileged --network host \
    "${run_flags[@]}" --rootfs "$root" /usr/lib/systemd/systemd >/dev/null
done
for id in "${ids[@]}"; do
  state=""
  for _ in $(seq 1 100); do
    state="$(in_node "$id" systemctl is-system-running 2>/dev/null || true)"
    case "$state" in running | degraded) break ;; esac
    sleep 0.3
  done
  case "$state" in running | degraded) ;; *) fail "node $id: systemd is '$state'" ;; esac
  failed="$(in_node "$id" systemctl list-units --failed --plain --no-legend | awk '{print $1}' | tr '\n' ' ')"
  ok "container $id: systemd $state as PID 1${failed:+ (failed units: $failed)}"
done

echo "== 4/6 install and start the unit, as its header says"
for id in "${ids[@]}"; do
  in_node "$id" sh -euc '
    cd /root/install
    useradd --system --home-dir /var/lib/baton --shell /usr/sbin/nologin baton
    install -d -m 0750 -o root -g baton /etc/baton
    install -m 0640 -o root -g baton ca.crt node.crt node.key tokens.json baton.json /etc/baton/
    install -m 0644 baton.service /etc/systemd/system/ && systemctl daemon-reload
    baton config check /etc/baton/baton.json >/dev/null && systemctl enable --now baton 2>/dev/null'
done
for id in "${ids[@]}"; do
  for _ in $(seq 1 100); do
    [ "$(show "$id" SubState)" = running ] && break
    sleep 0.2
  done
  [ "$(show "$id" ActiveState)/$(show "$id" SubState)" = active/running ] ||
    fail "node $id: baton.service is $(show "$id" ActiveState)/$(show "$id" SubState)"
  pid="$(show "$id" MainPID)"
  user="$(in_node "$id" stat -c %U "/proc/$pid")"
  [ "$user" = baton ] || fail "node $id: runs as $user"
  sandbox="$(in_node "$id" sh -c "grep -E '^(NoNewPrivs|Seccomp|CapEff):' /proc/$pid/status | tr -s '\t\n' '  '")"
  [[ "$sandbox" == *"CapEff: 0000000000000000"* && "$sandbox" == *"NoNewPrivs: 1"* && "$sandbox" == *"Seccomp: 2"* ]] ||
    fail "node $id: $sandbox"
  [ "$(in_node "$id" readlink "/proc/$pid/ns/mnt")" != "$(in_node "$id" readlink /proc/1/ns/mnt)" ] ||
    fail "node $id: no mount namespace of its own"
  root_mount="$(in_node "$id" awk '$5 == "/" {print $6}' "/proc/$pid/mountinfo" | tail -1)"
  [[ "$root_mount" == ro,* ]] || fail "node $id: / is mounted $root_mount"
  nofile="$(in_node "$id" awk '/open files/ {print $4, $5}' "/proc/$pid/limits")"
  ok "node $id: active/running, pid $pid as user $user;" \
    "$sandbox; own mount namespace, / read-only; open files limit $nofile"
done

# The same unit with a configuration baton start refuses: failed at once, with exit code 2,
# and left failed (RestartPreventExitStatus=2), not started again every RestartSec.
in_node 1 sh -euc '
  sed -e "s/\"id\": 1,/\"id\": 1, \"heartbeatMs\": 5000,/" -e "s|/var/lib/baton\"|/var/lib/baton-bad\"|" \
    /etc/baton/baton.json >/etc/baton/bad.json
  chgrp baton /etc/baton/bad.json && chmod 0640 /etc/baton/bad.json
  sed -e "s|/etc/baton/baton.json|/etc/baton/bad.json|" -e "s|^StateDirectory=baton|StateDirectory=baton-bad|" \
    /etc/systemd/system/baton.service >/etc/systemd/system/baton-bad.service
  systemctl daemon-reload && systemctl start baton-bad' 2>/dev/null || true
sleep 5
bad=""
for property in ActiveState Result ExecMainStatus NRestarts; do
  bad+="$(in_node 1 systemctl show baton-bad --value -p "$property") "
done
[ "$bad" = "failed exit-code 2 0 " ] ||
  fail "a refused configuration: ActiveState Result ExecMainStatus NRestarts = $bad"
ok "a configuration baton start refuses: the unit failed with exit code 2 and was not restarted:"
in_node 1 journalctl -u baton-bad -o cat --no-pager | grep -vE '^(baton-bad.service|Start|Stop)' | head -3 | sed 's/^/      /'

echo "== 5/6 the API, reload, stop, restart"
master="$(wait_master "${ids[@]}")"
ok "node $master is master"
backup=$((master % 3 + 1))
other=$((backup % 3 + 1))
answer="$(api "$backup" -f -X PUT --data hello "https://127.0.0.1:2810$backup/v1/kv/greeting")"
ok "PUT greeting=hello through backup node $backup: $answer"
answer="$(api "$other" -f "https://127.0.0.1:2810$other/v1/kv/greeting")"
[[ "$answer" == *'"value":"hello"'* ]] || fail "GET through node $other: $answer"
ok "GET through node $other: $answer"
for id in "${ids[@]}"; do
  metrics="$(api "$id" -f "https://127.0.0.1:2810$id/metrics")"
  grep -q '^process_open_fds ' <<<"$metrics" || fail "node $id: /metrics has no process_open_fds"
  grep -q '^baton_' <<<"$metrics" || fail "node $id: /metrics has no baton_ metric"
  ok "node $id: /metrics: $(grep -c '^[a-z]' <<<"$metrics") samples;" \
    "$(grep -E '^(process_open_fds|process_max_fds|process_resident_memory_bytes) ' <<<"$metrics" | tr '\n' ' ')"
done

for id in "${ids[@]}"; do
  pid="$(show "$id" MainPID)"
  in_node "$id" systemctl reload baton
  sleep 1
  [ "$(show "$id" MainPID)" = "$pid" ] || fail "node $id: reload changed the process"
  line="$(in_node "$id" journalctl -u baton -o cat --no-pager | grep '"event":"reloaded"' | tail -1)"
  [ -n "$line" ] || fail "node $id: no reload in the journal"
  ok "node $id: systemctl reload: same pid $pid, $(node -p 'JSON.parse(process.argv[1]).msg' "$line")"
done

in_node "$master" systemctl stop baton
result="$(show "$master" Result) $(show "$master" ExecMainCode) $(show "$master" ExecMainStatus)"
[ "$result" = "success 1 0" ] || fail "node $master: stop: Result ExecMainCode ExecMainStatus = $result"
ok "node $master (master): systemctl stop: Result=success, exited with status 0; its journal:"
in_node "$master" journalctl -u baton -o cat --no-pager | grep -vE '^( |\{$|\}$)' | tail -6 | sed 's/^/      /'
rest=()
for id in "${ids[@]}"; do [ "$id" = "$master" ] || rest+=("$id"); done
new="$(wait_master "${rest[@]}")"
ok "node $new took over as master"

for id in "${ids[@]}"; do in_node "$id" systemctl stop baton; done
for id in "${ids[@]}"; do in_node "$id" systemctl start baton; done
master="$(wait_master "${ids[@]}")"
answer="$(api "$master" -f "https://127.0.0.1:2810$master/v1/kv/greeting")"
[[ "$answer" == *'"value":"hello"'* ]] || fail "after the restart: $answer"
ok "every node stopped and started again: node $master is master, GET: $answer"

echo "== 6/6 the sandbox, seen from inside; the journals"
# The probe runs under the unit itself, its ExecStart replaced: same user, same sandbox.
in_node 1 sh -euc '
  sed -e "/^ExecStartPre=/d" -e "/^ExecReload=/d" -e "/^Restart/d" -e "s/^Type=exec/Type=oneshot/" \
    -e "s|^ExecStart=.*|ExecStart=/usr/bin/node /usr/local/lib/baton-probe.cjs|" \
    /etc/systemd/system/baton.service >/etc/systemd/system/baton-probe.service
  install -m 0644 /root/install/probe.cjs /usr/local/lib/baton-probe.cjs
  systemctl daemon-reload && systemctl start baton-probe' || true
probe="$(in_node 1 journalctl -u baton-probe -o cat --no-pager)"
sed 's/^/      /' <<<"$probe"
[ "$(in_node 1 systemctl show baton-probe --value -p Result)" = success ] || fail "the probe did not run"
if grep -q '^probe FAILED' <<<"$probe"; then fail "the sandbox took away something baton start needs"; fi
ok "the unit's sandbox gives Node.js what Baton uses (probe above)"
security="$(in_node 1 systemd-analyze security baton.service --no-pager | tail -1)"
ok "systemd-analyze security (systemd inside): ${security#→ }"
for id in "${ids[@]}"; do
  journal="$(in_node "$id" journalctl -u baton -o cat --no-pager)"
  bad="$(grep -E 'EPERM|EACCES|EAFNOSUPPORT|ENOENT|EROFS|not permitted|[Pp]ermission denied|"level":(50|60)|Node\.js v|code=killed|status=[1-9]' <<<"$journal" || true)"
  [ -z "$bad" ] || { echo "$bad" >&2; fail "node $id: the journal above"; }
  # Warnings are shown, not failed: peers stopping and starting reset connections.
  warnings="$(grep -c '"level":40' <<<"$journal" || true)"
  ok "node $id: journal: $(wc -l <<<"$journal") lines, no EPERM, EACCES, EAFNOSUPPORT, ENOENT, EROFS, error or crash; $warnings warning(s)"
  { grep '"level":40' <<<"$journal" || true; } | node -e 'let s="";process.stdin.on("data",(d)=>(s+=d)).on("end",()=>{for(const l of s.split("\n").filter(Boolean))console.log(`      warning: ${JSON.parse(l).msg}`)})' 
done
