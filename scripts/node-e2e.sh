#!/usr/bin/env bash
# node-e2e.sh [--subset]: Kubernetes' node conformance suite (test/e2e_node
# at v1.37, the specs labelled NodeConformance and not Serial, Disruptive,
# Flaky or Slow) against a one-node cluster whose node runs on pvecri.
#
#   1. E2E_NODE=1 scripts/install-cri-tools.sh: e2e_node.test, the ginkgo
#      CLI and agnhost (quick when already installed);
#   2. scripts/build-e2e-images.sh: the suite's images in the local
#      registry (quick when already pushed);
#   3. scripts/cluster.sh up in a directory of its own under /tmp (torn
#      down on every exit);
#   4. the suite against that cluster, without starting services of its own
#      (--start-services=false), in NODE_E2E_PROCS parallel ginkgo processes;
#   5. its JSON report compared with tests/node-e2e/expected-failures.txt: a
#      failing spec that is not listed, or a listed spec that passes, fails
#      the run. With --subset only the specs named in
#      tests/node-e2e/ci-subset.txt run (a quick, fixed selection; one
#      regex-escaped full spec name a line).
#
# Reports go to $NODE_E2E_OUT (default target/node-e2e): report.json,
# junit.xml, the suite's log and the cluster's logs (copied before down).
#
# Knobs: PVECRI_BIN [$CARGO_TARGET_DIR/debug/pvecri], NODE_E2E_PROCS [4],
# NODE_E2E_TIMEOUT [90m], NODE_E2E_OUT,
# NODE_E2E_FOCUS (an extra ginkgo focus regex, for trying one spec).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${BIN_DIR:-/usr/local/bin}"
LIST="$REPO/tests/node-e2e/expected-failures.txt"
SUBSET_LIST="$REPO/tests/node-e2e/ci-subset.txt"
OUT="${NODE_E2E_OUT:-$REPO/target/node-e2e}"
PROCS="${NODE_E2E_PROCS:-4}"
TIMEOUT="${NODE_E2E_TIMEOUT:-90m}"
LABELS='NodeConformance && !Serial && !Disruptive && !Flaky && !Slow'
API="https://127.0.0.1:16443"

log() { printf '[node-e2e] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

subset=0
case "${1:-}" in
--subset) subset=1 ;;
"") ;;
*) echo "usage: $0 [--subset]" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || die "run as root"
if ! command -v jq >/dev/null; then
    # The report is read with jq.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q jq >&2 ||
        { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q jq >&2; } ||
        die "apt-get install jq failed"
fi
export PATH="$BIN_DIR:$PATH"
# The daemon cluster.sh runs (and builds when missing).
export PVECRI_BIN="${PVECRI_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/debug/pvecri}"

# names FILE: the spec names in a list file (no comments, no blank lines).
names() { sed -e 's/[[:space:]]*$//' -e '/^#/d' -e '/^$/d' "$1"; }

started=$(date +%s)
mkdir -p "$OUT"
rm -f "$OUT/report.json" "$OUT/junit.xml"
E2E_NODE=1 "$REPO/scripts/install-cri-tools.sh" >"$OUT/install.log" 2>&1 ||
    { tail -n 20 "$OUT/install.log" >&2; die "install-cri-tools.sh failed"; }
"$REPO/scripts/registry.sh" start >/dev/null
"$REPO/scripts/build-e2e-images.sh" >"$OUT/images.log" 2>&1 ||
    { tail -n 20 "$OUT/images.log" >&2; die "build-e2e-images.sh failed"; }
DIR="$(mktemp -d /tmp/pvecri-node-e2e.XXXXXX)"
rmdir "$DIR"
teardown() {
    local rc=$?
    if [ -d "$DIR/logs" ]; then
        rm -rf "$OUT/cluster-logs"
        cp -r "$DIR/logs" "$OUT/cluster-logs" 2>/dev/null || true
    fi
    "$REPO/scripts/cluster.sh" down "$DIR" || { log "cluster.sh down $DIR failed"; rc=1; }
    # What a pod could leave on the node: mounts, kubepods cgroups.
    if grep -F "$DIR" /proc/self/mountinfo >/dev/null; then
        log "mounts left under $DIR"
        rc=1
    fi
    for p in /var/lib/kubelet /var/log/pods; do
        if [ -e "$p" ]; then
            log "$p left behind"
            rc=1
        fi
    done
    if compgen -G '/sys/fs/cgroup/*/kubepods' >/dev/null || [ -d /sys/fs/cgroup/kubepods ]; then
        log "kubepods cgroups left"
        rc=1
    fi
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

log "cluster in $DIR"
# The summary specs read the kubelet's read-only port (10255, as the suite's
# own kubelet has it); it listens on the /32 node address only. The
# kubelet's root, pod logs and healthz port are where the suite expects
# them (device plugin, log path and volume specs look there); the
# PodOverhead spec's RuntimeClass names the handler "test-handler", which
# the suite's own set-up adds to containerd: pvecri serves it as an alias.
KUBELET_READ_ONLY_PORT=10255 KUBELET_STANDARD_PATHS=1 \
    PVECRI_TOP_CONFIG='runtime_handlers = ["test-handler"]' \
    "$REPO/scripts/cluster.sh" up "$DIR" >/dev/null

suite_args=(
    --start-services=false --stop-services=false
    --host="$API" --bearer-token="$(cat "$DIR/admin.token")"
    --kubectl-path="$BIN_DIR/kubectl" --node-name=pvecri-node
    --dns-domain=cluster.local
    --container-runtime-endpoint="unix://$DIR/pvecri/run/pvecri.sock"
    --image-service-endpoint="unix://$DIR/pvecri/run/pvecri.sock"
    --container-runtime-process-name=pvecri
    --container-runtime-pid-file="$DIR/pids/pvecri"
    --prepull-images=false
    --report-dir="$OUT/suite"
)
ginkgo_args=(
    --label-filter="$LABELS" --timeout="$TIMEOUT" --no-color
    --json-report="$OUT/report.json" --junit-report="$OUT/junit.xml"
    --procs="$PROCS"
)
focus=""
if [ "$subset" = 1 ]; then
    [ -s "$SUBSET_LIST" ] || die "no $SUBSET_LIST"
    # Its lines are regex-escaped full names already. Anchored at the end
    # only: the text ginkgo matches a focus against does not start with
    # the first container's text.
    focus="$(names "$SUBSET_LIST" | paste -sd'|' - | sed -e 's/^/(/' -e 's/$/)$/')"
fi
if [ -n "${NODE_E2E_FOCUS:-}" ]; then
    focus="${focus:+$focus|}$NODE_E2E_FOCUS"
fi
if [ -n "$focus" ]; then
    ginkgo_args+=(--focus="$focus")
fi

what="full focus"
[ "$subset" = 0 ] || what="subset"
[ -z "${NODE_E2E_FOCUS:-}" ] || what="$what, focus $NODE_E2E_FOCUS"
log "running e2e_node.test ($what, $PROCS processes); log: $OUT/e2e_node.log"
suite_start=$(date +%s)
# The suite's own exit status is not the verdict: the comparison below is.
# Its working directory receives the kubelet config drop-in dir it makes.
(cd "$OUT" && "$BIN_DIR/ginkgo" "${ginkgo_args[@]}" "$BIN_DIR/e2e_node.test" -- "${suite_args[@]}") \
    >"$OUT/e2e_node.log" 2>&1 || true
suite_secs=$(($(date +%s) - suite_start))
[ -s "$OUT/report.json" ] || { tail -n 30 "$OUT/e2e_node.log" >&2; die "the suite wrote no report"; }

# One "STATE<TAB>NAME" line per spec the filters selected. Specs filtered
# out are reported as skipped without a failure message; specs skipped at
# run time (a missing feature on the node) carry their reason.
jq -r '.[].SpecReports[]
    | select(.LeafNodeType == "It")
    | select(.State != "skipped" or (.Failure.Message // "") != "")
    | [(if .State == "passed" then "passed" elif .State == "skipped" then "skipped" else "failed" end),
       ((.ContainerHierarchyTexts + [.LeafNodeText]) | join(" "))] | @tsv' \
    "$OUT/report.json" | LC_ALL=C sort -t $'\t' -k2 >"$OUT/outcome.tsv"
[ -s "$OUT/outcome.tsv" ] || { tail -n 30 "$OUT/e2e_node.log" >&2; die "no spec ran"; }
# Set-up nodes that fail (BeforeSuite) fail the run on their own.
suite_failures="$(jq -r '.[].SpecReports[] | select(.LeafNodeType != "It" and .State != "passed" and .State != "skipped") | .LeafNodeType' "$OUT/report.json")"

awk -F'\t' '$1 == "failed" { print $2 }' "$OUT/outcome.tsv" >"$OUT/failed.txt"
awk -F'\t' '$1 == "passed" { print $2 }' "$OUT/outcome.tsv" >"$OUT/passed.txt"
names "$LIST" | LC_ALL=C sort -u >"$OUT/expected.txt"
LC_ALL=C sort -u "$OUT/failed.txt" | LC_ALL=C comm -23 - "$OUT/expected.txt" >"$OUT/unexpected.txt"
LC_ALL=C sort -u "$OUT/passed.txt" | LC_ALL=C comm -12 - "$OUT/expected.txt" >"$OUT/now-pass.txt"

passed=$(grep -c . "$OUT/passed.txt" || true)
failed=$(grep -c . "$OUT/failed.txt" || true)
skipped=$(awk -F'\t' '$1 == "skipped"' "$OUT/outcome.tsv" | grep -c . || true)
rc=0
if [ -s "$OUT/unexpected.txt" ]; then
    log "UNEXPECTED FAILURES (not in tests/node-e2e/expected-failures.txt):"
    sed 's/^/  /' "$OUT/unexpected.txt" >&2
    rc=1
fi
if [ -s "$OUT/now-pass.txt" ]; then
    log "NOW PASS (remove from tests/node-e2e/expected-failures.txt):"
    sed 's/^/  /' "$OUT/now-pass.txt" >&2
    rc=1
fi
# A full run must run every listed spec: a line that names nothing is stale.
if [ "$subset" = 0 ] && [ -z "${NODE_E2E_FOCUS:-}" ]; then
    cut -f2 "$OUT/outcome.tsv" | LC_ALL=C sort -u | LC_ALL=C comm -13 - "$OUT/expected.txt" >"$OUT/stale.txt"
    if [ -s "$OUT/stale.txt" ]; then
        log "NOT RUN (stale lines in tests/node-e2e/expected-failures.txt):"
        sed 's/^/  /' "$OUT/stale.txt" >&2
        rc=1
    fi
fi
# A subset line that names no spec would silently shrink the subset.
if [ "$subset" = 1 ] && [ -z "${NODE_E2E_FOCUS:-}" ]; then
    cut -f2 "$OUT/outcome.tsv" >"$OUT/ran.txt"
    names "$SUBSET_LIST" | while IFS= read -r rx; do
        grep -E -- "(${rx})\$" "$OUT/ran.txt" >/dev/null || printf '%s\n' "$rx"
    done >"$OUT/unmatched.txt"
    if [ -s "$OUT/unmatched.txt" ]; then
        log "SUBSET LINES THAT RAN NOTHING (tests/node-e2e/ci-subset.txt):"
        sed 's/^/  /' "$OUT/unmatched.txt" >&2
        rc=1
    fi
fi
if [ -n "$suite_failures" ]; then
    log "suite set-up failed: $(echo "$suite_failures" | paste -sd' ' -); see $OUT/e2e_node.log"
    rc=1
fi
log "node conformance: $passed passed, $failed failed ($(grep -c . "$OUT/unexpected.txt" || true) unexpected), $skipped skipped; suite ${suite_secs}s, total $(($(date +%s) - started))s"
log "report: $OUT/report.json, $OUT/junit.xml"
exit "$rc"
