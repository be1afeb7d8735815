#!/usr/bin/env bash
# build-deb.sh: builds pvecri_<version>_amd64.deb with cargo-deb (package
# metadata in Cargo.toml [package.metadata.deb], maintainer scripts in
# packaging/debian/, the unit in packaging/). Builds the release daemon,
# the static pvecri-init, the man pages and shell completions (generated
# from the CLI's clap definitions) and a changelog first.
#
#   scripts/build-deb.sh [--deb-version VERSION] [--output DIR]
#       VERSION defaults to Cargo's version with revision -1; DIR to
#       target/debian
#
# Prints the path of the .deb on stdout. See docs/packaging.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.cargo/bin:$PATH"
log() { printf '[build-deb] %s\n' "$*" >&2; }

deb_version=""
out_dir=""
while [ $# -gt 0 ]; do
    case $1 in
        --deb-version) deb_version=$2; shift 2 ;;
        --output) out_dir=$2; shift 2 ;;
        *) log "unknown argument $1"; exit 2 ;;
    esac
done

CARGO_DEB_VERSION=3.8.0
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    log "cargo install cargo-deb $CARGO_DEB_VERSION"
    cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
fi

target=${CARGO_TARGET_DIR:-$PWD/target}
pkg=$target/pkg
rm -rf "$pkg" && mkdir -p "$pkg/man" "$pkg/completions"

log "cargo build --release (pvecri, pvecri-helper)"
cargo build --locked --release --quiet --bin pvecri --bin pvecri-helper
log "pvecri-init (static)"
scripts/build-init.sh >&2
cp "$target/x86_64-unknown-linux-gnu/release/pvecri-init" "$pkg/pvecri-init"
# cargo-deb strips what it builds; the init comes from build-init.sh.
strip --strip-unneeded "$pkg/pvecri-init"

"$target/release/pvecri" generate man "$pkg/man"
"$target/release/pvecri" generate completions "$pkg/completions"

version=${deb_version:-$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)-1}
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
cat > "$pkg/changelog" <<CHANGELOG
pvecri ($version) unstable; urgency=medium

  * Built from git commit $commit.

 -- pvecri developers <pvecri@pvecri.dev>  $(date -R)
CHANGELOG

out_dir=${out_dir:-$target/debian}
mkdir -p "$out_dir"
args=(--no-build --locked --output "$out_dir/")
[ -z "$deb_version" ] || args+=(--deb-version "$deb_version")
deb=$(cargo deb "${args[@]}" 2>/dev/null | tail -1)
[ -f "$deb" ] || { log "cargo deb made no package"; exit 1; }
log "built $deb"
echo "$deb"
