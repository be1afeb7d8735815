#!/usr/bin/env bash
# build-e2e-images.sh: the images Kubernetes' node e2e suite (v1.37,
# scripts/node-e2e.sh) pulls, built here and pushed to the local test
# registry under mirror paths, as scripts/build-fixture-images.sh does for
# critest (and on top of what it pushes):
#
#   registry.k8s.io/e2e-test-images/agnhost:2.66.1, :2.55
#       agnhost built from source at the suite's Kubernetes version
#       (scripts/install-cri-tools.sh with E2E_NODE=1), laid out as upstream
#       lays it out: /agnhost, /agnhost-2, /uploads, porter's certificate,
#       user-defined-in-image (1000) in group-defined-in-image (50000);
#       ENTRYPOINT /agnhost, CMD pause. 2.55 is the same program under
#       another label (specs only need it to be a different image).
#   registry.k8s.io/e2e-test-images/busybox:1.37.0-2, :1.36.1-1
#       Debian's busybox with every applet also in /bin, as upstream's
#       busybox image has them (specs call /bin/sysctl and friends).
#   registry.k8s.io/e2e-test-images/nginx:1.27.0-2, :1.28.0-2,
#   nonewprivs:1.4, registry.k8s.io/pause:3.10.2
#       critest's stand-ins (nginx:1.14-2, nonewprivs:1.3, pause:3.10)
#       under the versions the suite names, each a distinct image.
#   registry.k8s.io/e2e-test-images/nonroot:1.5 (USER 1234),
#   ipc-utils:1.4 (the busybox image; its ipcs stand-in reads /proc/sysvipc),
#   glibc-dns-testing:2.1.1 (the busybox image: glibc's resolver, busybox's
#   hostname -f)
# The busybox-based images also carry an nmeter stand-in (Debian's busybox
# has no nmeter applet; the container lifecycle specs time-stamp with it).
#
# Not provided (their specs are in tests/node-e2e/expected-failures.txt):
# images with real programs we cannot build here (perl, etcd, node-perf,
# cadvisor, volume servers) and digest-pinned references.
#
# Fast when nothing changed: every image carries the fingerprint of its
# inputs (this script, the agnhost binary, the fixture base) as a label, and
# nothing is rebuilt when every reference answers with that fingerprint.
#
# Environment: REGISTRY [127.0.0.1:5000]  BIN_DIR [/usr/local/bin]
#   KUBELET_VERSION [v1.37.2]  GOMODCACHE [~/go/pkg/mod]
set -euo pipefail

REGISTRY="${REGISTRY:-127.0.0.1:5000}"
BIN_DIR="${BIN_DIR:-/usr/local/bin}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ARCH=amd64
EPOCH=1704067200
LABEL_KEY="io.pvecri.test.fixture"
INPUTS_KEY="io.pvecri.test.inputs"
E2E=registry.k8s.io/e2e-test-images
STAGE="$REGISTRY/pvecri-test/staging"

log() { printf '[e2e-images] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (layer files must be owned by uid 0)"
export PATH="$PATH:$BIN_DIR"
CRANE="$(command -v crane || true)"
[ -n "$CRANE" ] || die "crane not found; run scripts/install-cri-tools.sh"
AGNHOST="$BIN_DIR/agnhost"
[ -x "$AGNHOST" ] || die "$AGNHOST not found; run E2E_NODE=1 scripts/install-cri-tools.sh"
# The module source agnhost was built from (install-cri-tools.sh), for the
# TLS certificate its upstream image carries.
KUBE_SRC="${GOMODCACHE:-${HOME:-/root}/go/pkg/mod}/k8s.io/kubernetes@${KUBELET_VERSION:-v1.37.2}"

exec 8>/run/pvecri-test-e2e-images.lock
flock 8

# The critest fixtures are the base; build them when they are missing.
if ! "$CRANE" --insecure digest "$STAGE:busybox-rootfs" >/dev/null 2>&1 ||
    ! "$CRANE" --insecure digest "$REGISTRY/$E2E/nginx:1.14-2" >/dev/null 2>&1; then
    log "fixture base missing; running build-fixture-images.sh"
    "$SCRIPT_DIR/build-fixture-images.sh" >/dev/null
fi

# mirror REF: where an upstream reference lives in the local registry.
mirror() { printf '%s/%s\n' "$REGISTRY" "$1"; }

TARGETS=(
    "$E2E/agnhost:2.66.1" "$E2E/agnhost:2.55" "$E2E/busybox:1.37.0-2" "$E2E/busybox:1.36.1-1"
    "$E2E/nginx:1.27.0-2" "$E2E/nginx:1.28.0-2" "$E2E/nonewprivs:1.4"
    "$E2E/nonroot:1.5" "$E2E/ipc-utils:1.4" "$E2E/glibc-dns-testing:2.1.1"
    registry.k8s.io/pause:3.10.2
)

inputs="$({
    sha256sum "${BASH_SOURCE[0]}" "$AGNHOST" | cut -d' ' -f1
    "$CRANE" --insecure digest "$STAGE:busybox-rootfs"
    "$CRANE" --insecure digest "$REGISTRY/$E2E/nginx:1.14-2"
} | sha256sum | cut -c1-32)"

up_to_date() {
    local ref label
    for ref in "${TARGETS[@]}"; do
        label="$("$CRANE" --insecure config "$(mirror "$ref")" 2>/dev/null |
            sed -n "s/.*\"$INPUTS_KEY\":\"\\([0-9a-f]*\\)\".*/\\1/p")" || return 1
        [ "$label" = "$inputs" ] || return 1
    done
}
if up_to_date; then
    log "node e2e images up to date ($inputs)"
    exit 0
fi

WORK="$(mktemp -d /var/tmp/pvecri-e2e-images.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
cr() {
    if ! "$CRANE" --insecure "$@" 2>>"$WORK/crane.log"; then
        tail -n 20 "$WORK/crane.log" >&2
        die "crane $* failed"
    fi
}
mklayer() {
    (cd "$1" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
        tar --create --file="$2" --format=gnu --numeric-owner --mtime="@$EPOCH" \
            --no-recursion --verbatim-files-from --files-from=-)
}

# nmeter: Debian's busybox lacks this applet, and the suite's container
# lifecycle specs time-stamp their logs with `nmeter -d0 '%3t' | head -n1`.
# This stand-in knows only the time conversion (%t, %Nt) and %%.
cat >"$WORK/nmeter.c" <<'NMETER'
/* nmeter stand-in for the pvecri node e2e images: prints FORMAT every
 * -d MSEC milliseconds (0: continuously, negative: once). Supports %t and
 * %Nt (local time HH:MM:SS with N decimals, N <= 6) and %%; any other
 * conversion is refused, so a spec needing real nmeter fails loudly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int render(const char *fmt, char *out, size_t len)
{
	struct timeval tv;
	struct tm tm;
	size_t n = 0;

	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	for (; *fmt && n + 32 < len; fmt++) {
		int digits = 0;

		if (*fmt != '%') {
			out[n++] = *fmt;
			continue;
		}
		fmt++;
		if (*fmt == '%') {
			out[n++] = '%';
			continue;
		}
		if (*fmt >= '0' && *fmt <= '6')
			digits = *fmt++ - '0';
		if (*fmt != 't')
			return -1;
		n += (size_t)snprintf(out + n, len - n, "%02d:%02d:%02d",
				      tm.tm_hour, tm.tm_min, tm.tm_sec);
		if (digits > 0) {
			long frac = tv.tv_usec;
			int i;

			for (i = 6; i > digits; i--)
				frac /= 10;
			n += (size_t)snprintf(out + n, len - n, ".%0*ld", digits, frac);
		}
	}
	out[n] = '\0';
	return 0;
}

int main(int argc, char **argv)
{
	long delay = 1000;
	const char *fmt = NULL;
	char line[4096];
	int i;

	for (i = 1; i < argc; i++) {
		if (strncmp(argv[i], "-d", 2) == 0) {
			const char *v = argv[i][2] ? argv[i] + 2 : (i + 1 < argc ? argv[++i] : "1000");
			delay = strtol(v, NULL, 10);
		} else if (!fmt) {
			fmt = argv[i];
		} else {
			fprintf(stderr, "usage: nmeter [-d MSEC] FORMAT\n");
			return 1;
		}
	}
	if (!fmt) {
		fprintf(stderr, "usage: nmeter [-d MSEC] FORMAT\n");
		return 1;
	}
	for (;;) {
		if (render(fmt, line, sizeof(line)) != 0) {
			fprintf(stderr, "nmeter: only %%t, %%Nt and %%%% are supported (pvecri stand-in)\n");
			return 1;
		}
		if (puts(line) == EOF || fflush(stdout) == EOF)
			return 0;
		if (delay < 0)
			return 0;
		if (delay > 0)
			usleep((useconds_t)delay * 1000);
	}
}
NMETER

# Layer 1: busybox again at /bin/busybox with every applet hard-linked
# beside it in /bin (hard links must live in the layer of their target),
# and the nmeter stand-in.
BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || BUSYBOX=/usr/bin/busybox
d="$WORK/bin-layer"
mkdir -p "$d/bin"
cp "$BUSYBOX" "$d/bin/busybox"
chmod 0755 "$d/bin/busybox"
"$BUSYBOX" --list | while read -r applet; do
    [ -e "$d/bin/$applet" ] || ln "$d/bin/busybox" "$d/bin/$applet"
done
gcc -O2 -Wall -static -s -o "$d/bin/nmeter" "$WORK/nmeter.c"
chown -R 0:0 "$d"
mklayer "$d" "$WORK/bin.tar"

# Layer 2: agnhost and what its upstream image adds around it.
porter="$KUBE_SRC/test/images/agnhost/porter"
d="$WORK/agnhost-layer"
mkdir -p "$d/uploads" "$d/etc"
install -m 0755 "$AGNHOST" "$d/agnhost"
ln -s agnhost "$d/agnhost-2"
[ -f "$porter/localhost.crt" ] || die "no $porter/localhost.crt (agnhost's module source)"
install -m 0644 "$porter/localhost.crt" "$d/localhost.crt"
install -m 0644 "$porter/localhost.key" "$d/localhost.key"
base_root="$WORK/base-etc"
mkdir -p "$base_root"
cr export "$STAGE:busybox-rootfs" - | tar -x -C "$base_root" etc/passwd etc/group etc/shadow
cp "$base_root/etc/passwd" "$base_root/etc/group" "$base_root/etc/shadow" "$d/etc/"
printf 'user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n' >>"$d/etc/passwd"
printf 'user-defined-in-image:!:19723:0:99999:7:::\n' >>"$d/etc/shadow"
printf 'user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n' >>"$d/etc/group"
mkdir -p "$d/home/user-defined-in-image"
# Programs of upstream's agnhost image that specs run in agnhost pods: curl
# (networking specs), bash (probe specs run /bin/bash) and netcat. The host's, with
# the shared libraries they need (the base already has glibc and the loader).
# host_program PATH_ON_HOST PATH_IN_IMAGE
host_program() {
    local lib
    install -D -m 0755 "$1" "$d$2"
    for lib in $(ldd "$1" | grep -o '/[^ ]*' || true); do
        case "$lib" in */libc.so.* | */ld-linux*) continue ;; esac
        [ -e "$d$lib" ] || install -D -m 0644 "$(readlink -f "$lib")" "$d$lib"
    done
}
host_program "$(command -v curl)" /usr/bin/curl
host_program "$(command -v bash)" /bin/bash
# OpenBSD netcat as nc (the node-to-pod UDP spec runs `nc -w 1 -u`, which
# busybox's nc lacks), as upstream's image has it.
if ! command -v nc.openbsd >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q netcat-openbsd >&2 ||
        die "apt-get install netcat-openbsd failed"
fi
host_program "$(command -v nc.openbsd)" /usr/bin/nc
chown -R 0:0 "$d"
chown 1000:1000 "$d/home/user-defined-in-image"
mklayer "$d" "$WORK/agnhost.tar"

log "pushing node e2e images ($inputs)"
cr mutate "$STAGE:busybox-rootfs" --append "$WORK/bin.tar" --set-platform "linux/$ARCH" \
    -t "$STAGE:e2e-busybox" >/dev/null

# image FIXTURE BASE UPSTREAM_REF [crane mutate options...]
image() {
    local fixture="$1" base="$2" ref="$3"
    shift 3
    cr mutate "$base" --set-platform "linux/$ARCH" -l "$LABEL_KEY=$fixture" -l "$INPUTS_KEY=$inputs" \
        "$@" -t "$(mirror "$ref")" >/dev/null
}

EB="$STAGE:e2e-busybox"
for v in 2.66.1 2.55; do
    image "agnhost-$v" "$EB" "$E2E/agnhost:$v" --append "$WORK/agnhost.tar" \
        --entrypoint /agnhost --cmd pause -w / \
        --exposed-ports 80/tcp,8080/tcp,8081/tcp,9376/tcp,5000/tcp
done
for v in 1.37.0-2 1.36.1-1; do image "e2e-busybox-$v" "$EB" "$E2E/busybox:$v" --cmd sh; done
image e2e-nonroot "$EB" "$E2E/nonroot:1.5" --cmd sh -u 1234
image e2e-ipc-utils "$EB" "$E2E/ipc-utils:1.4" --cmd sh
image e2e-glibc-dns-testing "$EB" "$E2E/glibc-dns-testing:2.1.1" --cmd sh
for v in 1.27.0-2 1.28.0-2; do
    image "e2e-nginx-$v" "$(mirror "$E2E/nginx:1.14-2")" "$E2E/nginx:$v"
done
image e2e-nonewprivs-1.4 "$(mirror "$E2E/nonewprivs:1.3")" "$E2E/nonewprivs:1.4"
image pause-3.10.2 "$(mirror registry.k8s.io/pause:3.10)" registry.k8s.io/pause:3.10.2

up_to_date || die "an image did not arrive with fingerprint $inputs"
for ref in "${TARGETS[@]}"; do
    printf '%s@%s\n' "$(mirror "$ref")" "$(cr digest "$(mirror "$ref")")"
done
