//! Compression sniffing and damaged blobs.

use std::fs;

use super::{gzip, zstd, Layer, Scratch};
use crate::snapshot::unpack::{UnpackError, WhiteoutMode};

fn sample() -> Vec<u8> {
    Layer::new()
        .dir("usr", 0o755)
        .file("usr/data", &b"layer payload ".repeat(10_000), 0o644)
        .tar()
}

#[test]
fn gzip_zstd_and_plain_tar_are_detected() {
    let tar = sample();
    for (name, blob) in [
        ("plain", tar.clone()),
        ("gzip", gzip(&tar)),
        ("zstd", zstd(&tar)),
    ] {
        let mut s = Scratch::new();
        let stats = s
            .unpack(&blob, WhiteoutMode::Overlay)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(stats.bytes, 140_000, "{name}");
        assert_eq!(
            fs::read(s.dest().join("usr/data")).unwrap(),
            b"layer payload ".repeat(10_000),
            "{name}"
        );
    }
}

#[test]
fn damaged_gzip_is_corrupt() {
    let good = gzip(&sample());
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    for b in &mut flipped[mid..mid + 16] {
        *b ^= 0xa5;
    }
    let truncated = good[..good.len() - 20].to_vec();
    let mut bad_crc = good.clone();
    let crc_at = bad_crc.len() - 8;
    bad_crc[crc_at] ^= 0xff;

    for (name, blob) in [
        ("flipped", flipped),
        ("truncated", truncated),
        ("bad crc", bad_crc),
    ] {
        let mut s = Scratch::new();
        let err = s.unpack(&blob, WhiteoutMode::Overlay).unwrap_err();
        assert!(
            matches!(err, UnpackError::Corrupt { .. }),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains("is corrupt"), "{name}: {err}");
    }
}

#[test]
fn bad_tar_header_checksum_is_corrupt() {
    let mut tar = sample();
    tar[0] ^= 0x01; // first byte of the first header's name
    let mut s = Scratch::new();
    let err = s.unpack(&tar, WhiteoutMode::Overlay).unwrap_err();
    assert!(matches!(err, UnpackError::Corrupt { .. }), "{err:?}");
}

#[test]
fn missing_blob_and_destination_are_reported() {
    let mut s = Scratch::new();
    let missing = s.dest().join("no-such-blob");
    let err = crate::snapshot::unpack::unpack_layer(&missing, &s.dest(), WhiteoutMode::Overlay)
        .unwrap_err();
    assert!(matches!(err, UnpackError::OpenLayer { .. }), "{err:?}");

    let blob = s.blob(&sample());
    let err =
        crate::snapshot::unpack::unpack_layer(&blob, &s.dest().join("nope"), WhiteoutMode::Overlay)
            .unwrap_err();
    assert!(matches!(err, UnpackError::OpenDest { .. }), "{err:?}");
}
