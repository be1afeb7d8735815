#!/usr/bin/env bash
# install-cri-tools.sh: build and install the CRI test clients into /usr/local/bin:
#   crictl  - the CRI command line client (sigs.k8s.io/cri-tools/cmd/crictl)
#   critest - the CRI conformance suite, a `go test -c` binary of cmd/critest
#   crane   - registry client used by build-fixture-images.sh
#   kubelet - the real kubelet, run standalone by tests/kubelet.rs
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl -
#             the one-node cluster of scripts/cluster.sh (tests/cluster.rs)
#   e2e_node.test, ginkgo, agnhost - only with E2E_NODE=1, for
#             scripts/node-e2e.sh: Kubernetes' node e2e suite (a `go test -c`
#             binary of k8s.io/kubernetes/test/e2e_node), the ginkgo CLI at
#             the version that suite links (it runs the suite's specs in
#             parallel processes), and the e2e test image program agnhost
#             (packaged by scripts/build-e2e-images.sh); built on request
#             since they take minutes
# Everything is built from source fetched through the Go module proxy.
# A tool is rebuilt only when its stamp line (tool, version, sha256 of the
# installed binary) in $STAMP_DIR/tools.stamp does not match what is installed.
# Needs a Go toolchain new enough for cri-tools; if none is found (PATH,
# /usr/local/go/bin) one is bootstrapped: Debian's golang-1.19-go fetches the
# golang.org/toolchain module from the module proxy into $GO_BOOTSTRAP_ROOT.
#
# Environment knobs (defaults in brackets):
#   BIN_DIR [/usr/local/bin]  STAMP_DIR [/usr/local/lib/pvecri-test]
#   CRI_TOOLS_VERSION [v1.37.0]  CRANE_VERSION [v0.22.1]  KUBELET_VERSION [v1.37.2]
#   GO_BOOTSTRAP_VERSION [1.26.8]  GO_BOOTSTRAP_ROOT [/usr/local/go]
#   E2E_NODE [0]: 1 also builds e2e_node.test, ginkgo and agnhost.
#   FORCE=1 rebuilds everything.
#   ONLY=crictl installs crictl alone (scripts/run.sh: the README's next step).
set -euo pipefail

CRI_TOOLS_VERSION="${CRI_TOOLS_VERSION:-v1.37.0}"
CRANE_VERSION="${CRANE_VERSION:-v0.22.1}"
KUBELET_VERSION="${KUBELET_VERSION:-v1.37.2}"
BIN_DIR="${BIN_DIR:-/usr/local/bin}"
STAMP_DIR="${STAMP_DIR:-/usr/local/lib/pvecri-test}"
STAMP="$STAMP_DIR/tools.stamp"
GO_BOOTSTRAP_VERSION="${GO_BOOTSTRAP_VERSION:-1.26.8}"
GO_BOOTSTRAP_ROOT="${GO_BOOTSTRAP_ROOT:-/usr/local/go}"
FORCE="${FORCE:-0}"
ONLY="${ONLY:-}"
E2E_NODE="${E2E_NODE:-0}"

log() { printf '[install-cri-tools] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root"

export PATH="$PATH:/usr/local/go/bin"
export HOME="${HOME:-/root}"
# Reproducible, VCS-free builds of code that sits in the module cache.
export GOFLAGS="-buildvcs=false -trimpath"
export CGO_ENABLED=0
export GO111MODULE=on
# A Go >= 1.21 switches itself to the toolchain a module asks for (via the
# module proxy) unless told otherwise; make sure nobody told it otherwise.
export GOTOOLCHAIN=auto

# go_minor PATH_TO_GO -> prints the minor version (e.g. 26 for go1.26.8), or 0.
go_minor() {
    local v
    v="$("$1" env GOVERSION 2>/dev/null || true)"
    v="${v#go1.}"
    v="${v%%[!0-9]*}"
    printf '%s\n' "${v:-0}"
}

find_go() {
    local cand
    for cand in "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go "$GO_BOOTSTRAP_ROOT/bin/go"; do
        if [ -n "$cand" ] && [ -x "$cand" ] && [ "$(go_minor "$cand")" -ge 21 ]; then
            printf '%s\n' "$cand"
            return 0
        fi
    done
    return 1
}

# Install a current Go into $GO_BOOTSTRAP_ROOT using Debian's Go 1.19 only as
# a downloader of the golang.org/toolchain module (checksummed by sumdb).
bootstrap_go() {
    local old=/usr/lib/go-1.19/bin/go mod="golang.org/toolchain@v0.0.1-go${GO_BOOTSTRAP_VERSION}.linux-amd64" dir tmp
    [ "$(uname -m)" = x86_64 ] || die "Go bootstrap only knows linux-amd64; install Go >= 1.21 first"
    if [ ! -x "$old" ]; then
        log "no usable Go found; installing Debian golang-1.19-go to bootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q golang-1.19-go >&2 ||
            { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q golang-1.19-go >&2; }
    fi
    log "downloading $mod from the Go module proxy"
    tmp="$(mktemp -d)"
    dir="$(cd "$tmp" && GOFLAGS=-mod=mod "$old" mod download -json "$mod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
    rmdir "$tmp"
    [ -n "$dir" ] && [ -d "$dir/bin" ] || die "could not download $mod"
    rm -rf "$GO_BOOTSTRAP_ROOT.new"
    cp -a "$dir" "$GO_BOOTSTRAP_ROOT.new"
    chmod -R u+w "$GO_BOOTSTRAP_ROOT.new"
    # Module zips carry no file modes; make the tools executable again.
    chmod 0755 "$GO_BOOTSTRAP_ROOT.new"/bin/* "$GO_BOOTSTRAP_ROOT.new"/pkg/tool/*/*
    rm -rf "$GO_BOOTSTRAP_ROOT"
    mv "$GO_BOOTSTRAP_ROOT.new" "$GO_BOOTSTRAP_ROOT"
    log "installed $("$GO_BOOTSTRAP_ROOT/bin/go" version) in $GO_BOOTSTRAP_ROOT"
}

# The module proxy is HTTPS; a minimal Debian may lack the CA bundle.
if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then
    log "installing ca-certificates"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q ca-certificates >&2 ||
        { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ca-certificates >&2; }
fi

GO="$(find_go || true)"
if [ -z "$GO" ]; then
    bootstrap_go
    GO="$GO_BOOTSTRAP_ROOT/bin/go"
fi
log "using $GO ($("$GO" env GOVERSION))"

mkdir -p "$BIN_DIR" "$STAMP_DIR"
touch "$STAMP"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# up_to_date TOOL VERSION: installed binary matches the stamp line we wrote.
up_to_date() {
    local bin="$BIN_DIR/$1"
    [ "$FORCE" = 1 ] && return 1
    [ -x "$bin" ] || return 1
    grep -qxF "$1 $2 $(sha_of "$bin")" "$STAMP"
}

record() {
    local tmp
    tmp="$(mktemp "$STAMP_DIR/.stamp.XXXXXX")"
    grep -v "^$1 " "$STAMP" >"$tmp" || true
    printf '%s %s %s\n' "$1" "$2" "$(sha_of "$BIN_DIR/$1")" >>"$tmp"
    chmod 0644 "$tmp"
    mv "$tmp" "$STAMP"
}

# module_dir MODULE@VERSION -> directory of the module in the module cache.
module_dir() {
    local tmp dir
    tmp="$(mktemp -d)"
    dir="$(cd "$tmp" && "$GO" mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
    rmdir "$tmp"
    [ -n "$dir" ] && [ -d "$dir" ] || die "go mod download $1 failed"
    printf '%s\n' "$dir"
}

# install_built TOOL VERSION TMPFILE: atomically move a fresh build into place.
install_built() {
    chmod 0755 "$3"
    mv -f "$3" "$BIN_DIR/$1"
    record "$1" "$2"
    log "installed $BIN_DIR/$1 ($2)"
}

if [ "$ONLY" = crictl ]; then
    if ! up_to_date crictl "$CRI_TOOLS_VERSION"; then
        src="$(module_dir "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION")"
        log "building crictl $CRI_TOOLS_VERSION"
        (cd "$src" && "$GO" build -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=${CRI_TOOLS_VERSION#v}" \
            -o "$BIN_DIR/.crictl.new" ./cmd/crictl)
        install_built crictl "$CRI_TOOLS_VERSION" "$BIN_DIR/.crictl.new"
    fi
    "$BIN_DIR/crictl" --version
    exit 0
fi

need_cri=0
up_to_date crictl "$CRI_TOOLS_VERSION" || need_cri=1
up_to_date critest "$CRI_TOOLS_VERSION" || need_cri=1
if [ "$need_cri" = 1 ]; then
    src="$(module_dir "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION")"
    ldflags="-X sigs.k8s.io/cri-tools/pkg/version.Version=${CRI_TOOLS_VERSION#v}"
    if ! up_to_date crictl "$CRI_TOOLS_VERSION"; then
        log "building crictl $CRI_TOOLS_VERSION"
        (cd "$src" && "$GO" build -ldflags "$ldflags" -o "$BIN_DIR/.crictl.new" ./cmd/crictl)
        install_built crictl "$CRI_TOOLS_VERSION" "$BIN_DIR/.crictl.new"
    fi
    if ! up_to_date critest "$CRI_TOOLS_VERSION"; then
        log "building critest $CRI_TOOLS_VERSION"
        (cd "$src" && "$GO" test -c -ldflags "$ldflags" -o "$BIN_DIR/.critest.new" ./cmd/critest)
        install_built critest "$CRI_TOOLS_VERSION" "$BIN_DIR/.critest.new"
    fi
else
    log "crictl and critest $CRI_TOOLS_VERSION already installed"
fi

if ! up_to_date crane "$CRANE_VERSION"; then
    src="$(module_dir "github.com/google/go-containerregistry@$CRANE_VERSION")"
    log "building crane $CRANE_VERSION"
    (cd "$src" && "$GO" build -o "$BIN_DIR/.crane.new" ./cmd/crane)
    install_built crane "$CRANE_VERSION" "$BIN_DIR/.crane.new"
else
    log "crane $CRANE_VERSION already installed"
fi

# The Kubernetes binaries: the kubelet (tests/kubelet.rs runs it standalone)
# and the one-node cluster of scripts/cluster.sh (tests/cluster.rs): etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler and kubectl.
# k8s.io/kubernetes requires its staging modules (k8s.io/api, client-go, ...)
# at v0.0.0 and replaces them with ./staging, so it cannot be `go install`ed.
# A throwaway main module that requires it and points every such module at
# its published v0.MINOR.PATCH release builds all of them in one go (shared
# packages compile once). etcd is built at the version Kubernetes itself
# requires, from a two-line main that calls its etcdmain package.
# e2e_node.test is a test binary (`go test -c`) of the same module graph;
# agnhost and the ginkgo CLI are built from it too.
K8S_TOOLS=(kubelet kube-apiserver kube-controller-manager kube-scheduler kubectl etcd)
if [ "$E2E_NODE" = 1 ]; then
    K8S_TOOLS+=(e2e_node.test ginkgo agnhost)
fi

build_k8s() {
    local version="$1" work kmod goline staging minor patch etcd_version t
    shift
    [[ "$version" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "KUBELET_VERSION must look like v1.N.M"
    minor="${BASH_REMATCH[1]}" patch="${BASH_REMATCH[2]}"
    work="$(mktemp -d)"
    kmod="$(cd "$work" && GOFLAGS=-mod=mod "$GO" mod download -json "k8s.io/kubernetes@$version" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    [ -f "$kmod" ] || die "go mod download k8s.io/kubernetes@$version failed"
    goline="$(awk '$1 == "go" { print; exit }' "$kmod")"
    staging="$(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 }' "$kmod" | sort -u)"
    etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2; exit }' "$kmod")"
    [ -n "$etcd_version" ] || die "k8s.io/kubernetes@$version does not name an etcd server version"
    {
        printf 'module pvecri-k8s-build\n\n%s\n\nrequire (\n\tk8s.io/kubernetes %s\n\tgo.etcd.io/etcd/server/v3 %s\n)\n\nreplace (\n' \
            "$goline" "$version" "$etcd_version"
        for m in $staging; do printf '\t%s => %s v0.%s.%s\n' "$m" "$m" "$minor" "$patch"; done
        printf ')\n'
    } >"$work/go.mod"
    mkdir "$work/etcd"
    printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' \
        >"$work/etcd/main.go"
    (
        cd "$work"
        GOFLAGS="$GOFLAGS -mod=mod" "$GO" get "k8s.io/kubernetes/cmd/kubelet@$version" "go.etcd.io/etcd/server/v3@$etcd_version"
        local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
        for t in "$@"; do
            local pkg="k8s.io/kubernetes/cmd/$t" build=(build)
            case "$t" in
            etcd) pkg=./etcd ;;
            e2e_node.test) pkg=k8s.io/kubernetes/test/e2e_node build=(test -c) ;;
            agnhost) pkg=k8s.io/kubernetes/test/images/agnhost ;;
            # The ginkgo module version k8s.io/kubernetes requires: the CLI
            # and the library in the suite must speak the same protocol.
            ginkgo) pkg=github.com/onsi/ginkgo/v2/ginkgo ;;
            esac
            log "building $t"
            GOFLAGS="$GOFLAGS -mod=mod" "$GO" "${build[@]}" -ldflags "$ldflags" -o "$BIN_DIR/.$t.new" "$pkg"
        done
    )
    rm -rf "$work"
}

k8s_missing=()
for t in "${K8S_TOOLS[@]}"; do
    up_to_date "$t" "$KUBELET_VERSION" || k8s_missing+=("$t")
done
if [ "${#k8s_missing[@]}" -gt 0 ]; then
    log "building ${k8s_missing[*]} at Kubernetes $KUBELET_VERSION (several minutes)"
    build_k8s "$KUBELET_VERSION" "${k8s_missing[@]}"
    for t in "${k8s_missing[@]}"; do
        install_built "$t" "$KUBELET_VERSION" "$BIN_DIR/.$t.new"
    done
else
    log "Kubernetes $KUBELET_VERSION binaries already installed"
fi

"$BIN_DIR/crictl" --version
log "critest: $BIN_DIR/critest ($(grep '^critest ' "$STAMP" | cut -d' ' -f2))"
log "crane: $BIN_DIR/crane ($(grep '^crane ' "$STAMP" | cut -d' ' -f2))"
log "kubelet: $BIN_DIR/kubelet ($("$BIN_DIR/kubelet" --version))"
if [ "$E2E_NODE" = 1 ]; then
    log "e2e_node.test: $BIN_DIR/e2e_node.test ($(grep '^e2e_node.test ' "$STAMP" | cut -d' ' -f2))"
fi
log "cluster: $("$BIN_DIR/kube-apiserver" --version), $("$BIN_DIR/kubectl" version --client 2>/dev/null | head -1), etcd $("$BIN_DIR/etcd" --version | awk 'NR == 1 { print $3 }')"
