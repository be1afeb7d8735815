#!/usr/bin/env bash
# bench-ab.sh: the pod lifecycle of two pvecri builds, side by side. A
# measurement for docs/benchmarks.md, never a test.
#
#   scripts/bench-ab.sh A_PVECRI B_PVECRI
#
# Starts one daemon per binary, each on its own temporary state and run dir
# and its own bridge (pvt-ab-a 10.78.92.0/24, pvt-ab-b 10.78.93.0/24, never
# forwarded past the bridge; images through the fixture registry's mirrors),
# then runs pvecri-bench against them in rounds (A then B, B then A, ...)
# so that a change in the machine's load, or a cost of going first or
# second, hits both alike. Prints each
# round's figures and, per call, the median over the rounds of each side's
# p50 and the ratio B/A.
#
# Needs root, the fixture registry (scripts/registry.sh start,
# scripts/build-fixture-images.sh) and pvecri-init (scripts/build-init.sh).
# Environment: AB_ROUNDS [6]  AB_ITERATIONS [10] (per round and side)
#   BENCH_BIN [target/release/pvecri-bench]
#   PVECRI_INIT [target/x86_64-unknown-linux-gnu/release/pvecri-init]
set -euo pipefail

W=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$W"
die() { echo "bench-ab: $*" >&2; exit 1; }
[ $# -eq 2 ] || die "usage: $0 A_PVECRI B_PVECRI"
[ "$(id -u)" = 0 ] || die "needs root"
ROUNDS=${AB_ROUNDS:-6}
ITER=${AB_ITERATIONS:-10}
BENCH=${BENCH_BIN:-$W/target/release/pvecri-bench}
INIT=${PVECRI_INIT:-$W/target/x86_64-unknown-linux-gnu/release/pvecri-init}
[ -x "$1" ] && [ -x "$2" ] || die "both binaries must be executable"
[ -x "$BENCH" ] || die "no pvecri-bench at $BENCH (cargo build --release --bin pvecri-bench)"
[ -x "$INIT" ] || die "no pvecri-init at $INIT (scripts/build-init.sh)"
curl -sf -m 2 http://127.0.0.1:5000/v2/ >/dev/null || die "no fixture registry on 127.0.0.1:5000"

D=$(mktemp -d /tmp/pvecri-ab-XXXXXX)
chmod 711 "$D"
declare -A PID
start() { # side binary bridge cidr
    local dir=$D/$1
    mkdir -p "$dir"
    {
        printf 'socket = "%s/run/pvecri.sock"\nstate_dir = "%s/state"\nruntime_dir = "%s/run"\n' "$dir" "$dir" "$dir"
        printf 'init_path = "%s"\n' "$INIT"
        sed '/^\[network\]/,$d' tests/critest/pvecri.toml
        printf '[network]\nbridge = "%s"\npod_cidr = "%s"\nmasquerade = false\negress = false\n' "$3" "$4"
    } > "$dir/config.toml"
    "$2" daemon --config "$dir/config.toml" > "$dir/daemon.log" 2>&1 &
    PID[$1]=$!
    for _ in $(seq 200); do
        [ -S "$dir/run/pvecri.sock" ] && return 0
        kill -0 "${PID[$1]}" 2>/dev/null || { cat "$dir/daemon.log" >&2; die "daemon $1 exited"; }
        sleep 0.05
    done
    die "daemon $1 made no socket"
}
cleanup() {
    for side in "${!PID[@]}"; do
        kill -TERM "${PID[$side]}" 2>/dev/null && wait "${PID[$side]}" 2>/dev/null || true
        umount -l "$D/$side/run/ns" 2>/dev/null || true
    done
    rm -rf "$D"
}
trap cleanup EXIT

start a "$1" pvt-ab-a 10.78.92.0/24
start b "$2" pvt-ab-b 10.78.93.0/24

for round in $(seq "$ROUNDS"); do
    # A then B in odd rounds, B then A in even ones: whatever the first or
    # second run of a round pays, both sides pay it equally often.
    order="a b"
    [ $((round % 2)) -eq 0 ] && order="b a"
    for side in $order; do
        "$BENCH" --endpoint "$D/$side/run/pvecri.sock" --label "$side" --iterations "$ITER" \
            --log-dir "$D/$side/logs" > "$D/$side/round$round.out" \
            || { cat "$D/$side/round$round.out" "$D/$side/daemon.log" >&2; die "pvecri-bench failed on $side"; }
        sed "s/^/round $round $side: /" "$D/$side/round$round.out"
    done
done

# Every "  <call> <p50> <p90>" line of every round: the median of the p50s.
echo
printf '%-22s %10s %10s %8s\n' call "A p50" "B p50" "B/A"
awk '
    FNR == 1 { side = (FILENAME ~ /\/a\/round/) ? "a" : "b" }
    /^  / && NF >= 3 {
        p90 = $NF; p50 = $(NF - 1); $NF = ""; $(NF - 1) = ""
        sub(/^ +/, ""); sub(/ +$/, "")
        if (!($0 in seen)) { seen[$0] = 1; order[++n] = $0 }
        v[$0, side, ++c[$0, side]] = p50
    }
    function median(call, side,   k, m, i, j, t, a) {
        m = c[call, side]
        for (i = 1; i <= m; i++) a[i] = v[call, side, i]
        for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    }
    END {
        for (k = 1; k <= n; k++) {
            ma = median(order[k], "a"); mb = median(order[k], "b")
            printf "%-22s %10.2f %10.2f %8.2f\n", order[k], ma, mb, (ma > 0 ? mb / ma : 0)
        }
    }
' "$D"/a/round*.out "$D"/b/round*.out
