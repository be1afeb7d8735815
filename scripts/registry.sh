#!/usr/bin/env bash
# registry.sh start|stop|restart|status: run a private image registry for the
# pvecri tests on 127.0.0.1:5000 only, without systemd.
# It runs Debian's docker-registry binary with a config file written by this
# script ($STATE_DIR/registry-config.yml); images live in $STATE_DIR/registry,
# the log goes to $LOG_FILE and the pid to $PID_FILE. Debian's own packaged
# service (/etc/docker/registry/config.yml, which binds :5000 on every
# address) is never started or used by this script. If docker-registry is
# missing it is installed with apt, with service starts blocked meanwhile.
# All commands are idempotent: `start` on a running registry just checks it.
set -euo pipefail

ADDR="127.0.0.1"
PORT="5000"
STATE_DIR="/var/lib/pvecri-test"
STORAGE_DIR="$STATE_DIR/registry"
CONFIG="$STATE_DIR/registry-config.yml"
LOG_FILE="/var/log/pvecri-test-registry.log"
PID_FILE="/run/pvecri-test-registry.pid"
BINARY="/usr/bin/docker-registry"
URL="http://$ADDR:$PORT/v2/"
START_TIMEOUT=30

log() { printf '[registry] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "run as root"; }

apt_install() {
    local policy=/usr/sbin/policy-rc.d created=0
    # Keep the package's own service from starting (it would take :5000 on
    # all addresses); only do this if no policy-rc.d is in place already.
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        created=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 ||
        { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2; } ||
        { [ "$created" = 1 ] && rm -f "$policy"; die "apt-get install $* failed"; }
    if [ "$created" = 1 ]; then rm -f "$policy"; fi
}

ensure_packages() {
    local pkgs=()
    [ -x "$BINARY" ] || pkgs+=(docker-registry)
    command -v curl >/dev/null 2>&1 || pkgs+=(curl)
    command -v start-stop-daemon >/dev/null 2>&1 || pkgs+=(dpkg)
    if [ "${#pkgs[@]}" -gt 0 ]; then
        log "installing ${pkgs[*]}"
        apt_install "${pkgs[@]}"
    fi
}

answers() { curl -sf -o /dev/null --max-time 2 "$URL"; }

# is_ours PID: PID is alive and is docker-registry serving our config.
is_ours() {
    local pid="$1" cmd
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    [ "$cmd" = "$BINARY serve $CONFIG " ]
}

# our_pid: print the pid of our running instance, if any (pidfile first,
# then a scan of /proc in case the pidfile was lost).
our_pid() {
    local pid p
    if [ -f "$PID_FILE" ]; then
        pid="$(cat "$PID_FILE" 2>/dev/null || true)"
        if is_ours "$pid"; then printf '%s\n' "$pid"; return 0; fi
    fi
    for p in /proc/[0-9]*; do
        pid="${p#/proc/}"
        if is_ours "$pid"; then printf '%s\n' "$pid"; return 0; fi
    done
    return 1
}

# port_in_use: something listens on PORT on 127.0.0.1 or the wildcard address.
port_in_use() {
    if command -v ss >/dev/null 2>&1; then
        ss -Hltn "( sport = :$PORT )" 2>/dev/null | grep -q .
    else
        (exec 3<>"/dev/tcp/$ADDR/$PORT") 2>/dev/null
    fi
}

write_config() {
    local tmp
    mkdir -p "$STATE_DIR" "$STORAGE_DIR"
    tmp="$(mktemp "$STATE_DIR/.registry-config.XXXXXX")"
    cat >"$tmp" <<EOF
# Written by pvecri scripts/registry.sh; edits are overwritten on start.
version: 0.1
log:
  level: info
  formatter: text
  fields:
    service: pvecri-test-registry
storage:
  filesystem:
    rootdirectory: $STORAGE_DIR
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $ADDR:$PORT
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: false
EOF
    chmod 0644 "$tmp"
    if cmp -s "$tmp" "$CONFIG"; then rm -f "$tmp"; else mv "$tmp" "$CONFIG"; fi
}

run_user() {
    if getent passwd docker-registry >/dev/null 2>&1; then echo docker-registry; else echo root; fi
}

cmd_start() {
    local pid user i
    need_root
    if pid="$(our_pid)"; then
        if answers; then
            echo "$pid" >"$PID_FILE"
            log "already running (pid $pid) on $ADDR:$PORT"
            return 0
        fi
        log "our registry (pid $pid) does not answer; restarting it"
        cmd_stop
    fi
    if answers || port_in_use; then
        die "port $PORT is already taken by a process that is not ours (Debian's packaged docker-registry service? stop it with '/etc/init.d/docker-registry stop' or disable its unit)"
    fi
    ensure_packages
    write_config
    user="$(run_user)"
    chown -R "$user:" "$STORAGE_DIR"
    touch "$LOG_FILE"
    mkdir -p "$(dirname "$PID_FILE")"
    rm -f "$PID_FILE"
    log "starting $BINARY serve $CONFIG as $user"
    # env -i: REGISTRY_* variables from the caller must not override our config.
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/ \
        start-stop-daemon --start --background --no-close \
        --make-pidfile --pidfile "$PID_FILE" \
        --chuid "$user" --chdir / \
        --exec "$BINARY" -- serve "$CONFIG" >>"$LOG_FILE" 2>&1 </dev/null
    for ((i = 0; i < START_TIMEOUT * 5; i++)); do
        if answers; then
            log "running (pid $(cat "$PID_FILE")) on $URL"
            return 0
        fi
        if ! is_ours "$(cat "$PID_FILE" 2>/dev/null || true)"; then
            tail -n 20 "$LOG_FILE" >&2 || true
            die "registry exited during start-up; see $LOG_FILE"
        fi
        sleep 0.2
    done
    tail -n 20 "$LOG_FILE" >&2 || true
    die "registry did not answer on $URL within ${START_TIMEOUT}s; see $LOG_FILE"
}

cmd_stop() {
    local pid i
    need_root
    if ! pid="$(our_pid)"; then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    log "stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        is_ours "$pid" || break
        sleep 0.2
    done
    if is_ours "$pid"; then
        log "pid $pid ignored SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$PID_FILE"
    log "stopped"
}

cmd_status() {
    local pid
    if pid="$(our_pid)"; then
        if answers; then
            echo "running: pid $pid, $URL, storage $STORAGE_DIR, log $LOG_FILE"
            return 0
        fi
        echo "unhealthy: pid $pid is running but $URL does not answer (log $LOG_FILE)"
        return 1
    fi
    if answers || port_in_use; then
        echo "foreign: port $PORT is used by a process that is not ours"
        return 1
    fi
    echo "stopped"
    return 3
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
restart) cmd_stop; cmd_start ;;
status) cmd_status ;;
*)
    echo "usage: $0 start|stop|restart|status" >&2
    exit 2
    ;;
esac
