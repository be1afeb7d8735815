#!/usr/bin/env bash
# install-deps.sh: installs what pvecri needs to build, run and test on a
# Debian 12 machine, as root. Idempotent: only what is missing is installed.
#   - Debian packages: liblxc and its headers, libclang (bindgen), protoc,
#     libseccomp, libzfs_core's headers (libzfslinux-dev, in Debian's
#     contrib component, which is enabled when missing: the zfs feature is
#     on by default), the local OCI registry and busybox for test images, nftables,
#     apparmor (apparmor_parser checks the generated profile),
#     the CNI plugins for CNI-mode tests.
#   - cargo-deny (from crates.io) for the licence/bans/sources check.
#   - crictl, critest and crane (Go module proxy), via install-cri-tools.sh.
# Set PVECRI_DEPS=build to install only what building the daemon needs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
log() { printf '[install-deps] %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { log "run as root"; exit 1; }
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"

build_packages=(
    build-essential pkg-config git curl ca-certificates
    lxc-dev liblxc1 liblxc-common
    libclang-dev protobuf-compiler
    libseccomp-dev
    libzfslinux-dev
    iproute2 nftables
)
test_packages=(
    busybox docker-registry apache2-utils
    apparmor
    # CNI-mode tests: Debian's bridge, host-local and portmap plugins (/usr/lib/cni);
    # portmap writes its rules with iptables.
    containernetworking-plugins iptables
    # scripts/node-e2e.sh reads the suite's JSON report with jq.
    jq
)

packages=("${build_packages[@]}")
if [ "${PVECRI_DEPS:-all}" != build ]; then
    packages+=("${test_packages[@]}")
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
# libzfslinux-dev (and zfs-dkms for the VM stage) live in contrib.
contrib_sources=/etc/apt/sources.list.d/pvecri-contrib.sources
enable_contrib() {
    [ -f "$contrib_sources" ] && return
    apt-cache policy libzfslinux-dev 2>/dev/null | grep 'Candidate: [0-9]' >/dev/null && return
    log "enabling Debian's contrib component ($contrib_sources)"
    . /etc/os-release
    cat > "$contrib_sources" <<EOF
# Added by pvecri's scripts/install-deps.sh: Debian's contrib component, for
# libzfslinux-dev (the zfs feature) and zfs-dkms (the VM stage's ZFS modules).
Types: deb
URIs: ${DEBIAN_MIRROR:-http://deb.debian.org/debian}
Suites: ${VERSION_CODENAME} ${VERSION_CODENAME}-updates
Components: contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

if [ "${#missing[@]}" -gt 0 ]; then
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    enable_contrib
    apt-get update -qq
    # docker-registry's postinst tries to start its service; with no init
    # system that fails harmlessly, and tests run their own instance.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
    log "cargo not found: install Rust (rustup) first"
    exit 1
fi

if [ "${PVECRI_DEPS:-all}" != build ]; then
    if ! cargo deny --version >/dev/null 2>&1; then
        log "cargo install cargo-deny"
        cargo install --locked --quiet cargo-deny --version 0.20.2
    fi
    "$here/install-cri-tools.sh"
fi
log "dependencies ready"
