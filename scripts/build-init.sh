#!/usr/bin/env bash
# build-init.sh: build pvecri-init statically and print the binary's path.
# pvecri-init runs inside the container's rootfs after pivot_root, where the
# host's shared libraries do not exist, so it is linked with glibc statically
# (crt-static on the gnu target; musl targets are not installable here, see
# docs/DESIGN.md). The explicit --target keeps RUSTFLAGS away from the host
# build scripts and proc-macros of the rest of the workspace.
# Output: target/x86_64-unknown-linux-gnu/release/pvecri-init (under
# $CARGO_TARGET_DIR instead when that is set). Fails if the result is dynamic.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"
TARGET="x86_64-unknown-linux-gnu"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
BIN="$TARGET_DIR/$TARGET/release/pvecri-init"

cd "$REPO_DIR"
LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=/usr/lib/x86_64-linux-gnu \
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --locked --release -p pvecri-init --target "$TARGET" --target-dir "$TARGET_DIR"

# A static binary has no NEEDED entries (a static-pie still has a dynamic
# section, so "no dynamic section" is not the test).
if readelf -d "$BIN" | grep '(NEEDED)' >/dev/null; then
    echo "build-init.sh: $BIN is dynamically linked:" >&2
    readelf -d "$BIN" | grep '(NEEDED)' >&2
    exit 1
fi
echo "$BIN"
