#!/usr/bin/env bash
# bench-compare.sh: pvecri against containerd (Debian's 1.6 + runc + the CNI
# bridge plugin), side by side, in one run. A measurement for
# docs/benchmarks.md, never a test: it exits 0 when it completed, whatever
# the figures.
#
#   scripts/bench-compare.sh
#
# Runs one pvecri daemon (built-in networking, bridge pvt-cmp-p,
# 10.78.40.0/23) and one containerd (CNI bridge + host-local + portmap,
# bridge pvt-cmp-c, 10.78.42.0/23), each on its own socket, state and run
# dirs under a temporary /tmp/pvecri-cmp-XXXXXX, and drives both with the
# same client (pvecri-bench, crictl). Forwarding of the two subnets to
# anything but the two bridges is dropped (nftables table
# inet pvecri-cmp-guard) while it runs; traffic never leaves the machine.
# Images come from the fixture registry on 127.0.0.1:5000 under their
# 127.0.0.1:5000/... names on both runtimes.
#
# In order:
#  1. pulls: PULLS PullImage + RemoveImage cycles of PULL_IMAGE on each
#     (one unmeasured first), alternating, on stores holding nothing else
#     (every fixture image shares a layer with busybox or pause);
#  2. the pod lifecycle (pvecri-bench: RunPodSandbox ... RemovePodSandbox,
#     pod start = run + create + start), ITER iterations per runtime in
#     ROUNDS rounds, pvecri first in odd rounds, containerd first in even
#     ones, after 2 unmeasured warm-up lifecycles each;
#  3. exec: EXEC_RUNS runs each of `crictl exec <ctr> true` (the streaming
#     server, SPDY), `crictl exec -s <ctr> true` (ExecSync) and a bare
#     `crictl version` (the client's own cost), alternating, wall time;
#  4. density, on freshly restarted daemons (pvecri first): pvecri-bench
#     --density DENSITY --lanes LANES starts DENSITY pods of one busybox
#     `sleep 3600` each (with a cgroup parent per pod, as the kubelet's
#     cgroupfs driver gives: containerd's ListPodSandboxStats needs one),
#     then (after SETTLE s) the script samples the daemon's VmRSS and the
#     helpers' PSS (pvecri: its `pvecri-helper monitor` processes, two per
#     container; containerd: its containerd-shim-runc-v2 processes and
#     their pause children) from /proc; the bench times LIST_CALLS calls
#     of each list call (no filter, state filter, a label selector or pod
#     ID matching one pod) and STATS_CALLS of ListContainerStats and
#     ListPodSandboxStats, the script samples again, the bench removes
#     every pod (StopPodSandbox + RemovePodSandbox, LANES lanes); the
#     daemon's VmHWM (its peak over the density run) is read last.
# Then it stops both daemons, undoes what they and the CNI plugins left,
# checks the node against what it saw at the start, and prints a markdown
# table (ratio = containerd / pvecri: above 1, pvecri is faster or
# smaller). Raw outputs and the table stay in RESULTS_DIR.
#
# Needs root, the fixture registry (scripts/registry.sh start,
# scripts/build-fixture-images.sh), pvecri-init (scripts/build-init.sh) and
# crictl; installs containerd, runc and containernetworking-plugins with
# apt when missing (their services are neither started nor enabled).
# A default run takes 3-4 minutes on a 2-core VM.
#
# Environment (defaults in brackets):
#   ITER [30] lifecycle iterations per runtime   ROUNDS [3]
#   EXEC_RUNS [30]   PULLS [7]   PULL_IMAGE [.../agnhost:2.55, 33 MB, 3 layers]
#   DENSITY [200]    LANES [4]   LIST_CALLS [30]   STATS_CALLS [10]
#   SETTLE [5] seconds before each memory sample   CALL_TIMEOUT [60] s per CRI call
#   RESULTS_DIR [/tmp/pvecri-compare-<date>]
#   PVECRI_BIN, BENCH_BIN [${CARGO_TARGET_DIR:-target}/release/...; built
#     with cargo unless both are given]
#   PVECRI_INIT [target/x86_64-unknown-linux-gnu/release/pvecri-init]
set -euo pipefail
export LC_ALL=C

W=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$W"
die() { echo "bench-compare: $*" >&2; exit 1; }
say() { echo "bench-compare: $*" >&2; }
[ "$(id -u)" = 0 ] || die "needs root"

ITER=${ITER:-30}
ROUNDS=${ROUNDS:-3}
EXEC_RUNS=${EXEC_RUNS:-30}
PULLS=${PULLS:-7}
DENSITY=${DENSITY:-200}
LANES=${LANES:-4}
LIST_CALLS=${LIST_CALLS:-30}
STATS_CALLS=${STATS_CALLS:-10}
SETTLE=${SETTLE:-5}
CALL_TIMEOUT=${CALL_TIMEOUT:-60}
REG=127.0.0.1:5000
IMAGE=$REG/registry.k8s.io/e2e-test-images/busybox:1.29-2
PULL_IMAGE=${PULL_IMAGE:-$REG/registry.k8s.io/e2e-test-images/agnhost:2.55}
SANDBOX_IMAGE=$REG/registry.k8s.io/pause:3.9
TARGET=${CARGO_TARGET_DIR:-$W/target}
PVECRI=${PVECRI_BIN:-$TARGET/release/pvecri}
BENCH=${BENCH_BIN:-$TARGET/release/pvecri-bench}
INIT=${PVECRI_INIT:-$W/target/x86_64-unknown-linux-gnu/release/pvecri-init}
R=${RESULTS_DIR:-/tmp/pvecri-compare-$(date +%Y%m%d-%H%M%S)}
PV_BRIDGE=pvt-cmp-p PV_NET=10.78.40.0/23
CT_BRIDGE=pvt-cmp-c CT_NET=10.78.42.0/23
GUARD=pvecri-cmp-guard
CNI_NAME=pvecri-cmp

# The state of the machine at the start, for the header.
REV=$(git rev-parse --short HEAD 2>/dev/null || echo '?')
[ -n "$(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] && REV+=" (with uncommitted changes)"
START_DATE=$(date '+%Y-%m-%d %H:%M:%S %Z')
START_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
START_SECONDS=$SECONDS

[ -x "$INIT" ] || die "no pvecri-init at $INIT (scripts/build-init.sh)"
curl -sf -m 2 "http://$REG/v2/" >/dev/null || die "no fixture registry on $REG (scripts/registry.sh start)"
command -v crictl >/dev/null || die "no crictl (scripts/install-cri-tools.sh)"
command -v nft >/dev/null || die "no nft"

# containerd, runc and the CNI plugins from Debian, services kept off.
need=()
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    policy=/usr/sbin/policy-rc.d created=0
    if [ ! -e $policy ]; then
        printf '#!/bin/sh\nexit 101\n' > $policy
        chmod 0755 $policy
        created=1
    fi
    ok=1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2 ||
        { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2; } ||
        ok=0
    [ $created = 1 ] && rm -f $policy
    [ $ok = 1 ] || die "apt-get install ${need[*]} failed"
    # The package enables its service for the next boot: not ours to.
    if [[ " ${need[*]} " == *" containerd "* ]]; then
        systemctl disable containerd.service >/dev/null 2>&1 ||
            rm -f /etc/systemd/system/multi-user.target.wants/containerd.service
    fi
fi

if [ -z "${PVECRI_BIN:-}" ] || [ -z "${BENCH_BIN:-}" ]; then
    say "building pvecri and pvecri-bench (release)"
    cargo build --locked --release --bin pvecri --bin pvecri-helper --bin pvecri-bench >&2
fi
[ -x "$PVECRI" ] || die "no pvecri at $PVECRI"
[ -x "$BENCH" ] || die "no pvecri-bench at $BENCH"

mkdir -p "$R/pvecri" "$R/containerd"
D=$(mktemp -d /tmp/pvecri-cmp-XXXXXX)
chmod 711 "$D"
PV=$D/pv
CT=$D/ctrd
mkdir -p "$PV" "$CT/cni" "$CT/ipam"

# --- what the node looks like before, to check and undo against ---------
node_links() { ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | sort; }
node_netns() { ip netns list 2>/dev/null | awk '{print $1}' | sort; }
node_tables() { nft list tables 2>/dev/null | sort; }
node_cgroups() { find /sys/fs/cgroup -mindepth 1 -maxdepth 2 -type d 2>/dev/null | sort; }
node_iptables() {
    if command -v iptables-save >/dev/null; then
        iptables-save 2>/dev/null | grep -v '^#' | sed 's/\[[0-9:]*\]//' | sort
    fi
}
node_paths() { for p in /run/containerd /run/netns /var/lib/cni /run/runc /opt/containerd; do [ -e $p ] && echo $p; done; true; }
snapshot() { # dir
    mkdir -p "$1"
    node_links > "$1/links"
    node_netns > "$1/netns"
    node_tables > "$1/tables"
    node_cgroups > "$1/cgroups"
    node_iptables > "$1/iptables"
    node_paths > "$1/paths"
    cat /proc/sys/net/ipv4/ip_forward > "$1/ip_forward"
}
snapshot "$D/before"
FWD=$(cat "$D/before/ip_forward")

nft -f - <<NFT
table inet $GUARD {
  chain guard {
    type filter hook forward priority filter - 10; policy accept;
    ip saddr { $PV_NET, $CT_NET } oifname != { "$PV_BRIDGE", "$CT_BRIDGE" } drop
    ip daddr { $PV_NET, $CT_NET } oifname != { "$PV_BRIDGE", "$CT_BRIDGE" } drop
  }
}
NFT

# --- the two daemons ---------------------------------------------------
{
    printf 'socket = "%s/run/pvecri.sock"\nstate_dir = "%s/state"\nruntime_dir = "%s/run"\n' "$PV" "$PV" "$PV"
    printf 'init_path = "%s"\n' "$INIT"
    # The critest mirrors, without the critest network.
    sed '/^\[network\]/,$d' tests/critest/pvecri.toml
    printf '[network]\nbridge = "%s"\npod_cidr = "%s"\nmasquerade = false\negress = false\n' "$PV_BRIDGE" "$PV_NET"
} > "$PV/config.toml"
cat > "$CT/cni/10-$CNI_NAME.conflist" <<JSON
{"cniVersion":"1.0.0","name":"$CNI_NAME","plugins":[
 {"type":"bridge","bridge":"$CT_BRIDGE","isGateway":true,"ipMasq":false,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"$CT_NET"}]],"dataDir":"$CT/ipam"}},
 {"type":"portmap","capabilities":{"portMappings":true},"snat":true}]}
JSON
cat > "$CT/config.toml" <<TOML
version = 2
root = "$CT/root"
state = "$CT/state"
[grpc]
  address = "$CT/containerd.sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CT/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$SANDBOX_IMAGE"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      Root = "$CT/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CT/cni"
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$REG"]
    endpoint = ["http://$REG"]
TOML
PV_SOCK=$PV/run/pvecri.sock
CT_SOCK=$CT/containerd.sock
declare -A SOCK=([pvecri]=$PV_SOCK [containerd]=$CT_SOCK)
declare -A PID=()
BENCH_PID=

for rt in pvecri containerd; do
    printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: %s\n' \
        "${SOCK[$rt]}" "${SOCK[$rt]}" "$CALL_TIMEOUT" > "$D/crictl-$rt.yaml"
done
cri() { # runtime crictl-args...
    local rt=$1
    shift
    crictl --config "$D/crictl-$rt.yaml" "$@"
}

start_daemon() { # runtime
    local log
    if [ "$1" = pvecri ]; then
        log=$PV/daemon.log
        # Both services raise LimitNOFILE (pvecri.service 1048576,
        # containerd.service infinity): as far as this shell may.
        ( ulimit -n "$(ulimit -Hn)"; exec "$PVECRI" daemon --config "$PV/config.toml" ) >> "$log" 2>&1 &
    else
        log=$CT/containerd.log
        ( ulimit -n "$(ulimit -Hn)"; exec containerd --config "$CT/config.toml" ) >> "$log" 2>&1 &
    fi
    PID[$1]=$!
    for _ in $(seq 300); do
        cri "$1" version >/dev/null 2>&1 && return 0
        kill -0 "${PID[$1]}" 2>/dev/null || { tail -20 "$log" >&2; die "$1 exited"; }
        sleep 0.1
    done
    die "$1 does not answer on ${SOCK[$1]}"
}

stop_daemon() { # runtime
    local pid=${PID[$1]:-}
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        # Every pod goes first: a runtime's helpers outlive its daemon.
        cri "$1" rmp -fa >/dev/null 2>&1 || say "$1: rmp -fa failed"
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && { say "$1 ignored TERM: killing"; kill -KILL "$pid" 2>/dev/null || true; }
    fi
    wait "$pid" 2>/dev/null || true
    PID[$1]=
    [ "$1" = pvecri ] && { umount -l "$PV/run/ns" 2>/dev/null || true; }
    return 0
}

# Processes still carrying our temporary dir in their command line: the
# helpers of either runtime (monitors: --lxcpath; shims: -address).
our_processes() { ps -eww -o pid=,args= | awk -v d="$D/" 'index($0, d) && $2 != "awk" {print $1}'; }

CLEANED=0
cleanup() {
    [ $CLEANED = 1 ] && return 0
    CLEANED=1
    set +e
    if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
        kill -TERM "$BENCH_PID"; wait "$BENCH_PID" 2>/dev/null
    fi
    stop_daemon pvecri
    stop_daemon containerd
    if [ -x "$PVECRI" ] && [ -f "$PV/config.toml" ]; then
        "$PVECRI" --config "$PV/config.toml" census --stopped > "$R/pvecri/census-stopped.txt" 2>&1 \
            || say "pvecri census --stopped found something: $R/pvecri/census-stopped.txt"
    fi
    # Helpers left by a daemon that could not remove its pods: ours by
    # their command line, ended by process ID.
    local left
    left=$(our_processes)
    if [ -n "$left" ]; then
        say "ending leftover helper processes:" $left
        # shellcheck disable=SC2086
        kill -TERM $left 2>/dev/null; sleep 1
        # shellcheck disable=SC2086
        kill -KILL $(our_processes) 2>/dev/null
    fi
    # Mounts under our dir, deepest first.
    awk -v d="$D/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || say "cannot unmount $m"
    done
    ip link del "$CT_BRIDGE" 2>/dev/null
    ip link del "$PV_BRIDGE" 2>/dev/null
    for t in "ip pvecri-$PV_BRIDGE" "ip6 pvecri-$PV_BRIDGE" "inet $GUARD"; do
        # shellcheck disable=SC2086
        nft list table $t >/dev/null 2>&1 && nft delete table $t
    done
    echo "$FWD" > /proc/sys/net/ipv4/ip_forward
    # CNI result cache entries of our network; whatever containerd made
    # in place of a directory that did not exist before.
    rm -f /var/lib/cni/results/"$CNI_NAME"-* 2>/dev/null
    for p in /run/containerd /var/lib/cni /run/runc /opt/containerd /run/netns; do
        [ -e $p ] || continue
        grep -qx "$p" "$D/before/paths" && continue
        if [ $p = /run/netns ]; then
            rmdir $p 2>/dev/null || say "left $p alone (not empty)"
        else
            rm -rf $p
        fi
    done
    # The runtimes' cgroup parents (pvecri, pvecri.monitor, k8s.io) where
    # they did not exist before and are empty now, and the pod cgroup
    # parents of a density run that did not finish.
    comm -13 "$D/before/cgroups" <(node_cgroups) | sort -r | while read -r cg; do
        case ${cg##*/} in
            pvecri | pvecri.monitor | k8s.io) rmdir "$cg" 2>/dev/null ;;
            pvecri-bench-*) find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null ;;
        esac
    done
    # What the node has now and did not have at the start (what went
    # meanwhile was someone else's).
    snapshot "$D/after"
    local diffs="" f added
    for f in links netns tables cgroups iptables paths ip_forward; do
        added=$(comm -13 "$D/before/$f" "$D/after/$f" | tr '\n' ' ')
        [ -n "$added" ] && diffs+="$f: $added"$'\n'
    done
    [ -n "$(our_processes)" ] && diffs+="processes: $(our_processes | tr '\n' ' ')"$'\n'
    grep -q "$D/" /proc/self/mounts && diffs+="mounts: $(grep "$D/" /proc/self/mounts | awk '{print $2}' | tr '\n' ' ')"$'\n'
    if [ -n "$diffs" ]; then
        printf '%s' "$diffs" > "$R/node-check.txt"
        say "the node differs from the start (some may be other users'): $R/node-check.txt"
        cat "$R/node-check.txt" >&2
        NODE_CHECK="new since the start (another user's?): $(tr '\n' ';' < "$R/node-check.txt")"
    else
        echo clean > "$R/node-check.txt"
        NODE_CHECK=clean
    fi
    cp "$PV/daemon.log" "$R/pvecri/daemon.log" 2>/dev/null
    cp "$CT/containerd.log" "$R/containerd/containerd.log" 2>/dev/null
    if grep -q "$D/" /proc/self/mounts; then
        say "mounts remain under $D: not removing it"
    else
        rm -rf "$D"
    fi
    set -e
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- helpers for the measurements --------------------------------------
note() { echo "$*" >> "$R/notes.txt"; say "$*"; }

bench() { # runtime outfile bench-args...
    local rt=$1 out=$2
    shift 2
    "$BENCH" --endpoint "${SOCK[$rt]}" --label "$rt" --image "$IMAGE" --log-dir "$D/logs-$rt" \
        --call-timeout "$CALL_TIMEOUT" "$@" >> "$out" 2>&1 \
        || { note "$rt: pvecri-bench $* failed (see $out)"; return 1; }
}

# Wall time of one command in ms (bash's clock: no extra process).
timed() { # key rawfile command...
    local key=$1 file=$2 t0 t1
    shift 2
    t0=$EPOCHREALTIME
    if "$@" >/dev/null 2>&1; then
        t1=$EPOCHREALTIME
        awk -v k="$key" -v a="$t0" -v b="$t1" 'BEGIN {printf "%s\t%.3f\n", k, (b - a) * 1000}' >> "$file"
    else
        echo "$key failed	1" >> "$file"
    fi
}

order() { # round: the runtimes in this round's order
    if [ $(($1 % 2)) -eq 1 ]; then echo "pvecri containerd"; else echo "containerd pvecri"; fi
}

# --- 0. start --------------------------------------------------------
say "results in $R; temporary state in $D"
{
    echo "date: $START_DATE"
    echo "load at start: $START_LOAD"
    echo "rev: $REV"
    echo "kernel: $(uname -r), nproc $(nproc)"
    echo "pvecri: $("$PVECRI" --version 2>/dev/null | head -1)"
    echo "containerd: $(containerd --version 2>/dev/null)"
    echo "runc: $(runc --version 2>/dev/null | head -1)"
    echo "params: ITER=$ITER ROUNDS=$ROUNDS EXEC_RUNS=$EXEC_RUNS PULLS=$PULLS DENSITY=$DENSITY LANES=$LANES LIST_CALLS=$LIST_CALLS STATS_CALLS=$STATS_CALLS SETTLE=$SETTLE"
    echo "images: run $IMAGE, pulled $PULL_IMAGE, containerd sandbox $SANDBOX_IMAGE"
} > "$R/header.txt"
start_daemon pvecri
start_daemon containerd

# --- 1. pulls, on stores that hold nothing else ------------------------
say "1/4 pulls: $PULLS of $PULL_IMAGE each"
for rt in pvecri containerd; do
    bench $rt "$R/$rt/pulls.out" --iterations 0 --pulls 1 --pull-image "$PULL_IMAGE" || true
done
for i in $(seq "$PULLS"); do
    for rt in $(order "$i"); do
        bench $rt "$R/$rt/pulls.out" --iterations 0 --pulls 1 --pull-image "$PULL_IMAGE" --raw "$R/$rt/raw" || true
    done
done

# --- 2. lifecycles -----------------------------------------------------
say "2/4 pod lifecycles: $ITER per runtime in $ROUNDS rounds"
cri containerd pull "$SANDBOX_IMAGE" >/dev/null 2>&1 || note "containerd: cannot pull $SANDBOX_IMAGE"
for rt in pvecri containerd; do
    bench $rt "$R/$rt/warmup.out" --iterations 2 || true
done
per=$(( (ITER + ROUNDS - 1) / ROUNDS ))
for round in $(seq "$ROUNDS"); do
    n=$(( ITER - (round - 1) * per < per ? ITER - (round - 1) * per : per ))
    [ "$n" -gt 0 ] || break
    for rt in $(order "$round"); do
        echo "round $round" >> "$R/$rt/lifecycle.out"
        bench $rt "$R/$rt/lifecycle.out" --iterations "$n" --raw "$R/$rt/raw" || true
    done
done

# --- 3. exec over each runtime's streaming server ----------------------
say "3/4 exec: $EXEC_RUNS runs of crictl exec, exec -s and version each"
declare -A CTR=()
for rt in pvecri containerd; do
    cat > "$D/exec-pod-$rt.json" <<JSON
{"metadata":{"name":"cmp-exec","namespace":"bench","uid":"cmp-exec-$rt-$$","attempt":0},
 "hostname":"cmp-exec","log_directory":"$D/logs-$rt/cmp-exec",
 "linux":{"security_context":{"namespace_options":{"network":0,"pid":1,"ipc":0}}}}
JSON
    cat > "$D/exec-ctr.json" <<JSON
{"metadata":{"name":"c","attempt":0},"image":{"image":"$IMAGE"},
 "command":["sleep","3600"],"log_path":"c.log",
 "linux":{"security_context":{"namespace_options":{"network":0,"pid":1,"ipc":0}}}}
JSON
    pod=$(cri $rt runp "$D/exec-pod-$rt.json" 2>> "$R/$rt/exec.err") &&
        ctr=$(cri $rt create --no-pull "$pod" "$D/exec-ctr.json" "$D/exec-pod-$rt.json" 2>> "$R/$rt/exec.err") &&
        cri $rt start "$ctr" >/dev/null 2>> "$R/$rt/exec.err" &&
        CTR[$rt]=$ctr || note "$rt: cannot start the exec container (see $R/$rt/exec.err)"
done
if [ -n "${CTR[pvecri]:-}" ] && [ -n "${CTR[containerd]:-}" ]; then
    for rt in pvecri containerd; do # warm-up
        for _ in 1 2; do cri $rt exec "${CTR[$rt]}" true >/dev/null 2>&1 || true; done
    done
    for i in $(seq "$EXEC_RUNS"); do
        for rt in $(order "$i"); do
            timed "crictl version" "$R/$rt/raw" cri $rt version
            timed "crictl exec" "$R/$rt/raw" cri $rt exec "${CTR[$rt]}" true
            timed "crictl exec -s" "$R/$rt/raw" cri $rt exec -s "${CTR[$rt]}" true
        done
    done
fi
for rt in pvecri containerd; do
    cri $rt rmp -fa >/dev/null 2>&1 || note "$rt: cannot remove the exec pod"
done

# --- 4. density, on fresh daemons ----------------------------------------
say "4/4 density: $DENSITY pods in $LANES lanes, pvecri then containerd"
stop_daemon pvecri
stop_daemon containerd
start_daemon pvecri
start_daemon containerd

# Memory of a runtime now: its daemon's VmRSS and VmHWM, and its helpers'
# PSS (pvecri: monitors; containerd: shims and their pause children).
sample() { # runtime phase
    local rt=$1 phase=$2 pid=${PID[$1]} out=$R/$1/mem.$2 helpers
    ps -eww -o pid=,ppid=,comm=,args= > "$R/$rt/ps.$phase"
    if [ "$rt" = pvecri ]; then
        helpers=$(awk -v d="$PV/" 'index($0, " monitor ") && index($0, d) && $3 != "awk" {print "monitor", $1}' "$R/$rt/ps.$phase")
    else
        helpers=$(awk -v a="$CT_SOCK" '
            { pid[NR] = $1; pp[NR] = $2; cm[NR] = $3 }
            index($0, "containerd-shim-runc-v2") && index($0, a) { shim[$1] = 1 }
            END {
                for (i = 1; i <= NR; i++) {
                    if (shim[pid[i]]) print "shim", pid[i]
                    else if (cm[i] == "pause" && shim[pp[i]]) print "pause", pid[i]
                }
            }' "$R/$rt/ps.$phase")
    fi
    {
        awk '/^VmRSS:/ {print "rss_kib", $2} /^VmHWM:/ {print "hwm_kib", $2}' "/proc/$pid/status" 2>/dev/null || true
        awk 'NF {n[$1]++} END {for (k in n) print "count_" k, n[k]}' <<<"$helpers"
        echo "helpers $(grep -c . <<<"$helpers")"
        # shellcheck disable=SC2046
        echo "helper_pss_kib $(awk '/^Pss:/ {s += $2} END {print s + 0}' \
            $(awk '{print "/proc/" $2 "/smaps_rollup"}' <<<"$helpers") /dev/null 2>/dev/null)"
    } > "$out"
}

wait_file() { # file pid: 0 when the file is there, 1 when the pid ended first
    while [ ! -e "$1" ]; do
        kill -0 "$2" 2>/dev/null || [ -e "$1" ] || return 1
        sleep 0.2
    done
}

density() { # runtime
    local rt=$1 sync=$D/sync-$1 out=$R/$1/density.out
    mkdir -p "$sync"
    sleep "$SETTLE"
    sample "$rt" idle
    "$BENCH" --endpoint "${SOCK[$rt]}" --label "$rt" --image "$IMAGE" --log-dir "$D/logs-$rt" \
        --call-timeout "$CALL_TIMEOUT" --iterations 0 --density "$DENSITY" --lanes "$LANES" \
        --list-calls "$LIST_CALLS" --stats-calls "$STATS_CALLS" --sync-dir "$sync" --cgroup-parents \
        --raw "$R/$rt/raw" > "$out" 2>&1 &
    BENCH_PID=$!
    if wait_file "$sync/running" $BENCH_PID; then
        sleep "$SETTLE"
        sample "$rt" running
        touch "$sync/continue"
        if wait_file "$sync/listed" $BENCH_PID; then
            sample "$rt" listed
            touch "$sync/teardown"
        fi
    fi
    wait $BENCH_PID || note "$rt: the density run failed (see $out)"
    BENCH_PID=
    sample "$rt" end
}
density pvecri
density containerd

stop_daemon pvecri
stop_daemon containerd
cleanup
trap - EXIT

# --- the table -----------------------------------------------------------
# p50 and p90 (nearest rank, as pvecri-bench) of a measure's samples.
pct() { # runtime measure -> "p50 p90 n" or nothing
    awk -F'\t' -v k="$2" '$1 == k {v[++n] = $2}
        END {
            if (!n) exit
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            printf "%s %s %d\n", v[int((n - 1) * 0.5 + 0.5) + 1], v[int((n - 1) * 0.9 + 0.5) + 1], n
        }' "$R/$1/raw" 2>/dev/null
}
sum() { # runtime measure -> total of its samples (counts)
    awk -F'\t' -v k="$2" '$1 == k {s += $2; n++} END {if (n) print s + 0}' "$R/$1/raw" 2>/dev/null
}
mem() { # runtime phase key -> value
    awk -v k="$3" '$1 == k {print $2}' "$R/$1/mem.$2" 2>/dev/null
}
ratio() { awk -v p="$1" -v c="$2" 'BEGIN {if (p != "" && c != "" && p > 0) printf "%.2f", c / p; else print "-"}'; }
fmt() { awk -v v="$1" -v d="${2:-2}" 'BEGIN {if (v == "") print "-"; else printf "%.*f", d, v}'; }
row() { printf '| %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4"; }
# A time: "p50 / p90" per runtime, ratio of the p50s.
time_row() { # label measure
    local p c
    p=$(pct pvecri "$2")
    c=$(pct containerd "$2")
    local p50=${p%% *} c50=${c%% *} pr cr
    pr=$( [ -n "$p" ] && awk '{printf "%.2f / %.2f", $1, $2}' <<<"$p" || echo -)
    cr=$( [ -n "$c" ] && awk '{printf "%.2f / %.2f", $1, $2}' <<<"$c" || echo -)
    row "$1" "$pr" "$cr" "$(ratio "$p50" "$c50")"
}
# A single figure per runtime (memory, walls): value and ratio.
value_row() { # label pvecri-value containerd-value [decimals]
    row "$1" "$(fmt "$2" "${4:-2}")" "$(fmt "$3" "${4:-2}")" "$(ratio "$2" "$3")"
}
count_row() { row "$1" "${2:--}" "${3:--}" "-"; }
kib_to_mib() { awk -v v="$1" 'BEGIN {if (v != "") printf "%.2f", v / 1024}'; }
per_pod_kib() { awk -v v="$1" -v n="$DENSITY" 'BEGIN {if (v != "" && n > 0) printf "%.0f", v / n}'; }
growth_kib() { awk -v a="$1" -v b="$2" -v n="$DENSITY" 'BEGIN {if (a != "" && b != "" && n > 0) printf "%.0f", (b - a) / n}'; }

{
    echo "## pvecri vs containerd, $START_DATE"
    echo
    echo "rev \`$REV\`, kernel $(uname -r), nproc $(nproc), load average at start $START_LOAD;"
    echo "$(sed -n 's/^pvecri: //p' "$R/header.txt") against containerd $(containerd --version 2>/dev/null | awk '{print $3}') + $(runc --version 2>/dev/null | head -1);"
    echo "ITER=$ITER ROUNDS=$ROUNDS EXEC_RUNS=$EXEC_RUNS PULLS=$PULLS DENSITY=$DENSITY LANES=$LANES; node after the run: $NODE_CHECK."
    echo "Times in ms, \"p50 / p90\"; ratio = containerd / pvecri of the p50 (above 1: pvecri is faster or smaller)."
    echo
    row measure pvecri containerd ratio
    row --- --- --- ---
    for s in RunPodSandbox CreateContainer StartContainer ExecSync StopContainer RemoveContainer StopPodSandbox RemovePodSandbox; do
        time_row "$s" "$s"
    done
    time_row "**pod start (run + create + start)**" "pod start"
    time_row "crictl exec \`true\` (streaming, SPDY), wall" "crictl exec"
    time_row "crictl exec -s \`true\` (ExecSync), wall" "crictl exec -s"
    time_row "crictl version (client baseline), wall" "crictl version"
    time_row "PullImage ${PULL_IMAGE#"$REG"/}" PullImage
    time_row "RemoveImage" RemoveImage
    value_row "density: start wall per pod ($DENSITY pods, $LANES lanes)" "$(sum pvecri "density start wall per pod")" "$(sum containerd "density start wall per pod")"
    time_row "density: pod start under load (per pod)" "density pod start"
    count_row "density: failed pod starts" "$(sum pvecri "density start failed")" "$(sum containerd "density start failed")"
    for s in "ListPodSandbox" "ListPodSandbox state=ready" "ListPodSandbox label" "ListContainers" \
        "ListContainers pod" "ListContainers state=running" "ListContainers label" \
        "ListContainerStats" "ListPodSandboxStats"; do
        time_row "$s ($DENSITY pods)" "$s"
    done
    value_row "density: teardown wall per pod" "$(sum pvecri "density teardown wall per pod")" "$(sum containerd "density teardown wall per pod")"
    count_row "density: failed teardowns" "$(sum pvecri "density teardown failed")" "$(sum containerd "density teardown failed")"
    value_row "daemon RSS idle, fresh daemon (MiB)" "$(kib_to_mib "$(mem pvecri idle rss_kib)")" "$(kib_to_mib "$(mem containerd idle rss_kib)")"
    value_row "daemon RSS, $DENSITY pods running (MiB)" "$(kib_to_mib "$(mem pvecri running rss_kib)")" "$(kib_to_mib "$(mem containerd running rss_kib)")"
    value_row "daemon RSS after the list calls (MiB)" "$(kib_to_mib "$(mem pvecri listed rss_kib)")" "$(kib_to_mib "$(mem containerd listed rss_kib)")"
    value_row "daemon RSS growth per pod (KiB)" "$(growth_kib "$(mem pvecri idle rss_kib)" "$(mem pvecri running rss_kib)")" "$(growth_kib "$(mem containerd idle rss_kib)" "$(mem containerd running rss_kib)")" 0
    value_row "daemon peak RSS, VmHWM (MiB)" "$(kib_to_mib "$(mem pvecri end hwm_kib)")" "$(kib_to_mib "$(mem containerd end hwm_kib)")"
    value_row "helper PSS per pod (KiB)" "$(per_pod_kib "$(mem pvecri running helper_pss_kib)")" "$(per_pod_kib "$(mem containerd running helper_pss_kib)")" 0
    count_row "helper processes, $DENSITY pods running" \
        "$(mem pvecri running count_monitor) monitors" \
        "$(mem containerd running count_shim) shims + $(mem containerd running count_pause) pause"
} > "$R/summary.md"
echo
cat "$R/summary.md"
[ -s "$R/notes.txt" ] && { echo; echo "notes:"; cat "$R/notes.txt"; }
echo
echo "bench-compare: results in $R ($(( SECONDS - START_SECONDS )) s)"
