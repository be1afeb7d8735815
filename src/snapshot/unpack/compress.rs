//! Picks the decompressor from the blob's magic bytes. The manifest's media
//! type is not trusted: registries and tools disagree about it often enough
//! (e.g. `tar.gzip` vs `tar+gzip`, Docker v2 types) that sniffing is safer.

use std::io::{self, BufReader, Read};

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Large enough that a layer is read in few syscalls and the tar reader's
/// 512-byte header reads rarely reach the decompressor.
const BUF_SIZE: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    None,
    Gzip,
    Zstd,
}

pub(super) fn detect(head: &[u8]) -> Compression {
    if head.starts_with(GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Wraps `raw` in the decompressor its first bytes call for. Errors come from
/// reading `raw` or setting up zstd, so they are I/O errors, not corruption.
pub(super) fn open(mut raw: impl Read + Send + 'static) -> io::Result<Box<dyn Read + Send>> {
    // Read the magic by hand (a single read may return fewer bytes than the
    // magic is long) and put it back in front of the stream.
    let mut head = [0u8; ZSTD_MAGIC.len()];
    let mut len = 0;
    while len < head.len() {
        match raw.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let compression = detect(&head[..len]);
    let stream =
        BufReader::with_capacity(BUF_SIZE, io::Cursor::new(head[..len].to_vec()).chain(raw));
    Ok(match compression {
        Compression::None => Box::new(stream),
        // Multi-member so that layers from parallel compressors (pigz) decode whole.
        Compression::Gzip => Box::new(BufReader::with_capacity(
            BUF_SIZE,
            flate2::bufread::MultiGzDecoder::new(stream),
        )),
        Compression::Zstd => Box::new(BufReader::with_capacity(
            BUF_SIZE,
            zstd::stream::read::Decoder::with_buffer(stream)?,
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn roundtrip(blob: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        open(io::Cursor::new(blob))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn sniffs_magic_not_media_type() {
        assert_eq!(detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(detect(b"etc/"), Compression::None);
        assert_eq!(detect(&[0x1f]), Compression::None);
        assert_eq!(detect(&[]), Compression::None);
    }

    #[test]
    fn decodes_each_format_transparently() {
        let data = b"hello layer".repeat(1000);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        assert_eq!(roundtrip(gz.finish().unwrap()), data);

        let zst = zstd::encode_all(&data[..], 1).unwrap();
        assert_eq!(roundtrip(zst), data);

        assert_eq!(roundtrip(data.clone()), data);
        assert_eq!(roundtrip(b"ab".to_vec()), b"ab");
    }

    /// A reader that hands out one byte per call, like a slow pipe.
    struct Trickle(io::Cursor<Vec<u8>>);

    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(1);
            self.0.read(&mut buf[..n])
        }
    }

    #[test]
    fn short_reads_do_not_hide_the_magic() {
        let zst = zstd::encode_all(&b"payload"[..], 1).unwrap();
        let mut out = Vec::new();
        open(Trickle(io::Cursor::new(zst)))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"payload");
    }
}
