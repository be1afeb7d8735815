#!/usr/bin/env bash
# run.sh: command one of the README. Installs what is missing, builds pvecri
# in release mode and runs the daemon in the foreground with its defaults
# (socket /run/pvecri/pvecri.sock). Extra arguments go to `pvecri daemon`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"

PVECRI_DEPS=build scripts/install-deps.sh
# crictl, which the README has you run next (the test tools come with
# scripts/test.sh).
ONLY=crictl scripts/install-cri-tools.sh
cargo build --release --locked
scripts/build-init.sh >/dev/null
install -m 0755 target/release/pvecri /usr/local/bin/pvecri
# Monitors and exec helpers (the daemon finds it next to itself).
install -m 0755 target/release/pvecri-helper /usr/local/bin/pvecri-helper
# The daemon's default init_path: bind-mounted into every container.
install -D -m 0755 target/x86_64-unknown-linux-gnu/release/pvecri-init /usr/lib/pvecri/pvecri-init
echo "[run] pvecri daemon: try 'crictl --runtime-endpoint unix:///run/pvecri/pvecri.sock version' in another shell" >&2
exec /usr/local/bin/pvecri daemon "$@"
