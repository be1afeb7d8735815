#!/usr/bin/env bash
# build-signed-fixtures.sh: the images tests/signatures.rs pulls under an
# image signature policy (images.signature_policy), in the local test
# registry (127.0.0.1:5000), with cosign-format signatures made by openssl:
#
#   pvecri-test/signed/good:latest          signed with the trusted key
#   pvecri-test/signed/unsigned:latest      no signature at all
#   pvecri-test/signed/wrong-key:latest     signed with the other key
#   pvecri-test/signed/other-digest:latest  trusted key, but the payload names
#                                           the digest of signed/good
#   pvecri-test/signed/index:latest         an image index (one linux/amd64
#                                           entry); the index digest is signed
#   pvecri-test/signed/other-name:latest    signed/good copied, with a
#                                           signature by the trusted key over
#                                           its digest that names signed/good
#
# A payload names the repository it was signed for
# (critical.identity.docker-reference), and pvecri requires the name the
# pod pulls. Each signature is therefore made twice, once per name the
# tests pull the image as: $REGISTRY/pvecri-test/signed/NAME, and
# $MIRROR_NAME/pvecri-test/signed/NAME, which tests/signatures.rs pulls
# with $REGISTRY as its mirror. The .sig manifest holds one layer per
# name, as cosign's does after an image is signed more than once.
#
# A cosign signature of an image with manifest digest sha256:HEX is the
# manifest tagged sha256-HEX.sig in the same repository; each layer is a
# "simple signing" JSON payload whose descriptor carries the base64 ECDSA
# P-256/SHA-256 signature (DER) of the payload bytes in the annotation
# dev.cosignproject.cosign/signature. That is all this script writes: the
# blobs and the manifest go up through the registry's HTTP API with curl.
#
# Key pairs (PEM; the tests read the public halves) live in $KEY_DIR and
# are made once. ECDSA signatures are randomised, so each one is kept in
# $KEY_DIR/signatures, named by key and payload digest, and reused while it
# still verifies with that key: a second run pushes byte-identical images
# and .sig manifests (same digests) and uploads no blob the registry has.
# A payload that changes (another name or digest) has another digest, so
# it is signed anew; a kept signature is never used for other bytes.
# Nothing here talks to anything but the registry, which must be on
# loopback.
#
# Called by scripts/build-fixture-images.sh after it has pushed
# $REGISTRY/pvecri-test/busybox:latest, which the images here derive from.
# Environment: REGISTRY [127.0.0.1:5000]  CRANE [crane from PATH]
# KEY_DIR [/var/lib/pvecri-test/cosign].
set -euo pipefail

REGISTRY="${REGISTRY:-127.0.0.1:5000}"
KEY_DIR="${KEY_DIR:-/var/lib/pvecri-test/cosign}"
BASE="$REGISTRY/pvecri-test/busybox:latest"
REPO="pvecri-test/signed"
# The registry name tests/signatures.rs pulls these images as through a
# mirror (its MIRRORED constant).
MIRROR_NAME="signed.pvecri.invalid"
LABEL_KEY="io.pvecri.test.fixture"
SIG_MEDIA_TYPE="application/vnd.dev.cosign.simplesigning.v1+json"
OCI_MANIFEST="application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG="application/vnd.oci.image.config.v1+json"

log() { printf '[signed-fixtures] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

export PATH="$PATH:/usr/local/bin:/usr/local/go/bin"
CRANE="${CRANE:-$(command -v crane || true)}"
[ -n "$CRANE" ] && [ -x "$CRANE" ] || die "crane not found; run scripts/install-cri-tools.sh first"
for tool in openssl curl sha256sum base64; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found"
done
case "$REGISTRY" in
127.0.0.1:* | localhost:* | "[::1]:"*) ;;
*) die "REGISTRY=$REGISTRY is not on loopback; the fixtures are made for the local test registry only" ;;
esac
curl -sf -o /dev/null --max-time 3 "http://$REGISTRY/v2/" ||
    die "registry $REGISTRY does not answer (scripts/registry.sh start)"

WORK="$(mktemp -d /var/tmp/pvecri-signed-fixtures.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

cr() {
    if ! "$CRANE" --insecure "$@" 2>>"$WORK/crane.log"; then
        tail -n 20 "$WORK/crane.log" >&2
        die "crane $* failed"
    fi
}

# ---------------------------------------------------------------- keys
mkdir -p "$KEY_DIR"
chmod 0755 "$KEY_DIR"
for name in trusted other; do
    if [ ! -s "$KEY_DIR/$name.key" ] || [ ! -s "$KEY_DIR/$name.pub" ]; then
        log "making the $name key pair in $KEY_DIR"
        (umask 077 && openssl ecparam -name prime256v1 -genkey -noout -out "$KEY_DIR/$name.key")
        openssl pkey -in "$KEY_DIR/$name.key" -pubout -out "$KEY_DIR/$name.pub"
        chmod 0644 "$KEY_DIR/$name.pub"
    fi
done

# ---------------------------------------------------------------- registry API
# upload_blob REPO FILE: push FILE as a blob of REPO (unless the registry
# has it already); prints its digest.
upload_blob() {
    local repo="$1" file="$2" digest location
    digest="sha256:$(sha256sum "$file" | cut -d' ' -f1)"
    if curl -sf -I -o /dev/null "http://$REGISTRY/v2/$repo/blobs/$digest"; then
        printf '%s\n' "$digest"
        return
    fi
    location="$(curl -sSf -X POST -D - -o /dev/null "http://$REGISTRY/v2/$repo/blobs/uploads/" |
        tr -d '\r' | sed -n 's/^[Ll]ocation: *//p')"
    [ -n "$location" ] || die "no upload location for $repo"
    case "$location" in
    http*) ;;
    *) location="http://$REGISTRY$location" ;;
    esac
    case "$location" in
    *\?*) location="$location&digest=$digest" ;;
    *) location="$location?digest=$digest" ;;
    esac
    curl -sSf -X PUT -H 'Content-Type: application/octet-stream' \
        --data-binary "@$file" -o /dev/null "$location" || die "upload of $file to $repo failed"
    printf '%s\n' "$digest"
}

# sign REPO IMAGE_DIGEST KEY CLAIMED_DIGEST [NAME...]: store under
# IMAGE_DIGEST's .sig tag, for each NAME (default: the two names REPO is
# pulled as), a signature by KEY over a payload naming NAME and
# CLAIMED_DIGEST.
sign() {
    local repo="$1" image_digest="$2" key="$3" claimed="$4" dir
    shift 4
    [ "$#" -gt 0 ] || set -- "$REGISTRY/$repo" "$MIRROR_NAME/$repo"
    dir="$WORK/sig-${repo//\//-}-${image_digest#sha256:}"
    mkdir -p "$dir"
    local n=0 name kept payload_digest payload_size signature layers="" diff_ids=""
    for name in "$@"; do
        n=$((n + 1))
        printf '{"critical":{"identity":{"docker-reference":"%s"},"image":{"docker-manifest-digest":"%s"},"type":"cosign container image signature"},"optional":null}' \
            "$name" "$claimed" >"$dir/payload-$n.json"
        # A kept signature of these exact payload bytes by this key, if it
        # still verifies (the key pair may have been made anew since).
        kept="$KEY_DIR/signatures/$key-$(sha256sum "$dir/payload-$n.json" | cut -d' ' -f1).sig"
        if [ -s "$kept" ] && openssl dgst -sha256 -verify "$KEY_DIR/$key.pub" \
            -signature "$kept" "$dir/payload-$n.json" >/dev/null 2>&1; then
            cp "$kept" "$dir/payload-$n.sig"
        else
            openssl dgst -sha256 -sign "$KEY_DIR/$key.key" -out "$dir/payload-$n.sig" "$dir/payload-$n.json"
            mkdir -p "$KEY_DIR/signatures"
            cp "$dir/payload-$n.sig" "$kept.tmp"
            mv "$kept.tmp" "$kept"
        fi
        payload_digest="$(upload_blob "$repo" "$dir/payload-$n.json")"
        payload_size="$(stat -c %s "$dir/payload-$n.json")"
        signature="$(base64 -w0 "$dir/payload-$n.sig")"
        layers="$layers${layers:+,}$(printf '{"mediaType":"%s","size":%s,"digest":"%s","annotations":{"dev.cosignproject.cosign/signature":"%s"}}' \
            "$SIG_MEDIA_TYPE" "$payload_size" "$payload_digest" "$signature")"
        diff_ids="$diff_ids${diff_ids:+,}\"$payload_digest\""
    done
    local config_digest config_size
    printf '{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":[%s]},"config":{}}' \
        "$diff_ids" >"$dir/config.json"
    config_digest="$(upload_blob "$repo" "$dir/config.json")"
    config_size="$(stat -c %s "$dir/config.json")"
    printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"%s","size":%s,"digest":"%s"},"layers":[%s]}' \
        "$OCI_MANIFEST" "$OCI_CONFIG" "$config_size" "$config_digest" "$layers" >"$dir/manifest.json"
    curl -sSf -X PUT -H "Content-Type: $OCI_MANIFEST" --data-binary "@$dir/manifest.json" -o /dev/null \
        "http://$REGISTRY/v2/$repo/manifests/sha256-${image_digest#sha256:}.sig" ||
        die "cannot push the signature of $repo@$image_digest"
}

# ---------------------------------------------------------------- images
cr digest "$BASE" >/dev/null

# image NAME: a distinct image (own label) at $REPO/NAME:latest; prints its digest.
image() {
    cr mutate "$BASE" -l "$LABEL_KEY=signed-$1" -t "$REGISTRY/$REPO/$1:latest" >/dev/null
    cr digest "$REGISTRY/$REPO/$1:latest"
}

log "pushing signed, unsigned and wrongly signed images to $REGISTRY/$REPO/"
good="$(image good)"
sign "$REPO/good" "$good" trusted "$good"

unsigned="$(image unsigned)"
# Nothing here ever signs it; make sure nothing else did either.
if curl -sf -o /dev/null -H "Accept: $OCI_MANIFEST" \
    "http://$REGISTRY/v2/$REPO/unsigned/manifests/sha256-${unsigned#sha256:}.sig"; then
    die "$REPO/unsigned has a signature; it must have none"
fi

wrong="$(image wrong-key)"
sign "$REPO/wrong-key" "$wrong" other "$wrong"

other="$(image other-digest)"
sign "$REPO/other-digest" "$other" trusted "$good"

# The index: signed by its own digest, as `cosign sign` of a multi-arch tag does.
platform="$(image index-amd64)"
cr index append -m "$REGISTRY/$REPO/index-amd64@$platform" -t "$REGISTRY/$REPO/index:latest" >/dev/null
index="$(cr digest "$REGISTRY/$REPO/index:latest")"
sign "$REPO/index" "$index" trusted "$index"

# signed/good republished under another name with a signature that is
# valid for its digest, but names signed/good: what anyone who can push
# to a registry can do with an image signed elsewhere.
cr copy "$REGISTRY/$REPO/good@$good" "$REGISTRY/$REPO/other-name:latest"
[ "$(cr digest "$REGISTRY/$REPO/other-name:latest")" = "$good" ] ||
    die "$REPO/other-name:latest is not byte for byte $REPO/good"
sign "$REPO/other-name" "$good" trusted "$good" "$REGISTRY/$REPO/good" "$MIRROR_NAME/$REPO/good"

log "signature keys: $KEY_DIR/trusted.pub (trusted), $KEY_DIR/other.pub"
for name in good unsigned wrong-key other-digest index other-name; do
    printf '%s@%s\n' "$REGISTRY/$REPO/$name:latest" "$(cr digest "$REGISTRY/$REPO/$name:latest")"
done
