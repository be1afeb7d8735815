//! SPDY/3 header blocks: the name/value layout and its zlib compression.
//!
//! Each direction of a session is one zlib stream primed with the SPDY
//! dictionary; every header block is flushed with a sync flush so the peer
//! can decode it on its own, while the dictionary and history carry over
//! from block to block. So the compressor and decompressor live as long as
//! the session, one of each.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::DICTIONARY;
use super::SpdyError;

/// Header names and values, names lowercase as SPDY/3 requires. Multiple
/// values of one name travel NUL-separated in one value.
pub(crate) type Headers = Vec<(String, String)>;

/// Most header pairs and bytes a peer may send in one block.
const MAX_PAIRS: u32 = 1000;
const MAX_BLOCK: usize = 1 << 20;

/// Looks a header up by name (ASCII case-insensitive).
pub(crate) fn get<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The uncompressed block: pair count, then each name and value behind a
/// 32-bit big-endian length.
pub(crate) fn encode_block(headers: &Headers) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

pub(crate) fn decode_block(mut block: &[u8]) -> Result<Headers, SpdyError> {
    fn take<'a>(block: &mut &'a [u8], n: usize) -> Result<&'a [u8], SpdyError> {
        if block.len() < n {
            return Err(SpdyError::Protocol("truncated header block"));
        }
        let (head, rest) = block.split_at(n);
        *block = rest;
        Ok(head)
    }
    fn len(block: &mut &[u8]) -> Result<usize, SpdyError> {
        let b = take(block, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    let count = len(&mut block)?;
    if count as u32 > MAX_PAIRS {
        return Err(SpdyError::Protocol("too many headers"));
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let n = len(&mut block)?;
        let name = take(&mut block, n)?;
        let n = len(&mut block)?;
        let value = take(&mut block, n)?;
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        headers.push((name, String::from_utf8_lossy(value).into_owned()));
    }
    Ok(headers)
}

/// The compressing side of a session.
pub struct Compressor(Compress);

impl Default for Compressor {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for Decompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl Compressor {
    pub fn new() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(&DICTIONARY)
            .expect("a fresh deflate stream takes a dictionary");
        Self(z)
    }

    pub fn compress(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let input = encode_block(headers);
        let mut out = Vec::with_capacity(input.len() + 64);
        let mut consumed = 0;
        loop {
            let before = self.0.total_in();
            out.reserve(256);
            self.0
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|_| SpdyError::Protocol("header compression failed"))?;
            consumed += (self.0.total_in() - before) as usize;
            // A sync flush is complete once all input is in and zlib left
            // spare room in the output.
            if consumed == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The decompressing side of a session.
pub struct Decompressor(Decompress);

impl Decompressor {
    pub fn new() -> Self {
        Self(Decompress::new(true))
    }

    pub fn decompress(&mut self, input: &[u8]) -> Result<Headers, SpdyError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let mut consumed = 0;
        loop {
            let before = self.0.total_in();
            out.reserve(1024);
            let status = self
                .0
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync);
            consumed += (self.0.total_in() - before) as usize;
            match status {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.0
                        .set_dictionary(&DICTIONARY)
                        .map_err(|_| SpdyError::Protocol("peer uses another dictionary"))?;
                    continue;
                }
                Err(_) => return Err(SpdyError::Protocol("corrupt header block")),
            }
            if out.len() > MAX_BLOCK {
                return Err(SpdyError::Protocol("header block too large"));
            }
            if consumed == input.len() && out.len() < out.capacity() {
                break;
            }
        }
        decode_block(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn block_layout_is_counted_length_prefixed_pairs() {
        let block = encode_block(&h(&[("streamtype", "error")]));
        let mut want = vec![0, 0, 0, 1, 0, 0, 0, 10];
        want.extend_from_slice(b"streamtype");
        want.extend_from_slice(&[0, 0, 0, 5]);
        want.extend_from_slice(b"error");
        assert_eq!(block, want);
        assert_eq!(decode_block(&want).unwrap(), h(&[("streamtype", "error")]));
    }

    #[test]
    fn truncated_block_is_an_error() {
        assert!(decode_block(&[0, 0, 0, 1, 0, 0, 0, 10, b's']).is_err());
    }

    /// Blocks share one zlib stream: the second block decodes only with
    /// the first one's history, as the peer's decompressor sees it.
    #[test]
    fn compressed_blocks_round_trip_in_sequence() {
        let mut c = Compressor::new();
        let mut d = Decompressor::new();
        let first = h(&[("streamtype", "stdout"), ("port", "80")]);
        let second = h(&[("streamtype", "stderr"), ("requestid", "7")]);
        let a = c.compress(&first).unwrap();
        let b = c.compress(&second).unwrap();
        // A zlib header with FDICT set, naming the SPDY dictionary.
        assert_eq!(a[1] & 0x20, 0x20);
        assert_eq!(&a[2..6], &[0xe3, 0xc6, 0xa7, 0xc2]);
        assert_eq!(d.decompress(&a).unwrap(), first);
        assert_eq!(d.decompress(&b).unwrap(), second);
    }

    #[test]
    fn lookup_ignores_case() {
        let headers = h(&[("streamtype", "data")]);
        assert_eq!(get(&headers, "streamType"), Some("data"));
        assert_eq!(get(&headers, "port"), None);
    }
}
