#!/usr/bin/env bash
# cluster.sh up|down|status [DIR]: a one-node Kubernetes cluster on this
# machine whose only node runs its pods on pvecri.
#
#   etcd -> kube-apiserver -> kube-controller-manager, kube-scheduler
#                          -> kubelet (node "pvecri-node") -> pvecri daemon
#
# Everything lives under DIR (default /tmp/pvecri-cluster): the PKI made
# with openssl, kubeconfigs, etcd's data, the daemon's state, every log and
# pid file. `up` prints the admin kubeconfig's path; use it with kubectl:
#
#   KUBECONFIG=/tmp/pvecri-cluster/admin.kubeconfig kubectl get nodes
#
# Clients that take only a server address and a bearer token (Kubernetes'
# node e2e suite, scripts/node-e2e.sh) use DIR/admin.token, a static token
# of a system:masters user.
#
# `down` stops everything, removes every pod, and puts back what the kubelet
# changes on the node (kernel tunables, iptables chains, mounts under DIR,
# its kubepods cgroups) and the node address; then DIR is removed.
#
# The binaries are those scripts/install-cri-tools.sh builds into
# /usr/local/bin (Kubernetes v1.37). The daemon is $PVECRI_BIN (default
# target/debug/pvecri, built when missing) with pvecri-init from
# scripts/build-init.sh. Nothing listens beyond this machine: the API
# server and kubelet bind 127.0.0.1 and a /32 node address on lo
# ($NODE_IP, default 10.255.77.1); pods use the test bridge and subnet of
# tests/critest/pvecri.toml, images come from the local registry
# (scripts/registry.sh) through its mirrors.
#
# Knobs: PVECRI_BIN, NODE_IP, PVECRI_EXTRA_CONFIG (TOML lines appended to
# the daemon's config), KUBELET_EXTRA_CONFIG (YAML lines appended to the
# kubelet's config), KUBELET_READ_ONLY_PORT (default 0: off; the node e2e
# suite reads /stats/summary there, on the node address only),
# KUBELET_STANDARD_PATHS=1 (the kubelet keeps its root in /var/lib/kubelet,
# pod logs in /var/log/pods and healthz on 127.0.0.1:10248, where the node
# e2e suite looks for them; each of the two directories must not exist
# before, and `down` removes them), PVECRI_TOP_CONFIG (TOML lines put
# before the daemon config's tables, for top-level keys).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${BIN_DIR:-/usr/local/bin}"
NODE_NAME="pvecri-node"
NODE_IP="${NODE_IP:-10.255.77.1}"
ETCD_PORT=23790
ETCD_PEER_PORT=23800
API_PORT=16443
KUBELET_PORT=11250
KUBELET_HEALTHZ_PORT=11248
STANDARD_PATHS=(/var/lib/kubelet /var/log/pods)
CM_PORT=20257
SCHED_PORT=20259
SERVICE_CIDR="10.254.0.0/24"
TUNABLES=(vm/overcommit_memory kernel/panic kernel/panic_on_oops)

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- PKI

# cert NAME CN [O] [SANS]: a key and a certificate signed by DIR's CA.
cert() {
    local name="$1" cn="$2" org="${3:-}" sans="${4:-}" subj="/CN=$2"
    [ -n "$org" ] && subj="/O=$org/CN=$cn"
    openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
    openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        if [ -n "$sans" ]; then
            echo "extendedKeyUsage=serverAuth,clientAuth"
            echo "subjectAltName=$sans"
        else
            echo "extendedKeyUsage=clientAuth"
        fi
    } >"$PKI/$name.ext"
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
        -CAcreateserial -days 2 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
    rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

make_pki() {
    mkdir -p "$PKI"
    chmod 0700 "$PKI"
    openssl genrsa -out "$PKI/ca.key" 2048 2>/dev/null
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=pvecri-cluster-ca" -days 2 \
        -out "$PKI/ca.crt" 2>/dev/null
    local svc_ip
    svc_ip="${SERVICE_CIDR%.*}.1"
    cert apiserver kube-apiserver "" \
        "IP:127.0.0.1,IP:$NODE_IP,IP:$svc_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
    cert admin admin system:masters
    cert controller-manager system:kube-controller-manager
    cert scheduler system:kube-scheduler
    cert kubelet-client "system:node:$NODE_NAME" system:nodes
    cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
    cert kubelet "$NODE_NAME" "" "IP:127.0.0.1,IP:$NODE_IP,DNS:$NODE_NAME"
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
    # The API server's static token file: one admin token, for clients
    # that cannot present a certificate.
    openssl rand -hex 32 >"$DIR/admin.token"
    chmod 0600 "$DIR/admin.token"
    printf '%s,token-admin,token-admin,"system:masters"\n' "$(cat "$DIR/admin.token")" >"$PKI/tokens.csv"
}

# kubeconfig NAME CERT: DIR/NAME.kubeconfig for the client certificate CERT.
kubeconfig() {
    local file="$DIR/$1.kubeconfig"
    KUBECONFIG="$file" kubectl config set-cluster pvecri --server="https://127.0.0.1:$API_PORT" \
        --certificate-authority="$PKI/ca.crt" --embed-certs >/dev/null
    KUBECONFIG="$file" kubectl config set-credentials "$1" \
        --client-certificate="$PKI/$2.crt" --client-key="$PKI/$2.key" --embed-certs >/dev/null
    KUBECONFIG="$file" kubectl config set-context default --cluster=pvecri --user="$1" >/dev/null
    KUBECONFIG="$file" kubectl config use-context default >/dev/null
    chmod 0600 "$file"
}

# ---------------------------------------------------------------- processes

# spawn NAME CMD...: runs CMD in its own session, logging to DIR/logs/NAME.log.
spawn() {
    local name="$1"
    shift
    setsid "$@" >"$DIR/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$DIR/pids/$name"
}

alive() {
    local pid
    pid="$(cat "$DIR/pids/$1" 2>/dev/null)" || return 1
    kill -0 "$pid" 2>/dev/null
}

# stop NAME: SIGTERM, then SIGKILL after 20 s.
stop() {
    local pid i
    pid="$(cat "$DIR/pids/$1" 2>/dev/null)" || return 0
    if kill -TERM "$pid" 2>/dev/null; then
        for i in $(seq 200); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/pids/$1"
}

# wait_for WHAT PROCESS SECONDS CMD...: retries CMD until it succeeds;
# gives up early when PROCESS (a name under DIR/pids) has exited.
wait_for() {
    local what="$1" name="$2" secs="$3" i
    shift 3
    for i in $(seq $((secs * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        if ! alive "$name"; then
            log "$name exited while waiting for $what:"
            tail -n 20 "$DIR/logs/$name.log" >&2 || true
            return 1
        fi
        sleep 0.2
    done
    log "timed out waiting for $what"
    return 1
}

# ---------------------------------------------------------------- node state

# The iptables chains that exist, one "tool table chain" per line.
chains() {
    local tool table
    for tool in iptables ip6tables; do
        command -v "$tool" >/dev/null || continue
        for table in filter nat mangle; do
            "$tool" -t "$table" -S 2>/dev/null | sed -n "s/^-N /$tool $table /p" || true
        done
    done
}

save_node_state() {
    local t
    for t in "${TUNABLES[@]}"; do
        printf '%s %s\n' "$t" "$(cat "/proc/sys/$t")"
    done >"$DIR/tunables.before"
    chains >"$DIR/chains.before"
}

restore_node_state() {
    local t value tool table chain rule
    if [ -f "$DIR/tunables.before" ]; then
        while read -r t value; do
            echo "$value" >"/proc/sys/$t" 2>/dev/null || true
        done <"$DIR/tunables.before"
    fi
    if [ -f "$DIR/chains.before" ]; then
        chains | while read -r tool table chain; do
            grep -xF "$tool $table $chain" "$DIR/chains.before" >/dev/null && continue
            # Rules that jump to it first, then the chain itself.
            { "$tool" -t "$table" -S 2>/dev/null || true; } | { grep -e "-j $chain\$" || true; } |
                sed 's/^-A //' | while read -r rule; do
                    # shellcheck disable=SC2086
                    "$tool" -t "$table" -D $rule 2>/dev/null || true
                done
            "$tool" -t "$table" -F "$chain" 2>/dev/null || true
            "$tool" -t "$table" -X "$chain" 2>/dev/null || true
        done
    fi
}

# unmount_under PATH: every mount at or below PATH, deepest first.
unmount_under() {
    local m
    { awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print length($5), $5 }' /proc/self/mountinfo || true; } |
        sort -rn | cut -d' ' -f2- | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
}

remove_kubepods_cgroups() {
    local h
    for h in /sys/fs/cgroup /sys/fs/cgroup/*; do
        [ -d "$h/kubepods" ] || continue
        find "$h/kubepods" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}

# ---------------------------------------------------------------- up

# layout: where the kubelet keeps its root and pod logs, and its healthz
# port: DIR's own, or the standard ones when DIR/standard-paths says so.
layout() {
    if [ -f "$DIR/standard-paths" ]; then
        KUBELET_ROOT=/var/lib/kubelet POD_LOGS=/var/log/pods HEALTHZ_PORT=10248
    else
        KUBELET_ROOT="$DIR/kubelet" POD_LOGS="$DIR/pod-logs" HEALTHZ_PORT=$KUBELET_HEALTHZ_PORT
    fi
}

daemon_config() {
    cat <<EOF
socket = "$DIR/pvecri/run/pvecri.sock"
state_dir = "$DIR/pvecri/state"
runtime_dir = "$DIR/pvecri/run"
init_path = "$INIT"
log_level = "debug"
EOF
    printf '%s\n' "${PVECRI_TOP_CONFIG:-}"
    cat "$REPO/tests/critest/pvecri.toml"
    printf '%s\n' "${PVECRI_EXTRA_CONFIG:-}"
}

kubelet_config() {
    cat <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$DIR/pvecri/run/pvecri.sock
imageServiceEndpoint: unix://$DIR/pvecri/run/pvecri.sock
cgroupDriver: cgroupfs
# Test machines run the v1+v2 hybrid layout; Proxmox nodes are cgroup2-only.
failCgroupV1: false
failSwapOn: false
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: ${KUBELET_READ_ONLY_PORT:-0}
healthzBindAddress: 127.0.0.1
healthzPort: $HEALTHZ_PORT
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: $PKI/ca.crt
authorization:
  mode: AlwaysAllow
podLogsDir: $POD_LOGS
# Static pods (the node e2e suite's mirror pod specs write manifests here).
staticPodPath: $DIR/manifests
syncFrequency: 5s
# The usual cluster domain: pods' FQDNs (setHostnameAsFQDN) end in it.
clusterDomain: cluster.local
nodeStatusUpdateFrequency: 5s
EOF
    # Test machines have small, busy disks: keep eviction and image GC away
    # unless KUBELET_EXTRA_CONFIG sets them.
    if ! printf '%s\n' "${KUBELET_EXTRA_CONFIG:-}" | grep '^evictionHard:' >/dev/null; then
        printf 'evictionHard:\n  memory.available: 50Mi\n  nodefs.available: 1%%\n  imagefs.available: 1%%\n  nodefs.inodesFree: 1%%\n'
    fi
    if ! printf '%s\n' "${KUBELET_EXTRA_CONFIG:-}" | grep '^imageGC' >/dev/null; then
        printf 'imageGCHighThresholdPercent: 100\nimageGCLowThresholdPercent: 99\n'
    fi
    printf '%s\n' "${KUBELET_EXTRA_CONFIG:-}"
}

cmd_up() {
    local t
    [ "$(id -u)" = 0 ] || die "run as root"
    for t in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
        [ -x "$BIN_DIR/$t" ] || die "$BIN_DIR/$t is missing: run scripts/install-cri-tools.sh"
    done
    export PATH="$BIN_DIR:$PATH"
    [ -e "$DIR/pids" ] && die "$DIR already holds a cluster: run '$0 down $DIR' first"
    PVECRI_BIN="${PVECRI_BIN:-$REPO/target/debug/pvecri}"
    INIT="$REPO/target/x86_64-unknown-linux-gnu/release/pvecri-init"
    if [ ! -x "$PVECRI_BIN" ]; then
        log "building pvecri"
        (cd "$REPO" && cargo build --locked --bin pvecri --bin pvecri-helper)
    fi
    [ -x "$INIT" ] || "$REPO/scripts/build-init.sh" >/dev/null

    if [ "${KUBELET_STANDARD_PATHS:-0}" = 1 ]; then
        for t in "${STANDARD_PATHS[@]}"; do
            [ -e "$t" ] && die "$t exists: KUBELET_STANDARD_PATHS=1 needs it to itself (a kubelet's state?)"
        done
    fi
    mkdir -p "$DIR"/{logs,pids,pvecri,pod-logs,kubelet,etcd,manifests}
    trap 'log "up failed: logs in $DIR/logs; run \"$0 down $DIR\""' ERR
    # The kubelet makes /var/lib/kubelet/device-plugins whatever its root
    # (a fixed path): what did not exist before is recorded first, so that
    # down removes it even when up fails half-way.
    for t in "${STANDARD_PATHS[@]}"; do
        [ -e "$t" ] || echo "$t" >>"$DIR/created-paths"
    done
    if [ "${KUBELET_STANDARD_PATHS:-0}" = 1 ]; then
        touch "$DIR/standard-paths"
        mkdir -p "${STANDARD_PATHS[@]}"
    fi
    layout
    chmod 0700 "$DIR/etcd"
    save_node_state
    ip addr add "$NODE_IP/32" dev lo 2>/dev/null || true
    make_pki
    kubeconfig admin admin
    kubeconfig controller-manager controller-manager
    kubeconfig scheduler scheduler
    kubeconfig kubelet kubelet-client

    log "etcd"
    spawn etcd "$BIN_DIR/etcd" --name pvecri --data-dir "$DIR/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "pvecri=http://127.0.0.1:$ETCD_PEER_PORT" \
        --unsafe-no-fsync --log-level warn
    wait_for etcd etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

    log "kube-apiserver"
    # The node address is not loopback, which the "kubernetes" Service's
    # endpoints refuse to be; nothing in the cluster needs that Service
    # (no in-cluster clients), so its reconciler is off.
    spawn apiserver "$BIN_DIR/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
        --bind-address 127.0.0.1 --secure-port "$API_PORT" --advertise-address "$NODE_IP" \
        --endpoint-reconciler-type none \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
        --client-ca-file "$PKI/ca.crt" \
        --token-auth-file "$PKI/tokens.csv" \
        --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
        --kubelet-certificate-authority "$PKI/ca.crt" \
        --kubelet-preferred-address-types InternalIP \
        --service-account-issuer https://kubernetes.default.svc \
        --service-account-key-file "$PKI/sa.pub" \
        --service-account-signing-key-file "$PKI/sa.key" \
        --authorization-mode Node,RBAC \
        --allow-privileged=true
    wait_for kube-apiserver apiserver 90 kubectl --kubeconfig "$DIR/admin.kubeconfig" get --raw /readyz

    log "kube-controller-manager, kube-scheduler"
    spawn controller-manager "$BIN_DIR/kube-controller-manager" \
        --kubeconfig "$DIR/controller-manager.kubeconfig" \
        --authentication-kubeconfig "$DIR/controller-manager.kubeconfig" \
        --authorization-kubeconfig "$DIR/controller-manager.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$CM_PORT" \
        --root-ca-file "$PKI/ca.crt" \
        --service-account-private-key-file "$PKI/sa.key" \
        --use-service-account-credentials \
        --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key"
    spawn scheduler "$BIN_DIR/kube-scheduler" \
        --kubeconfig "$DIR/scheduler.kubeconfig" \
        --authentication-kubeconfig "$DIR/scheduler.kubeconfig" \
        --authorization-kubeconfig "$DIR/scheduler.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$SCHED_PORT"
    sleep 1
    alive controller-manager || { tail -n 20 "$DIR/logs/controller-manager.log" >&2; die "kube-controller-manager exited"; }
    alive scheduler || { tail -n 20 "$DIR/logs/scheduler.log" >&2; die "kube-scheduler exited"; }

    log "pvecri"
    daemon_config >"$DIR/pvecri/config.toml"
    spawn pvecri "$PVECRI_BIN" daemon --config "$DIR/pvecri/config.toml"
    wait_for "the pvecri socket" pvecri 30 test -S "$DIR/pvecri/run/pvecri.sock"

    log "kubelet"
    kubelet_config >"$DIR/kubelet.yaml"
    spawn kubelet "$BIN_DIR/kubelet" --config "$DIR/kubelet.yaml" \
        --kubeconfig "$DIR/kubelet.kubeconfig" \
        --root-dir "$KUBELET_ROOT" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=2
    wait_for "node $NODE_NAME Ready" kubelet 120 \
        kubectl --kubeconfig "$DIR/admin.kubeconfig" wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
    wait_for "the default ServiceAccount" controller-manager 60 \
        kubectl --kubeconfig "$DIR/admin.kubeconfig" get serviceaccount default
    log "up: KUBECONFIG=$DIR/admin.kubeconfig kubectl get nodes"
    echo "$DIR/admin.kubeconfig"
}

# ---------------------------------------------------------------- down

cmd_down() {
    local t
    [ "$(id -u)" = 0 ] || die "run as root"
    [ -d "$DIR" ] || { log "no cluster in $DIR"; return 0; }
    stop kubelet
    # Every pod goes while the daemon still runs, so it tears down what it made.
    if alive pvecri; then
        "$BIN_DIR/crictl" --runtime-endpoint "unix://$DIR/pvecri/run/pvecri.sock" \
            --timeout 60s rmp -fa >/dev/null 2>&1 || log "crictl rmp -fa failed"
    fi
    stop pvecri
    stop scheduler
    stop controller-manager
    stop apiserver
    stop etcd
    restore_node_state
    unmount_under "$DIR"
    if [ -f "$DIR/created-paths" ]; then
        while read -r t; do
            unmount_under "$t"
            rm -rf "$t"
        done <"$DIR/created-paths"
    fi
    remove_kubepods_cgroups
    ip addr del "$NODE_IP/32" dev lo 2>/dev/null || true
    rm -rf "$DIR"
    log "down"
}

cmd_status() {
    local name
    [ -d "$DIR/pids" ] || { log "no cluster in $DIR"; return 1; }
    for name in etcd apiserver controller-manager scheduler pvecri kubelet; do
        if alive "$name"; then echo "$name running (pid $(cat "$DIR/pids/$name"))"; else echo "$name not running"; fi
    done
    KUBECONFIG="$DIR/admin.kubeconfig" "$BIN_DIR/kubectl" get nodes -o wide 2>&1 || true
}

cmd="${1:-}"
DIR="${2:-/tmp/pvecri-cluster}"
case "$DIR" in /*) ;; *) die "DIR must be absolute" ;; esac
PKI="$DIR/pki"
case "$cmd" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 up|down|status [DIR]" >&2; exit 2 ;;
esac
