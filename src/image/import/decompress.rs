//! Opens a template file as a plain tar stream. The decompressor is chosen
//! from the file's first bytes rather than its extension, so a template
//! renamed by hand still imports.

use std::io::{self, BufReader, Read};

const GZIP: &[u8] = &[0x1f, 0x8b];
const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
/// The longest magic above.
const PEEK: usize = 6;
const BUF_SIZE: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
}

pub(super) fn detect(head: &[u8]) -> Compression {
    if head.starts_with(GZIP) {
        Compression::Gzip
    } else if head.starts_with(ZSTD) {
        Compression::Zstd
    } else if head.starts_with(XZ) {
        Compression::Xz
    } else {
        Compression::None
    }
}

/// `raw` decompressed according to its magic bytes.
pub(super) fn open(mut raw: impl Read + 'static) -> io::Result<Box<dyn Read>> {
    let mut head = Vec::with_capacity(PEEK);
    (&mut raw).take(PEEK as u64).read_to_end(&mut head)?;
    let compression = detect(&head);
    // Put the peeked bytes back in front of the rest.
    let stream = BufReader::with_capacity(BUF_SIZE, io::Cursor::new(head).chain(raw));
    Ok(match compression {
        Compression::None => Box::new(stream),
        // Multi-member: pigz-made archives are several gzip streams.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(stream)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(stream)?),
        // Multi-stream, for the same reason (pixz, concatenated xz files).
        Compression::Xz => Box::new(lzma_rust2::XzReader::new(stream, true)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::import::test_support::{compress, Codec};

    #[test]
    fn every_codec_round_trips() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for codec in [Codec::Gzip, Codec::Zstd, Codec::Xz] {
            let packed = compress(&data, codec);
            assert_ne!(detect(&packed), Compression::None, "{codec:?}");
            let mut out = Vec::new();
            open(io::Cursor::new(packed))
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert!(out == data, "{codec:?} round trip differs");
        }
        let mut out = Vec::new();
        open(io::Cursor::new(b"abc".to_vec()))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"abc", "short plain input passes through");
    }

    #[test]
    fn corrupt_streams_fail_to_read() {
        let mut packed = compress(&[7u8; 100_000], Codec::Xz);
        let mid = packed.len() / 2;
        packed[mid] ^= 0xff;
        packed.truncate(packed.len() - 8);
        let mut out = Vec::new();
        assert!(open(io::Cursor::new(packed))
            .unwrap()
            .read_to_end(&mut out)
            .is_err());
    }
}
