//! The SPDY/3 header compression dictionary (draft 3, section 2.6.10.1):
//! zlib streams of header blocks are primed with it in both directions.
//! It is 65 common header names, each behind its 4-byte big-endian length,
//! then a run of common header values with no separators.

use std::sync::LazyLock;

const NAMES: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

const VALUES: &str = concat!(
    "1001012012022052063003023033043053063074024054064074084094104114124134",
    "14415416417502504505203 Non-Authoritative Information204 No Content301",
    " Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not ",
    "Found500 Internal Server Error501 Not Implemented503 Service Unavailab",
    "leJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, ",
    "Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,imag",
    "e/gif,application/xml,application/xhtml+xml,text/plain,text/javascript",
    ",publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1",
    ",utf-,*,enq=0.",
);

/// The dictionary bytes, built once.
pub(crate) static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut dict = Vec::with_capacity(1423);
    for name in NAMES {
        dict.extend_from_slice(&(name.len() as u32).to_be_bytes());
        dict.extend_from_slice(name.as_bytes());
    }
    dict.extend_from_slice(VALUES.as_bytes());
    dict
});

#[cfg(test)]
mod tests {
    use super::DICTIONARY;

    /// Peers identify the dictionary by its Adler-32 in the zlib header
    /// (FDICT), so one wrong byte breaks every header block.
    #[test]
    fn dictionary_has_the_spec_length_and_checksum() {
        assert_eq!(DICTIONARY.len(), 1423);
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in DICTIONARY.iter() {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }
}
