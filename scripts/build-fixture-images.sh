#!/usr/bin/env bash
# build-fixture-images.sh: build the container images that critest (cri-tools
# v1.37.0) and the pvecri tests pull, and push them to the local test
# registry (scripts/registry.sh, 127.0.0.1:5000) under mirror paths:
#   registry.k8s.io/pause:3.9 -> 127.0.0.1:5000/registry.k8s.io/pause:3.9
# Nothing is downloaded from an image registry. Every image is made from
# Debian's dynamically linked `busybox` package (plus the shared libraries it
# needs and the dynamic loader) and a few tiny C programs compiled here; the
# Debian `busybox-static` build is deliberately not used (its shell runs
# applets internally, which defeats the MaskedPaths conformance spec).
# Images are assembled and pushed with `crane` (scripts/install-cri-tools.sh).
#
# Also writes tests/critest/images.txt (the upstream names critest pulls) and
# tests/critest/test-images.yaml (for `critest -test-images-file`).
#
# The one image that cannot be provided: critest's digest-pinned
# gcr.io/k8s-staging-cri-tools/test-image-digest@sha256:9700f9a2... is
# addressed by the digest of the upstream manifest, which cannot be rebuilt
# byte for byte here, so the spec "public image with digest should be pulled
# and removed" fails offline for every runtime.
#
# Environment: REGISTRY [127.0.0.1:5000]  CRANE [crane from PATH or
# /usr/local/bin]. Safe to re-run; identical inputs give identical digests.
set -euo pipefail

REGISTRY="${REGISTRY:-127.0.0.1:5000}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
OUT_DIR="$REPO_DIR/tests/critest"
ARCH="amd64"
# Fixed timestamp for every file in every layer (2024-01-01T00:00:00Z).
EPOCH=1704067200
LABEL_KEY="io.pvecri.test.fixture"
DEFAULT_PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

log() { printf '[fixtures] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (layer files must be owned by uid 0)"
[ "$(uname -m)" = x86_64 ] || die "only amd64 fixtures are built"

export PATH="$PATH:/usr/local/bin:/usr/local/go/bin"
CRANE="${CRANE:-$(command -v crane || true)}"
[ -n "$CRANE" ] && [ -x "$CRANE" ] || die "crane not found; run scripts/install-cri-tools.sh first"

# One build at a time (they share registry tags).
exec 9>/run/pvecri-test-fixtures.lock
flock 9

# ---------------------------------------------------------------- packages
apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2 ||
        { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2; } ||
        die "apt-get install $* failed"
}
missing=()
dpkg-query -W -f='${Status}\n' busybox 2>/dev/null | grep -q 'ok installed' || missing+=(busybox)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
[ -e /usr/include/stdio.h ] && [ -e /usr/lib/x86_64-linux-gnu/libc.a ] || missing+=(libc6-dev)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt_install "${missing[@]}"
fi

BUSYBOX=/bin/busybox
[ -x "$BUSYBOX" ] || BUSYBOX=/usr/bin/busybox
ldd "$BUSYBOX" >/dev/null 2>&1 ||
    die "$BUSYBOX is not dynamically linked (busybox-static installed?); install Debian's 'busybox' package"

# ---------------------------------------------------------------- registry
if ! curl -sf -o /dev/null --max-time 3 "http://$REGISTRY/v2/"; then
    if [ "$REGISTRY" = 127.0.0.1:5000 ]; then
        "$SCRIPT_DIR/registry.sh" start
    else
        die "registry $REGISTRY does not answer on http://$REGISTRY/v2/"
    fi
fi

# cr ARGS...: crane against our plain-HTTP registry; its per-blob chatter
# goes to a log that is shown only when a call fails.
cr() {
    if ! "$CRANE" --insecure "$@" 2>>"$WORK/crane.log"; then
        tail -n 20 "$WORK/crane.log" >&2
        die "crane $* failed"
    fi
}

# mirror REF -> where REF lives in our registry (upstream host becomes the
# first path component; names without a host are docker.io names).
mirror() {
    local ref="$1" first="${1%%/*}"
    case "$ref" in
    "$REGISTRY"/*) printf '%s\n' "$ref"; return 0 ;;
    */*) ;;
    *) ref="library/$ref" ;;
    esac
    case "$first" in
    *.* | *:* | localhost) ;;
    *) ref="docker.io/$ref" ;;
    esac
    printf '%s/%s\n' "$REGISTRY" "$ref"
}

WORK="$(mktemp -d /var/tmp/pvecri-fixtures.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

# mklayer DIR TAR: deterministic layer tarball of DIR's contents (entries
# without a leading "./", sorted, fixed mtime, numeric ids as staged).
mklayer() {
    (cd "$1" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
        tar --create --file="$2" --format=gnu --numeric-owner --mtime="@$EPOCH" \
            --no-recursion --verbatim-files-from --files-from=-)
}

# copy_libs BINARY ROOT: copy the shared libraries and loader BINARY needs
# into ROOT at the paths the host's loader resolves them to.
copy_libs() {
    local bin="$1" root="$2" lib
    for lib in $(ldd "$bin" 2>/dev/null | grep -o '/[^ ]*' || true); do
        [ -e "$lib" ] || continue
        if [ ! -e "$root$lib" ]; then
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        fi
    done
}

# ---------------------------------------------------------------- programs
SRC="$WORK/src"
BIN="$WORK/bin"
mkdir -p "$SRC" "$BIN"

cat >"$SRC/nnp.c" <<'EOF'
/* nnp: report the effective uid. Installed setuid root, so it prints 0
 * unless the kernel's no_new_privs flag kept the setuid bit from acting. */
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	printf("Effective uid: %d\n", (int)geteuid());
	return 0;
}
EOF

cat >"$SRC/pause.c" <<'EOF'
/* pause: a pod's placeholder process. Sleeps until SIGINT/SIGTERM, reaps
 * any children that get re-parented to it. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig)
{
	(void)sig;
	_exit(0);
}

static void on_child(int sig)
{
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

int main(int argc, char **argv)
{
	struct sigaction sa;

	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		puts("pause (pvecri test fixture)");
		return 0;
	}
	if (getpid() != 1)
		fprintf(stderr, "pause: not running as pid 1\n");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = on_child;
	sa.sa_flags = SA_NOCLDSTOP;
	sigaction(SIGCHLD, &sa, NULL);
	for (;;)
		pause();
	return 1;
}
EOF

cat >"$SRC/webserver.c" <<'EOF'
/* Stand-in for the main process of the e2e web server images (nginx and
 * Apache httpd), compiled once per image with -D settings:
 *   SELF     path of this program inside the image
 *   TITLE    argv[0] it re-executes itself with ("nginx: master process ...")
 *   PIDFILE  where the master writes its pid
 *   DOCROOT  directory served over HTTP
 *   PORTFILE file holding the TCP port (default 80)
 *   TAG      prefix of its log lines ("nginx", "httpd")
 * The master keeps the name of SELF (so `pidof nginx` finds it), writes its
 * pid file, runs busybox httpd as its only worker, passes SIGTERM/SIGINT/
 * SIGQUIT on and exits when the worker is gone. Arguments are ignored. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile pid_t worker = -1;

static void on_stop(int sig)
{
	int status;

	(void)sig;
	if (worker > 0) {
		kill(worker, SIGTERM);
		waitpid(worker, &status, 0);
	}
	unlink(PIDFILE);
	_exit(0);
}

static void read_port(char *buf, size_t len)
{
	FILE *f = fopen(PORTFILE, "r");

	buf[0] = '\0';
	if (f) {
		if (fgets(buf, (int)len, f))
			buf[strcspn(buf, " \t\r\n")] = '\0';
		fclose(f);
	}
	if (buf[0] == '\0')
		snprintf(buf, len, "80");
}

static void write_pidfile(void)
{
	char dir[256];
	char *slash;
	FILE *f;

	snprintf(dir, sizeof(dir), "%s", PIDFILE);
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		mkdir(dir, 0755);
	}
	f = fopen(PIDFILE, "w");
	if (!f) {
		fprintf(stderr, TAG ": cannot write " PIDFILE ": %s\n", strerror(errno));
		return;
	}
	fprintf(f, "%d\n", (int)getpid());
	fclose(f);
}

int main(int argc, char **argv)
{
	char port[32];
	struct sigaction sa;
	int status;
	pid_t pid;

	/* Re-execute with TITLE as argv[0]: /proc/PID/cmdline then reads like
	 * the real server's, while the process name stays basename(SELF). */
	if (argc < 1 || strcmp(argv[0], TITLE) != 0) {
		char *args[] = { TITLE, NULL };
		execv(SELF, args);
		fprintf(stderr, TAG ": re-exec failed: %s\n", strerror(errno));
	}
	read_port(port, sizeof(port));

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGQUIT, &sa, NULL);
	write_pidfile();

	pid = fork();
	if (pid < 0) {
		perror(TAG ": fork");
		return 1;
	}
	if (pid == 0) {
		sa.sa_handler = SIG_DFL;
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGQUIT, &sa, NULL);
		execl("/bin/busybox", "httpd", "-f", "-p", port, "-h", DOCROOT, (char *)NULL);
		perror(TAG ": exec busybox httpd");
		_exit(127);
	}
	worker = pid;
	fprintf(stderr, TAG ": master %d, worker %d: serving " DOCROOT " on port %s\n",
		(int)getpid(), (int)pid, port);

	/* Reap everything (this may be pid 1); leave when the worker dies. */
	for (;;) {
		pid = wait(&status);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid < 0 || pid == worker)
			break;
	}
	unlink(PIDFILE);
	fprintf(stderr, TAG ": worker exited\n");
	return 1;
}
EOF

log "compiling helper programs"
gcc -O2 -Wall -static -s -o "$BIN/pause" "$SRC/pause.c"
gcc -O2 -Wall -s -o "$BIN/nnp" "$SRC/nnp.c"
gcc -O2 -Wall -s -o "$BIN/nginx" "$SRC/webserver.c" \
    -DSELF='"/usr/sbin/nginx"' -DTITLE='"nginx: master process nginx -g daemon off;"' \
    -DPIDFILE='"/var/run/nginx.pid"' -DDOCROOT='"/usr/share/nginx/html"' \
    -DPORTFILE='"/etc/nginx/listen-port"' -DTAG='"nginx"'
gcc -O2 -Wall -s -o "$BIN/httpd" "$SRC/webserver.c" \
    -DSELF='"/usr/local/apache2/bin/httpd"' -DTITLE='"httpd -DFOREGROUND"' \
    -DPIDFILE='"/usr/local/apache2/logs/httpd.pid"' -DDOCROOT='"/usr/local/apache2/htdocs"' \
    -DPORTFILE='"/usr/local/apache2/conf/listen-port"' -DTAG='"httpd"'

# ---------------------------------------------------------------- base rootfs
ROOT="$WORK/rootfs"
log "assembling busybox rootfs from $BUSYBOX ($(dpkg-query -W -f='${Version}' busybox))"
mkdir -p "$ROOT"
(cd "$ROOT" && mkdir -p bin sbin usr/bin usr/sbin usr/local/bin usr/local/sbin \
    etc dev proc sys run tmp root home mnt opt srv \
    var/log var/run var/tmp var/www var/spool/mail lib lib64)
chmod 1777 "$ROOT/tmp" "$ROOT/var/tmp"
chmod 0700 "$ROOT/root"
cp "$BUSYBOX" "$ROOT/bin/busybox"
chmod 0755 "$ROOT/bin/busybox"
copy_libs "$BUSYBOX" "$ROOT"
copy_libs "$BIN/nnp" "$ROOT"
copy_libs "$BIN/nginx" "$ROOT"
copy_libs "$BIN/httpd" "$ROOT"
# One HARD link per applet, at the path busybox itself lists for it (as in
# the upstream busybox images). Not symlinks: masking /bin/ls with a bind
# mount would then follow the link and mask /bin/busybox, i.e. every applet.
"$BUSYBOX" --list-full | while read -r applet; do
    case "$applet" in
    */*) ;;
    *) continue ;; # top-level entries such as linuxrc
    esac
    [ -e "$ROOT/$applet" ] || [ -L "$ROOT/$applet" ] || ln "$ROOT/bin/busybox" "$ROOT/$applet"
done

cat >"$ROOT/usr/bin/pgrep" <<'EOF'
#!/bin/sh
# pgrep stand-in (Debian's busybox has no pgrep applet); pvecri test images.
# usage: pgrep [-f] [-x] [-l] [-v] [-n|-o] PATTERN
# Prints the pids of processes whose name (with -f: whole command line)
# matches the extended regular expression PATTERN; exit 1 if none match.
full=0 exact=0 long=0 invert=0 pick=""
while [ $# -gt 0 ]; do
	case "$1" in
	--) shift; break ;;
	--help)
		echo "usage: pgrep [-fxlavno] PATTERN  (busybox-image stand-in)"
		exit 0 ;;
	--*) echo "pgrep: unsupported option $1" >&2; exit 2 ;;
	-?*)
		opts=${1#-}
		while [ -n "$opts" ]; do
			case "$opts" in
			f*) full=1 ;;
			x*) exact=1 ;;
			l*) long=1 ;;
			a*) long=1; full=1 ;;
			v*) invert=1 ;;
			n*) pick=newest ;;
			o*) pick=oldest ;;
			*) echo "pgrep: unsupported option -${opts%"${opts#?}"}" >&2; exit 2 ;;
			esac
			opts=${opts#?}
		done
		shift ;;
	*) break ;;
	esac
done
if [ $# -ne 1 ]; then
	echo "usage: pgrep [-fxlavno] PATTERN" >&2
	exit 2
fi
pat=$1
[ "$exact" = 1 ] && pat="^($pat)\$"
me=$$
list=""
for dir in /proc/[0-9]*; do
	pid=${dir#/proc/}
	[ "$pid" = "$me" ] && continue
	read -r stat <"$dir/stat" 2>/dev/null || continue
	rest=${stat##*) }
	# shellcheck disable=SC2086 # split the stat fields on purpose
	set -- $rest
	# skip helpers forked by this script
	[ "$2" = "$me" ] && continue
	name=${stat#*\(}
	name=${name%\)*}
	if [ "$full" = 1 ]; then
		cmd=$(tr '\0' ' ' <"$dir/cmdline" 2>/dev/null)
		cmd=${cmd% }
		[ -n "$cmd" ] && name=$cmd
	fi
	list="$list$pid	$name
"
done
printf '%s' "$list" | awk -F'\t' -v pat="$pat" -v long="$long" -v inv="$invert" -v pick="$pick" '
	{ m = ($2 ~ pat); if (inv) m = !m }
	m && pick == "" { if (long) print $1 " " $2; else print $1; n++ }
	m && pick == "newest" { sel = $0; n++ }
	m && pick == "oldest" && !n { sel = $0; n++ }
	END {
		if (pick != "" && n) { split(sel, f, "\t"); if (long) print f[1] " " f[2]; else print f[1] }
		exit n ? 0 : 1
	}'
EOF

cat >"$ROOT/usr/bin/ipcs" <<'EOF'
#!/bin/sh
# ipcs stand-in (Debian's busybox has no ipcs applet); pvecri test images.
# usage: ipcs [-m] [-q] [-s] [-a]  -- lists System V IPC objects of this IPC
# namespace from /proc/sysvipc, in the same column layout as util-linux.
shm=0 msg=0 sem=0
for arg in "$@"; do
	case "$arg" in
	-m) shm=1 ;;
	-q) msg=1 ;;
	-s) sem=1 ;;
	-a) shm=1 msg=1 sem=1 ;;
	*) echo "usage: ipcs [-m] [-q] [-s] [-a]" >&2; exit 1 ;;
	esac
done
[ "$shm$msg$sem" = 000 ] && shm=1 msg=1 sem=1
show() {
	[ -r "/proc/sysvipc/$1" ] || return 0
	awk -v kind="$1" '
	function hex(n,   s, i, d) {
		if (n < 0) n += 4294967296
		s = ""
		for (i = 0; i < 8; i++) { d = n % 16; s = substr("0123456789abcdef", d + 1, 1) s; n = int(n / 16) }
		return "0x" s
	}
	function owner(uid) { return (uid in users) ? users[uid] : uid }
	BEGIN {
		while ((getline line < "/etc/passwd") > 0) { split(line, f, ":"); if (!(f[3] in users)) users[f[3]] = f[1] }
		if (kind == "shm") {
			print "\n------ Shared Memory Segments --------"
			printf "%-10s %-10s %-10s %-10s %-10s %-10s %-12s\n", "key", "shmid", "owner", "perms", "bytes", "nattch", "status"
		} else if (kind == "msg") {
			print "\n------ Message Queues --------"
			printf "%-10s %-10s %-10s %-10s %-12s %-12s\n", "key", "msqid", "owner", "perms", "used-bytes", "messages"
		} else {
			print "\n------ Semaphore Arrays --------"
			printf "%-10s %-10s %-10s %-10s %-10s\n", "key", "semid", "owner", "perms", "nsems"
		}
	}
	NR > 1 {
		if (kind == "shm")      printf "%-10s %-10s %-10s %-10s %-10s %-10s\n", hex($1), $2, owner($8), $3, $4, $7
		else if (kind == "msg") printf "%-10s %-10s %-10s %-10s %-12s %-12s\n", hex($1), $2, owner($8), $3, $4, $5
		else                    printf "%-10s %-10s %-10s %-10s %-10s\n", hex($1), $2, owner($5), $3, $4
	}
	END { print "" }' "/proc/sysvipc/$1"
}
[ "$msg" = 1 ] && show msg
[ "$shm" = 1 ] && show shm
[ "$sem" = 1 ] && show sem
exit 0
EOF
chmod 0755 "$ROOT/usr/bin/pgrep" "$ROOT/usr/bin/ipcs"

cat >"$ROOT/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
cat >"$ROOT/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
EOF
sed 's/^\([^:]*\):.*/\1:*:19723:0:99999:7:::/' "$ROOT/etc/passwd" >"$ROOT/etc/shadow"
chmod 0640 "$ROOT/etc/shadow"
cat >"$ROOT/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
shadow: files
hosts: files dns
networks: files
protocols: files
services: files
EOF
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
: >"$ROOT/etc/resolv.conf"
ln -s /proc/mounts "$ROOT/etc/mtab"
printf 'pvecri test image: Debian busybox %s (dynamic) with glibc from the build host\n' \
    "$(dpkg-query -W -f='${Version}' busybox)" >"$ROOT/etc/pvecri-test-image"
chown -R 0:0 "$ROOT"

# Sanity check: the dynamic busybox must run inside the rootfs.
chroot "$ROOT" /bin/sh -c 'id -nu >/dev/null && ls / >/dev/null' ||
    die "busybox does not run inside the assembled rootfs"

mklayer "$ROOT" "$WORK/base.tar"

# ---------------------------------------------------------------- extra layers
L="$WORK/layers"
mkdir -p "$L"

# marker NAME FILE: layer holding one empty file /FILE (like upstream's ADD).
marker() {
    mkdir -p "$L/$1"
    : >"$L/$1/$2"
    mklayer "$L/$1" "$L/$1.tar"
}

# nginx_layer NAME PORT: the nginx stand-in serving a welcome page on PORT.
nginx_layer() {
    local d="$L/$1"
    mkdir -p "$d/usr/sbin" "$d/etc/nginx" "$d/usr/share/nginx/html" "$d/var/log/nginx" "$d/var/cache/nginx"
    install -m 0755 "$BIN/nginx" "$d/usr/sbin/nginx"
    printf '%s\n' "$2" >"$d/etc/nginx/listen-port"
    cat >"$d/usr/share/nginx/html/index.html" <<'EOF'
<!DOCTYPE html>
<html><head><title>Welcome to nginx!</title></head>
<body><h1>Welcome to nginx!</h1>
<p>pvecri test fixture: busybox httpd behind an nginx-named master process.</p>
</body></html>
EOF
    mklayer "$d" "$L/$1.tar"
}

nginx_layer nginx 80
nginx_layer hostnet-nginx 12003

d="$L/httpd"
mkdir -p "$d/usr/local/apache2/htdocs" "$d/usr/local/apache2/bin" "$d/usr/local/apache2/conf" \
    "$d/usr/local/apache2/logs" "$d/usr/local/bin"
printf '<html><body><h1>It works!</h1></body></html>\n' >"$d/usr/local/apache2/htdocs/index.html"
printf '80\n' >"$d/usr/local/apache2/conf/listen-port"
install -m 0755 "$BIN/httpd" "$d/usr/local/apache2/bin/httpd"
cat >"$d/usr/local/bin/httpd-foreground" <<'EOF'
#!/bin/sh
# Stand-in for the httpd image's httpd-foreground: start the web server
# (busybox httpd under an "httpd" master) in the foreground on port 80.
rm -f /usr/local/apache2/logs/httpd.pid
exec /usr/local/apache2/bin/httpd -DFOREGROUND "$@"
EOF
chmod 0755 "$d/usr/local/bin/httpd-foreground"
mklayer "$d" "$L/httpd.tar"

d="$L/nonewprivs"
mkdir -p "$d/usr/local/bin"
install -m 4755 -o 0 -g 0 "$BIN/nnp" "$d/usr/local/bin/nnp"
mklayer "$d" "$L/nonewprivs.tar"

d="$L/predefined-group"
mkdir -p "$d/etc" "$d/home/default-user"
cp "$ROOT/etc/passwd" "$ROOT/etc/group" "$ROOT/etc/shadow" "$d/etc/"
printf 'default-user:x:1000:1000::/home/default-user:/bin/sh\n' >>"$d/etc/passwd"
printf 'default-user:!:19723:0:99999:7:::\n' >>"$d/etc/shadow"
printf 'default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n' >>"$d/etc/group"
chown 1000:1000 "$d/home/default-user"
chmod 0755 "$d/home/default-user"
mklayer "$d" "$L/predefined-group.tar"

d="$L/pause"
mkdir -p "$d"
install -m 0755 -o 0 -g 0 "$BIN/pause" "$d/pause"
mklayer "$d" "$L/pause.tar"

for m in test-image-1 test-image-2 test-image-3 test-image-latest; do marker "$m" "$m"; done
marker test-image-tags same-image
marker test-image-tag-test test
marker test-image-tag-all all

# ---------------------------------------------------------------- push
PUSHED=()
STAGE="$REGISTRY/pvecri-test/staging"

log "pushing base layers to $REGISTRY"
cr append -f "$WORK/base.tar" -t "$STAGE:busybox-rootfs" >/dev/null
cr mutate "$STAGE:busybox-rootfs" --set-platform "linux/$ARCH" -e "PATH=$DEFAULT_PATH" \
    -t "$STAGE:busybox-rootfs" >/dev/null
cr append -f "$L/pause.tar" -t "$STAGE:pause" >/dev/null
BASE="$STAGE:busybox-rootfs"

# image FIXTURE UPSTREAM_REF [LAYER_NAME|-] [crane mutate options...]
# Builds UPSTREAM_REF's mirror from the busybox base plus an optional extra
# layer; the fixture label keeps logically different images distinct.
image() {
    local fixture="$1" ref="$2" layer="$3" target
    shift 3
    target="$(mirror "$ref")"
    local args=(mutate "$BASE" --set-platform "linux/$ARCH" -l "$LABEL_KEY=$fixture")
    [ "$layer" = - ] || args+=(--append "$L/$layer.tar")
    cr "${args[@]}" "$@" -t "$target" >/dev/null
    PUSHED+=("$target")
}

# also_tag UPSTREAM_REF OTHER_UPSTREAM_REF...: same image under more names.
also_tag() {
    local src dst
    src="$(mirror "$1")"
    shift
    for dst in "$@"; do
        cr copy "$src" "$(mirror "$dst")" >/dev/null
        PUSHED+=("$(mirror "$dst")")
    done
}

E2E=registry.k8s.io/e2e-test-images
CRI=gcr.io/k8s-staging-cri-tools
ECR=public.ecr.aws/docker/library

log "pushing images"
# critest's default container image and web servers.
image e2e-busybox "$E2E/busybox:1.29-2" - --cmd sh
image e2e-nginx "$E2E/nginx:1.14-2" nginx --cmd "nginx,-g,daemon off;" --exposed-ports 80/tcp
image e2e-httpd "$E2E/httpd:2.4.39-4" httpd --cmd httpd-foreground -w /usr/local/apache2 --exposed-ports 80/tcp
image e2e-nonewprivs "$E2E/nonewprivs:1.3" nonewprivs --entrypoint /usr/local/bin/nnp
image hostnet-nginx "$CRI/hostnet-nginx-$ARCH:latest" hostnet-nginx \
    --cmd "nginx,-g,daemon off;" --exposed-ports 12003/tcp

# Pause: critest requires registry.k8s.io/pause:3.9 and k8s.gcr.io/pause:3.9
# to be ONE image (same id, two repo tags) that no other name shares. 3.10 is
# a separate image for use as a runtime's own sandbox image.
for v in 3.9 3.10; do
    cr mutate "$STAGE:pause" --set-platform "linux/$ARCH" -l "$LABEL_KEY=pause-$v" \
        --entrypoint /pause -u 65535:65535 -t "$(mirror "registry.k8s.io/pause:$v")" >/dev/null
    PUSHED+=("$(mirror "registry.k8s.io/pause:$v")")
done
also_tag registry.k8s.io/pause:3.9 k8s.gcr.io/pause:3.9

# Image service specs.
for n in 1 2 3; do image "test-image-$n" "$CRI/test-image-$n:latest" "test-image-$n" --cmd sh; done
image test-image-latest "$CRI/test-image-latest:latest" test-image-latest --cmd sh
image test-image-tags "$CRI/test-image-tags:1" test-image-tags --cmd sh
also_tag "$CRI/test-image-tags:1" "$CRI/test-image-tags:2" "$CRI/test-image-tags:3"
image test-image-tag-test "$CRI/test-image-tag:test" test-image-tag-test --cmd sh
image test-image-tag-all "$CRI/test-image-tag:all" test-image-tag-all --cmd sh
image test-image-user-uid "$CRI/test-image-user-uid:latest" - --cmd sh -u 1002
image test-image-user-username "$CRI/test-image-user-username:latest" - --cmd sh -u www-data
image test-image-user-uid-group "$CRI/test-image-user-uid-group:latest" - --cmd sh -u 1003:1004
image test-image-user-username-group "$CRI/test-image-user-username-group:latest" - --cmd sh -u www-data:1004
image test-image-predefined-group "$CRI/test-image-predefined-group:latest" predefined-group --cmd sh -u 1000

# Image benchmark list (critest -benchmark), each a distinct image.
for t in 1.35.0-glibc 1-uclibc 1 1-glibc 1-musl; do
    image "ecr-busybox-$t" "$ECR/busybox:$t" - --cmd sh
done

# General-purpose images for pvecri's own tests.
image docker-busybox docker.io/library/busybox:latest - --cmd sh
also_tag docker.io/library/busybox:latest \
    docker.io/library/busybox:1 docker.io/library/busybox:1.28 docker.io/library/busybox:1.35 \
    docker.io/library/busybox:1.36 docker.io/library/busybox:1.37
image pvecri-busybox "$REGISTRY/pvecri-test/busybox:latest" - --cmd sh

# Signed, unsigned and wrongly signed images for tests/signatures.rs.
REGISTRY="$REGISTRY" CRANE="$CRANE" "$SCRIPT_DIR/build-signed-fixtures.sh"

# ---------------------------------------------------------------- critest files
mkdir -p "$OUT_DIR"
write_if_changed() {
    local dst="$1" tmp
    tmp="$(mktemp "$dst.XXXXXX")"
    cat >"$tmp"
    chmod 0644 "$tmp"
    if cmp -s "$tmp" "$dst"; then rm -f "$tmp"; else mv "$tmp" "$dst"; fi
}

write_if_changed "$OUT_DIR/images.txt" <<EOF
# Image references critest (cri-tools v1.37.0) pulls on linux/amd64 (written by scripts/build-fixture-images.sh).
# Each is served from 127.0.0.1:5000/<reference> by the local test registry.
# Not provided (digest-pinned upstream manifest, cannot be rebuilt):
#   $CRI/test-image-digest@sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf
$E2E/busybox:1.29-2
$E2E/nginx:1.14-2
$E2E/httpd:2.4.39-4
$E2E/nonewprivs:1.3
registry.k8s.io/pause:3.9
k8s.gcr.io/pause:3.9
$CRI/test-image-1:latest
$CRI/test-image-2:latest
$CRI/test-image-3:latest
$CRI/test-image-latest:latest
$CRI/test-image-tag:test
$CRI/test-image-tag:all
$CRI/test-image-tags:1
$CRI/test-image-tags:2
$CRI/test-image-tags:3
$CRI/test-image-user-uid:latest
$CRI/test-image-user-username:latest
$CRI/test-image-user-uid-group:latest
$CRI/test-image-user-username-group:latest
$CRI/test-image-predefined-group:latest
$CRI/hostnet-nginx-$ARCH:latest
$ECR/busybox:1.35.0-glibc
$ECR/busybox:1-uclibc
$ECR/busybox:1
$ECR/busybox:1-glibc
$ECR/busybox:1-musl
EOF

write_if_changed "$OUT_DIR/test-images.yaml" <<EOF
# critest -test-images-file: critest's own default images, by upstream name.
# pvecri resolves them through its registry mirror (127.0.0.1:5000/<name>).
defaultTestContainerImage: $E2E/busybox:1.29-2
webServerTestImage: $E2E/nginx:1.14-2
EOF

# Every name critest uses must now resolve in the registry.
while read -r ref; do
    case "$ref" in '#'* | '') continue ;; esac
    "$CRANE" --insecure digest "$(mirror "$ref")" >/dev/null 2>&1 || die "missing after push: $(mirror "$ref")"
done <"$OUT_DIR/images.txt"

log "pushed ${#PUSHED[@]} references:"
for ref in "${PUSHED[@]}"; do
    printf '%s@%s\n' "$ref" "$(cr digest "$ref")"
done
