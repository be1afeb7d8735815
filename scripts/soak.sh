#!/usr/bin/env bash
# soak.sh: does a daemon stay flat over many pods and pulls? Not a test (no
# timing assertions): a measurement, written up in docs/benchmarks.md
# ("Soak").
#
# Starts its own `pvecri daemon` on a temporary state and run dir (bridge
# pvt-soak, 10.78.91.0/24, never forwarded past the bridge; images through
# the fixture registry's mirrors), then drives it with pvecri-bench:
# SOAK_CYCLES pod lifecycles (RunPodSandbox, CreateContainer,
# StartContainer, ExecSync, StopContainer, RemoveContainer, StopPodSandbox,
# RemovePodSandbox) and SOAK_PULLS PullImage/RemoveImage cycles, in batches
# of SOAK_EVERY. Before, between and after the batches (each after
# SOAK_SETTLE seconds idle) it samples the daemon's RSS, open fds,
# threads, the store's size and the census (`pvecri census`), and at the
# end says whether they are flat against the sample taken after a warm-up
# of SOAK_WARMUP cycles and as many pulls. Last, the daemon is stopped and
# `pvecri census --stopped` must find nothing left.
#
# Why a warm-up and slack: tokio's blocking pool keeps as many threads as
# were ever busy at once while some blocking work arrives within their
# 10 s keep-alive (the exit watcher's is every second), and glibc gives
# each new thread its own malloc arena; pulls (3 parallel downloads plus
# unpacking) raise both once. Growth that continues after that is a leak.
#
# Needs root, jq, the fixture registry (scripts/registry.sh start,
# scripts/build-fixture-images.sh) and pvecri-init (scripts/build-init.sh).
# Environment: SOAK_CYCLES [1000]  SOAK_PULLS [1000]  SOAK_EVERY [250]
#   SOAK_WARMUP [100]  SOAK_SETTLE [11]  PROFILE [release]
#   PVECRI_BIN [target/$PROFILE/pvecri]  BENCH_BIN [target/$PROFILE/pvecri-bench]
#   PVECRI_INIT [target/x86_64-unknown-linux-gnu/release/pvecri-init]
#   SOAK_RSS_SLACK_KIB [4096], SOAK_THREAD_SLACK [2]: growth still called
#   flat (RSS: this or 10%, whichever is more)
set -euo pipefail

W=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$W"
CYCLES=${SOAK_CYCLES:-1000}
PULLS=${SOAK_PULLS:-1000}
EVERY=${SOAK_EVERY:-250}
WARMUP=${SOAK_WARMUP:-100}
SETTLE=${SOAK_SETTLE:-11}
PROFILE=${PROFILE:-release}
RSS_SLACK=${SOAK_RSS_SLACK_KIB:-4096}
THREAD_SLACK=${SOAK_THREAD_SLACK:-2}
PVECRI=${PVECRI_BIN:-$W/target/$PROFILE/pvecri}
BENCH=${BENCH_BIN:-$W/target/$PROFILE/pvecri-bench}
INIT=${PVECRI_INIT:-$W/target/x86_64-unknown-linux-gnu/release/pvecri-init}

die() { echo "soak: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root"
[ -x "$INIT" ] || die "no pvecri-init at $INIT (scripts/build-init.sh)"
curl -sf -m 2 http://127.0.0.1:5000/v2/ >/dev/null || die "no fixture registry on 127.0.0.1:5000"
if [ -z "${PVECRI_BIN:-}${BENCH_BIN:-}" ]; then
    case $PROFILE in
        release) flag=--release ;;
        debug) flag= ;;
        *) flag="--profile $PROFILE" ;;
    esac
    # shellcheck disable=SC2086
    cargo build --locked $flag --bin pvecri --bin pvecri-helper --bin pvecri-bench
fi

D=$(mktemp -d /tmp/pvecri-soak-XXXXXX)
chmod 711 "$D"
CONFIG=$D/config.toml
{
    printf 'socket = "%s/run/pvecri.sock"\nstate_dir = "%s/state"\nruntime_dir = "%s/run"\n' "$D" "$D" "$D"
    printf 'init_path = "%s"\n' "$INIT"
    # The critest mirrors, without the critest network.
    sed '/^\[network\]/,$d' tests/critest/pvecri.toml
    printf '[network]\nbridge = "pvt-soak"\npod_cidr = "10.78.91.0/24"\nmasquerade = false\negress = false\n'
} > "$CONFIG"
SOCK=$D/run/pvecri.sock

"$PVECRI" daemon --config "$CONFIG" > "$D/daemon.log" 2>&1 &
DAEMON=$!
stop_daemon() {
    if kill -0 "$DAEMON" 2>/dev/null; then
        kill -TERM "$DAEMON"
        wait "$DAEMON" || true
    fi
}
cleanup() {
    stop_daemon
    umount -l "$D/run/ns" 2>/dev/null || true
    rm -rf "$D"
}
trap cleanup EXIT
for _ in $(seq 200); do
    [ -S "$SOCK" ] && break
    kill -0 "$DAEMON" 2>/dev/null || { cat "$D/daemon.log"; die "the daemon exited"; }
    sleep 0.05
done
[ -S "$SOCK" ] || die "the daemon made no socket"

census_json() { "$PVECRI" --config "$CONFIG" census --json; }
# name count ... of every census kind, one line.
census_line() {
    jq -r '[.sections[] | "\(.kind)=\(.count)"] | join(" ")'
}
# Live things beyond what the running daemon itself keeps (lock, bridge, table).
census_live() {
    jq '[.sections[] | select(.live and (.kind | IN("daemon", "bridges", "nft_tables") | not)) | .count] | add'
}

printf '%-14s %10s %6s %8s %12s  %s\n' point rss_kib fds threads store_bytes census
SAMPLES=$D/samples
sample() {
    sleep "$SETTLE"
    local status rss threads fds store json
    status=$(cat "/proc/$DAEMON/status")
    rss=$(awk '/^VmRSS:/ {print $2}' <<<"$status")
    threads=$(awk '/^Threads:/ {print $2}' <<<"$status")
    fds=$(ls "/proc/$DAEMON/fd" | wc -l)
    store=$(stat -c %s "$D/state/pvecri.redb")
    json=$(census_json)
    printf '%-14s %10s %6s %8s %12s  %s\n' "$1" "$rss" "$fds" "$threads" "$store" "$(census_line <<<"$json")"
    echo "$1 $rss $fds $threads $store $(census_live <<<"$json")" >> "$SAMPLES"
}

bench() {
    "$BENCH" --endpoint "$SOCK" --label soak --log-dir "$D/logs" "$@" > "$D/bench.out" \
        || { cat "$D/bench.out" "$D/daemon.log" >&2; die "pvecri-bench failed"; }
}

sample start
bench --iterations "$WARMUP" --pulls "$WARMUP"
sample warm
WARM=$(tail -1 "$SAMPLES")
START_TIME=$(date +%s)
done_cycles=0
while [ "$done_cycles" -lt "$CYCLES" ]; do
    n=$(( CYCLES - done_cycles < EVERY ? CYCLES - done_cycles : EVERY ))
    bench --iterations "$n"
    done_cycles=$(( done_cycles + n ))
    sample "cycles=$done_cycles"
done
cat "$D/bench.out"
done_pulls=0
while [ "$done_pulls" -lt "$PULLS" ]; do
    n=$(( PULLS - done_pulls < EVERY ? PULLS - done_pulls : EVERY ))
    bench --iterations 0 --pulls "$n"
    done_pulls=$(( done_pulls + n ))
    sample "pulls=$done_pulls"
done
cat "$D/bench.out"
END=$(tail -1 "$SAMPLES")
echo "soak: $CYCLES cycles and $PULLS pulls in $(( $(date +%s) - START_TIME ))s after the warm-up"

read -r _ rss0 fds0 thr0 store0 _ <<<"$WARM"
read -r _ rss1 fds1 thr1 store1 live1 <<<"$END"
flat=yes
verdict() { # name warm end allowed-growth
    local grow=$(( $3 - $2 )) state=flat
    if [ "$grow" -gt "$4" ]; then state=GROWS; flat=no; fi
    printf '  %-12s %10s -> %10s (%+d, allowed +%d): %s\n' "$1" "$2" "$3" "$grow" "$4" "$state"
}
echo "soak: warm-up sample against the last:"
verdict "rss KiB" "$rss0" "$rss1" $(( rss0 / 10 > RSS_SLACK ? rss0 / 10 : RSS_SLACK ))
verdict "open fds" "$fds0" "$fds1" 0
verdict threads "$thr0" "$thr1" "$THREAD_SLACK"
# redb reuses freed pages; its file keeps its largest size.
verdict "store bytes" "$store0" "$store1" 1048576
verdict "census live" 0 "$live1" 0

stop_daemon
if "$PVECRI" --config "$CONFIG" census --stopped > "$D/census.stopped"; then
    echo "soak: census after stopping the daemon: nothing left"
else
    cat "$D/census.stopped"
    flat=no
    echo "soak: the stopped daemon left something behind"
fi
echo "soak: flat=$flat"
[ "$flat" = yes ]
