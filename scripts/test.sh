#!/usr/bin/env bash
# test.sh: command two of the README, and all that CI runs. Installs what is
# missing, then: formatting, clippy, cargo-deny, unit and root integration
# tests, the critest conformance run against a live daemon with the
# checked-in expected-failures list (tests/critest/expected-failures.txt),
# the cluster scenarios (tests/cluster.rs, with the unit and integration
# tests), a fixed subset of Kubernetes' node conformance suite against a
# one-node cluster on pvecri (tests/node-e2e/ci-subset.txt, with its own
# expected-failures list), the VM stage (cgroup2-only, AppArmor enforcing, critest there, and the
# zfs snapshotter on a real pool), and the Debian package's install,
# upgrade and purge.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
export CARGO_TERM_COLOR=never

step() { printf '\n=== %s ===\n' "$*"; }

step "dependencies"
# E2E_NODE=1: the node conformance suite's binaries too (built once).
E2E_NODE=1 scripts/install-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
# The zfs feature is on by default; the build without it must stay clean.
cargo clippy --locked --workspace --lib --bins --no-default-features -- -D warnings

step "cargo deny (licenses, bans, sources)"
cargo deny --locked check licenses bans sources

# The registry comes before the tests: image tests pull from it.
step "local registry and fixture images"
scripts/registry.sh start
scripts/build-fixture-images.sh

step "pvecri-init (static)"
scripts/build-init.sh

step "unit and integration tests"
cargo test --locked --workspace

step "critest conformance"
PVECRI_CRITEST=1 cargo test --locked --test critest -- --nocapture

# Kubernetes' node conformance, a fixed subset (the whole focus takes
# over half an hour: scripts/node-e2e.sh without --subset; docs/testing.md
# has both counts), through a real API server and kubelet.
step "node conformance subset (scripts/node-e2e.sh --subset)"
scripts/node-e2e.sh --subset

# What this machine's kernel lacks, on a Proxmox-like node: Debian's own
# kernel under qemu (software emulation) with only cgroup2 mounted,
# AppArmor enforcing, the ZFS modules and a kernel Debian's CRIU works on
# (docs/testing.md "The VM stage").
# Its daemons live and die inside the VM.
step "VM stage: cgroup2-only, AppArmor, critest, ZFS and CRIU (scripts/node-vm.sh)"
scripts/node-vm.sh test cgroup2 apparmor critest zfs checkpoint

# The Debian package: built, linted, installed, upgraded under a running
# pod, removed and purged (docs/packaging.md).
step "Debian package (scripts/test-package.sh)"
scripts/test-package.sh

# Last: nothing any test's daemon made may outlive it. Every daemon of
# the run is stopped by now, so the whole node must hold no pvecri
# process, cgroup, mount, pin, link, nftables state or per-container dir
# (docs/census.md); the critest daemon's config names its bridge.
step "census: nothing left behind"
cargo run --locked --quiet --bin pvecri -- --config tests/critest/pvecri.toml census --stopped --node
