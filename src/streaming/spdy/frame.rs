//! SPDY/3 frames and their wire layout.
//!
//! Every frame starts with 8 bytes. A control frame: the control bit set,
//! a 15-bit version (3), a 16-bit type, 8 bits of flags and a 24-bit
//! length. A data frame: the control bit clear, a 31-bit stream ID, 8 bits
//! of flags and a 24-bit length. The payload follows.

use bytes::Bytes;

use super::headers::{Compressor, Decompressor, Headers};
use super::SpdyError;

pub(crate) const VERSION: u16 = 3;
pub(crate) const FLAG_FIN: u8 = 0x01;
/// Largest payload a frame can carry (24-bit length).
pub(crate) const MAX_LENGTH: usize = (1 << 24) - 1;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes used here.
pub(crate) const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_REFUSED_STREAM: u32 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_id: u32,
        priority: u8,
        fin: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    /// (flags, id, value) entries.
    Settings(Vec<(u8, u32, u32)>),
    Ping(u32),
    GoAway {
        last_good_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
}

/// The 8-byte frame header, as read before the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHead {
    /// `Some(type)` for control frames, `None` for data frames.
    pub control: Option<u16>,
    /// Version for control frames, stream ID for data frames.
    pub version_or_stream: u32,
    pub flags: u8,
    pub length: usize,
}

impl FrameHead {
    pub fn parse(b: [u8; 8]) -> Self {
        let first = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let length = u32::from_be_bytes([0, b[5], b[6], b[7]]) as usize;
        if first & 0x8000_0000 != 0 {
            Self {
                control: Some((first & 0xffff) as u16),
                version_or_stream: (first >> 16) & 0x7fff,
                flags: b[4],
                length,
            }
        } else {
            Self {
                control: None,
                version_or_stream: first,
                flags: b[4],
                length,
            }
        }
    }
}

fn u32_at(p: &[u8], at: usize) -> Result<u32, SpdyError> {
    p.get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(SpdyError::Protocol("control frame too short"))
}

/// Decodes one frame from its head and payload. Header blocks go through
/// the session's decompressor, which must see every block in order.
/// Unknown control frame types give `Ok(None)`: SPDY says to ignore them.
pub fn decode(
    head: FrameHead,
    payload: Bytes,
    inflate: &mut Decompressor,
) -> Result<Option<Frame>, SpdyError> {
    let Some(kind) = head.control else {
        return Ok(Some(Frame::Data {
            stream_id: head.version_or_stream & 0x7fff_ffff,
            fin: head.flags & FLAG_FIN != 0,
            data: payload,
        }));
    };
    if head.version_or_stream != u32::from(VERSION) {
        return Err(SpdyError::Protocol("unsupported SPDY version"));
    }
    let fin = head.flags & FLAG_FIN != 0;
    let p = &payload[..];
    let frame = match kind {
        SYN_STREAM => {
            if p.len() < 10 {
                return Err(SpdyError::Protocol("SYN_STREAM too short"));
            }
            Frame::SynStream {
                stream_id: u32_at(p, 0)? & 0x7fff_ffff,
                associated_id: u32_at(p, 4)? & 0x7fff_ffff,
                priority: p[8] >> 5,
                fin,
                headers: inflate.decompress(&p[10..])?,
            }
        }
        SYN_REPLY => Frame::SynReply {
            stream_id: u32_at(p, 0)? & 0x7fff_ffff,
            fin,
            headers: inflate.decompress(&p[4..])?,
        },
        HEADERS => Frame::Headers {
            stream_id: u32_at(p, 0)? & 0x7fff_ffff,
            fin,
            headers: inflate.decompress(&p[4..])?,
        },
        RST_STREAM => Frame::RstStream {
            stream_id: u32_at(p, 0)? & 0x7fff_ffff,
            status: u32_at(p, 4)?,
        },
        SETTINGS => {
            let count = u32_at(p, 0)? as usize;
            let mut entries = Vec::new();
            for i in 0..count {
                let at = 4 + i * 8;
                let id_word = u32_at(p, at)?;
                entries.push((
                    (id_word >> 24) as u8,
                    id_word & 0xff_ffff,
                    u32_at(p, at + 4)?,
                ));
            }
            Frame::Settings(entries)
        }
        PING => Frame::Ping(u32_at(p, 0)?),
        GOAWAY => Frame::GoAway {
            last_good_id: u32_at(p, 0)? & 0x7fff_ffff,
            status: u32_at(p, 4).unwrap_or(0),
        },
        WINDOW_UPDATE => Frame::WindowUpdate {
            stream_id: u32_at(p, 0)? & 0x7fff_ffff,
            delta: u32_at(p, 4)? & 0x7fff_ffff,
        },
        _ => return Ok(None),
    };
    Ok(Some(frame))
}

fn control(kind: u16, flags: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(
        &(0x8000_0000 | (u32::from(VERSION) << 16) | u32::from(kind)).to_be_bytes(),
    );
    out.extend_from_slice(&((u32::from(flags) << 24) | payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

fn fin_flag(fin: bool) -> u8 {
    if fin {
        FLAG_FIN
    } else {
        0
    }
}

/// Appends the wire form of `frame` to `out`. Header blocks go through the
/// session's compressor, which must see every block in order.
pub fn encode(frame: &Frame, deflate: &mut Compressor, out: &mut Vec<u8>) -> Result<(), SpdyError> {
    match frame {
        Frame::Data {
            stream_id,
            fin,
            data,
        } => {
            if data.len() > MAX_LENGTH {
                return Err(SpdyError::Protocol("data frame too large"));
            }
            out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
            out.extend_from_slice(
                &((u32::from(fin_flag(*fin)) << 24) | data.len() as u32).to_be_bytes(),
            );
            out.extend_from_slice(data);
        }
        Frame::SynStream {
            stream_id,
            associated_id,
            priority,
            fin,
            headers,
        } => {
            let mut p = Vec::new();
            p.extend_from_slice(&stream_id.to_be_bytes());
            p.extend_from_slice(&associated_id.to_be_bytes());
            p.push(priority << 5);
            p.push(0);
            p.extend_from_slice(&deflate.compress(headers)?);
            control(SYN_STREAM, fin_flag(*fin), &p, out);
        }
        Frame::SynReply {
            stream_id,
            fin,
            headers,
        } => {
            let mut p = stream_id.to_be_bytes().to_vec();
            p.extend_from_slice(&deflate.compress(headers)?);
            control(SYN_REPLY, fin_flag(*fin), &p, out);
        }
        Frame::Headers {
            stream_id,
            fin,
            headers,
        } => {
            let mut p = stream_id.to_be_bytes().to_vec();
            p.extend_from_slice(&deflate.compress(headers)?);
            control(HEADERS, fin_flag(*fin), &p, out);
        }
        Frame::RstStream { stream_id, status } => {
            let mut p = stream_id.to_be_bytes().to_vec();
            p.extend_from_slice(&status.to_be_bytes());
            control(RST_STREAM, 0, &p, out);
        }
        Frame::Settings(entries) => {
            let mut p = (entries.len() as u32).to_be_bytes().to_vec();
            for (flags, id, value) in entries {
                p.extend_from_slice(&((u32::from(*flags) << 24) | (id & 0xff_ffff)).to_be_bytes());
                p.extend_from_slice(&value.to_be_bytes());
            }
            control(SETTINGS, 0, &p, out);
        }
        Frame::Ping(id) => control(PING, 0, &id.to_be_bytes(), out),
        Frame::GoAway {
            last_good_id,
            status,
        } => {
            let mut p = last_good_id.to_be_bytes().to_vec();
            p.extend_from_slice(&status.to_be_bytes());
            control(GOAWAY, 0, &p, out);
        }
        Frame::WindowUpdate { stream_id, delta } => {
            let mut p = stream_id.to_be_bytes().to_vec();
            p.extend_from_slice(&delta.to_be_bytes());
            control(WINDOW_UPDATE, 0, &p, out);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RST_STREAM's CANCEL status, only sent by these tests.
    const RST_CANCEL: u32 = 5;

    fn round_trip(frame: Frame) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&frame, &mut Compressor::new(), &mut out).unwrap();
        let head = FrameHead::parse(out[..8].try_into().unwrap());
        assert_eq!(head.length, out.len() - 8);
        let back = decode(
            head,
            Bytes::copy_from_slice(&out[8..]),
            &mut Decompressor::new(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(back, frame);
        out
    }

    #[test]
    fn data_frame_layout() {
        let wire = round_trip(Frame::Data {
            stream_id: 5,
            fin: true,
            data: Bytes::from_static(b"hi"),
        });
        assert_eq!(wire, [0, 0, 0, 5, 0x01, 0, 0, 2, b'h', b'i']);
    }

    #[test]
    fn ping_layout() {
        let wire = round_trip(Frame::Ping(7));
        assert_eq!(wire, [0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 7]);
    }

    #[test]
    fn rst_stream_layout() {
        let wire = round_trip(Frame::RstStream {
            stream_id: 3,
            status: RST_CANCEL,
        });
        assert_eq!(wire, [0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 3, 0, 0, 0, 5]);
    }

    #[test]
    fn goaway_layout() {
        let wire = round_trip(Frame::GoAway {
            last_good_id: 9,
            status: 0,
        });
        assert_eq!(wire, [0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 0]);
    }

    #[test]
    fn window_update_layout() {
        let wire = round_trip(Frame::WindowUpdate {
            stream_id: 1,
            delta: 65536,
        });
        assert_eq!(wire, [0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 1, 0, 1, 0, 0]);
    }

    #[test]
    fn settings_layout() {
        let wire = round_trip(Frame::Settings(vec![(0, 7, 65536)]));
        assert_eq!(
            wire,
            [0x80, 3, 0, 4, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 7, 0, 1, 0, 0]
        );
    }

    #[test]
    fn syn_stream_layout() {
        let wire = round_trip(Frame::SynStream {
            stream_id: 1,
            associated_id: 0,
            priority: 2,
            fin: false,
            headers: vec![("streamtype".into(), "error".into())],
        });
        assert_eq!(&wire[..4], &[0x80, 3, 0, 1]);
        assert_eq!(&wire[8..16], &[0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(wire[16], 2 << 5);
        assert_eq!(wire[17], 0);
    }

    #[test]
    fn syn_reply_layout() {
        let wire = round_trip(Frame::SynReply {
            stream_id: 3,
            fin: true,
            headers: vec![],
        });
        assert_eq!(&wire[..5], &[0x80, 3, 0, 2, FLAG_FIN]);
        assert_eq!(&wire[8..12], &[0, 0, 0, 3]);
    }

    #[test]
    fn other_versions_are_refused_and_unknown_types_skipped() {
        let head = FrameHead::parse([0x80, 2, 0, 6, 0, 0, 0, 4]);
        assert!(decode(head, Bytes::from_static(&[0; 4]), &mut Decompressor::new()).is_err());
        let head = FrameHead::parse([0x80, 3, 0, 0x42, 0, 0, 0, 0]);
        assert_eq!(
            decode(head, Bytes::new(), &mut Decompressor::new()).unwrap(),
            None
        );
    }
}
