#!/usr/bin/env bash
# test-package.sh: the Debian package on this machine, end to end.
#
# Builds version N (0.1.0-1) and N+1 (0.1.0-2, the same tree), checks N
# with lintian (no errors) and the installed unit with
# `systemd-analyze verify`, installs N with apt, points its conffile at a
# test bridge, starts the unit's ExecStart line (no systemd as PID 1 is
# needed), runs a pod whose container logs a line every 0.2 s, then does
# what `systemctl restart` does under KillMode=process (SIGTERM to the
# daemon only) and upgrades to N+1. The container must still be running,
# listed, exec-able and logging; `apt-get remove` must keep the state and
# the container; a purge after the pods are gone must leave the node clean.
#
# Needs root, the fixture registry (scripts/registry.sh) and crictl. Refuses
# to run where pvecri is installed or /var/lib/pvecri exists.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:/usr/local/bin:$PATH"
log() { printf '[test-package] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root"
if dpkg-query -W -f='${Status}' pvecri 2>/dev/null | grep -q installed || [ -e /var/lib/pvecri ] || [ -e /etc/pvecri ]; then
    die "pvecri is installed (or /var/lib/pvecri, /etc/pvecri exist) on this machine; the test installs and purges its own"
fi
curl -fsS http://127.0.0.1:5000/v2/ >/dev/null || die "no fixture registry on 127.0.0.1:5000 (scripts/registry.sh start)"
command -v crictl >/dev/null || die "no crictl (scripts/install-cri-tools.sh)"
if ! command -v lintian >/dev/null; then
    log "apt-get install lintian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lintian >/dev/null
fi

work=$(mktemp -d /tmp/pvecri-pkgtest-XXXXXX)
daemon_pid=""
SOCK=/run/pvecri/pvecri.sock
cri() { crictl --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" --timeout 30s "$@"; }

start_daemon() {
    local exec_start
    exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
    log "starting the unit's ExecStart: $exec_start"
    setsid $exec_start >> "$work/daemon.log" 2>&1 < /dev/null &
    daemon_pid=$!
    for _ in $(seq 100); do
        [ -S "$SOCK" ] && cri version >/dev/null 2>&1 && return
        kill -0 "$daemon_pid" 2>/dev/null || { tail -20 "$work/daemon.log" >&2; die "the daemon exited"; }
        sleep 0.2
    done
    die "the daemon did not answer on $SOCK"
}

# What systemd does to the service on stop or restart with KillMode=process:
# SIGTERM to the main process only.
stop_daemon() {
    [ -n "$daemon_pid" ] || return 0
    kill -TERM "$daemon_pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$daemon_pid" 2>/dev/null || { daemon_pid=""; return; }
        sleep 0.2
    done
    die "the daemon ignored SIGTERM"
}

cleanup() {
    local rc=$?
    if [ -x /usr/bin/pvecri ] && [ -z "$daemon_pid" ]; then start_daemon 2>/dev/null || true; fi
    [ -z "$daemon_pid" ] || cri rmp -fa >/dev/null 2>&1 || true
    stop_daemon 2>/dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq pvecri >/dev/null 2>&1 || true
    [ $rc -eq 0 ] || { log "daemon log:"; tail -30 "$work/daemon.log" >&2 || true; }
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT

log "building version N and N+1"
deb1=$(scripts/build-deb.sh --deb-version 0.1.0-1 --output "$work/n")
deb2=$(scripts/build-deb.sh --deb-version 0.1.0-2 --output "$work/n1")

log "lintian $deb1"
lintian --fail-on error --tag-display-limit 0 "$deb1" | tee "$work/lintian.txt" >&2 || die "lintian reports errors"

log "apt-get install N"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb1" >/dev/null
unit=$(dpkg -L pvecri | grep '/systemd/system/pvecri.service$')
log "systemd-analyze verify $unit"
systemd-analyze verify "$unit" 2>&1 | tee "$work/verify.txt" >&2
[ ! -s "$work/verify.txt" ] || die "systemd-analyze verify is not clean"
[ -x /usr/lib/pvecri/pvecri-init ] || die "no /usr/lib/pvecri/pvecri-init"
[ -x /usr/lib/pvecri/pvecri-helper ] || die "no /usr/lib/pvecri/pvecri-helper"
man -w pvecri >/dev/null || die "no pvecri(1) man page"
[ -f /usr/share/bash-completion/completions/pvecri ] || die "no bash completion"
[ -f /usr/share/pvecri/monitoring/alerts.yml ] || die "no alert rules"
dpkg-query -W -f='${Conffiles}' pvecri | grep -q /etc/pvecri/config.toml || die "config.toml is not a conffile"

# The operator's edit of the conffile: pods on a test bridge, never past
# this machine, images through the fixture registry.
sed -e 's/^bridge = .*/bridge = "pvecri-pk0"/' -e 's#^pod_cidr = .*#pod_cidr = "10.79.0.0/24"#' \
    tests/critest/pvecri.toml > /etc/pvecri/config.toml
cp /etc/pvecri/config.toml "$work/config.toml"

start_daemon
cat > "$work/pod.json" <<JSON
{"metadata": {"name": "pkg-pod", "namespace": "pkgtest", "uid": "pkg-uid", "attempt": 0},
 "log_directory": "$work/logs"}
JSON
cat > "$work/ctr.json" <<JSON
{"metadata": {"name": "ticker"}, "image": {"image": "registry.k8s.io/e2e-test-images/busybox:1.29-2"},
 "command": ["sh", "-c", "i=0; while true; do echo tick \$i; i=\$((i+1)); sleep 0.2; done"],
 "log_path": "ticker.log"}
JSON
mkdir -p "$work/logs"
cri pull registry.k8s.io/e2e-test-images/busybox:1.29-2 >/dev/null
pod=$(cri runp "$work/pod.json")
ctr=$(cri create "$pod" "$work/ctr.json" "$work/pod.json")
cri start "$ctr" >/dev/null
sleep 1
# Two monitor processes per container: the supervisor the daemon spawned
# (it stays in the service's cgroup, as containerd's shims do; the unit's
# KillMode=process leaves it alone) and the one liblxc started the
# container from, which liblxc moved into pvecri.monitor/<id>, outside the
# service's cgroup, with the container in a cgroup of its own.
monitors=$(pgrep -f "monitor --id $ctr" | tr '\n' ' ')
[ -n "$monitors" ] || die "no monitor for $ctr"
# They run the packaged helper binary, not the daemon's.
for m in $monitors; do
    tr '\0' ' ' < /proc/$m/cmdline | grep -q '^/usr/lib/pvecri/pvecri-helper monitor ' \
        || die "monitor $m does not run /usr/lib/pvecri/pvecri-helper"
done
outside=0
for m in $monitors; do
    [ "$(cat /proc/$m/cgroup)" = "$(cat /proc/$daemon_pid/cgroup)" ] || outside=$((outside + 1))
done
[ $outside -ge 1 ] || die "every monitor of $ctr is in the daemon's cgroup"

log "restart as under KillMode=process, then upgrade to N+1"
stop_daemon
for m in $monitors; do kill -0 "$m" || die "monitor $m died with the daemon"; done
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confold "$deb2" >/dev/null
[ "$(dpkg-query -W -f='${Version}' pvecri)" = 0.1.0-2 ] || die "not upgraded"
cmp -s /etc/pvecri/config.toml "$work/config.toml" || die "the upgrade replaced the edited conffile"
start_daemon
cri ps --id "$ctr" --state Running -q | grep -q "$ctr" || die "the container is not listed as running after the upgrade"
[ "$(cri exec "$ctr" echo alive)" = alive ] || die "exec into the container failed after the upgrade"
size=$(stat -c %s "$work/logs/ticker.log")
sleep 1
[ "$(stat -c %s "$work/logs/ticker.log")" -gt "$size" ] || die "the container's log stopped growing"

log "apt-get remove keeps the state and the container"
stop_daemon
DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq pvecri >/dev/null
[ -d /var/lib/pvecri ] || die "remove deleted /var/lib/pvecri"
for m in $monitors; do kill -0 "$m" || die "remove killed monitor $m"; done
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Options::=--force-confold "$deb2" >/dev/null
start_daemon
cri ps --id "$ctr" --state Running -q | grep -q "$ctr" || die "the container is gone after remove and reinstall"

log "purge while a container runs keeps the state"
stop_daemon
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq pvecri >/dev/null
[ -d /var/lib/pvecri ] || die "purge deleted /var/lib/pvecri under a running container"
for m in $monitors; do kill -0 "$m" || die "purge killed monitor $m"; done
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb2" >/dev/null
cp "$work/config.toml" /etc/pvecri/config.toml
start_daemon
cri ps --id "$ctr" --state Running -q | grep -q "$ctr" || die "the container is gone after a purge while it ran"

log "purge after the pods are gone"
cri rmp -fa >/dev/null
stop_daemon
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq pvecri >/dev/null
for p in /var/lib/pvecri /etc/pvecri /usr/bin/pvecri /usr/lib/pvecri; do
    [ ! -e "$p" ] || die "$p is left after purge"
done
"${CARGO_TARGET_DIR:-target}/release/pvecri" --config "$work/config.toml" census --stopped --node >&2 \
    || die "the census finds pvecri state after the purge"
log "passed"
