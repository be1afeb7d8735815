//! The CRI container log writer.
//!
//! Each line a container writes becomes
//! `<RFC3339Nano UTC> <stdout|stderr> <F|P> <text>\n`. Partial lines are
//! buffered per stream until their newline arrives; a line longer than
//! `max_line` bytes is written as `P` chunks of exactly `max_line` bytes
//! followed by a final `F` chunk. Only the `\n` is removed: a `\r` before it
//! stays in the text, as containerd keeps it.
//!
//! At EOF ([`LogWriter::finish`]) a trailing line without a newline is
//! written as `P`, as containerd does: the kubelet then prints exactly the
//! bytes the container wrote, without inventing a newline.
//!
//! The kubelet rotates the file by renaming it and then asking for a reopen
//! ([`LogWriter::reopen`]), after which lines go to a new file at the same
//! path. Without a path everything is discarded.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::timestamp::rfc3339_nano;

/// The kubelet's and containerd's default maximum line size.
pub const DEFAULT_MAX_LINE: usize = 16 * 1024;

/// Which of the container's output streams a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn tag(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum LogError {
    #[error("cannot open container log {path:?}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write container log {path:?}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Writes a container's two output streams to one CRI log file.
pub(super) struct LogWriter {
    path: Option<PathBuf>,
    file: Option<File>,
    max_line: usize,
    /// The unterminated tail of each stream (indexed by [`Stream::index`]).
    pending: [Vec<u8>; 2],
}

impl LogWriter {
    /// Opens (creating, appending) `path`; `None` or an empty path discards
    /// all output. `max_line` is clamped to at least one byte.
    pub(super) fn open(path: Option<&Path>, max_line: usize) -> Result<Self, LogError> {
        let path = path
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf);
        let file = match &path {
            Some(p) => Some(open_log(p)?),
            None => None,
        };
        Ok(Self {
            path,
            file,
            max_line: max_line.max(1),
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Logs `bytes` read from `stream`: every completed line is written now,
    /// the unterminated rest is kept for the next chunk (or written as `P`
    /// chunks once it exceeds the maximum line size).
    pub(super) fn write_chunk(&mut self, stream: Stream, bytes: &[u8]) -> Result<(), LogError> {
        let ts = rfc3339_nano(SystemTime::now());
        let max = self.max_line;
        let pending = &mut self.pending[stream.index()];
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            pending.extend_from_slice(&rest[..pos]);
            format_line(&mut out, &ts, stream, pending, max, true);
            pending.clear();
            rest = &rest[pos + 1..];
        }
        pending.extend_from_slice(rest);
        if pending.len() > max {
            // Everything but the last (1..=max) bytes goes out as P chunks;
            // the rest may still end with a newline and become an F line.
            let keep = (pending.len() - 1) % max + 1;
            let split = pending.len() - keep;
            format_line(&mut out, &ts, stream, &pending[..split], max, false);
            pending.drain(..split);
        }
        self.write_out(&out)
    }

    /// Writes any unterminated line of both streams as `P` (end of output).
    pub(super) fn finish(&mut self) -> Result<(), LogError> {
        let ts = rfc3339_nano(SystemTime::now());
        let mut out = Vec::new();
        for stream in [Stream::Stdout, Stream::Stderr] {
            let pending = std::mem::take(&mut self.pending[stream.index()]);
            if !pending.is_empty() {
                format_line(&mut out, &ts, stream, &pending, self.max_line, false);
            }
        }
        self.write_out(&out)
    }

    /// Reopens the log path (after the kubelet renamed the old file away).
    /// Buffered partial lines are kept and land in the new file.
    pub(super) fn reopen(&mut self) -> Result<(), LogError> {
        if let Some(path) = &self.path {
            self.file = Some(open_log(path)?);
        }
        Ok(())
    }

    fn write_out(&mut self, out: &[u8]) -> Result<(), LogError> {
        match (&mut self.file, &self.path) {
            (Some(file), Some(path)) if !out.is_empty() => {
                file.write_all(out).map_err(|source| LogError::Write {
                    path: path.clone(),
                    source,
                })
            }
            _ => Ok(()),
        }
    }
}

fn open_log(path: &Path) -> Result<File, LogError> {
    // std opens with O_CLOEXEC; 0640 as containerd creates log files.
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|source| LogError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// Appends `text` as CRI records: `P` chunks of `max` bytes while more than
/// `max` bytes remain, then the rest as `F` (when `full`) or `P`.
fn format_line(out: &mut Vec<u8>, ts: &str, stream: Stream, text: &[u8], max: usize, full: bool) {
    let mut rest = text;
    while rest.len() > max {
        record(out, ts, stream, 'P', &rest[..max]);
        rest = &rest[max..];
    }
    if full {
        record(out, ts, stream, 'F', rest);
    } else if !rest.is_empty() {
        record(out, ts, stream, 'P', rest);
    }
}

fn record(out: &mut Vec<u8>, ts: &str, stream: Stream, tag: char, text: &[u8]) {
    out.extend_from_slice(ts.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.tag().as_bytes());
    out.push(b' ');
    out.push(tag as u8);
    out.push(b' ');
    out.extend_from_slice(text);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The (stream, tag, text) of every record, after checking each
    /// timestamp has the RFC3339Nano UTC shape.
    fn records(path: &Path) -> Vec<(String, String, String)> {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines()
            .map(|line| {
                let mut parts = line.splitn(4, ' ');
                let ts = parts.next().unwrap();
                assert!(
                    ts.len() >= 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
                    "bad timestamp in {line:?}"
                );
                let stream = parts.next().unwrap().to_owned();
                let tag = parts.next().unwrap().to_owned();
                let msg = parts.next().unwrap_or_default().to_owned();
                (stream, tag, msg)
            })
            .collect()
    }

    fn rec(stream: &str, tag: &str, msg: &str) -> (String, String, String) {
        (stream.into(), tag.into(), msg.into())
    }

    fn writer(max: usize) -> (tempfile::TempDir, PathBuf, LogWriter) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let w = LogWriter::open(Some(&path), max).unwrap();
        (dir, path, w)
    }

    #[test]
    fn complete_lines_are_full_records() {
        let (_d, path, mut w) = writer(DEFAULT_MAX_LINE);
        w.write_chunk(Stream::Stdout, b"one\ntwo\n\nthree").unwrap();
        assert_eq!(
            records(&path),
            vec![
                rec("stdout", "F", "one"),
                rec("stdout", "F", "two"),
                rec("stdout", "F", "")
            ]
        );
        w.write_chunk(Stream::Stdout, b" and more\n").unwrap();
        assert_eq!(records(&path)[3], rec("stdout", "F", "three and more"));
    }

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let (_d, path, mut w) = writer(DEFAULT_MAX_LINE);
        for chunk in [&b"he"[..], b"llo wo", b"rld\nbye", b"\n"] {
            w.write_chunk(Stream::Stdout, chunk).unwrap();
        }
        assert_eq!(
            records(&path),
            vec![rec("stdout", "F", "hello world"), rec("stdout", "F", "bye")]
        );
    }

    #[test]
    fn crlf_keeps_the_carriage_return() {
        let (_d, path, mut w) = writer(DEFAULT_MAX_LINE);
        w.write_chunk(Stream::Stderr, b"dos\r\n").unwrap();
        let raw = std::fs::read_to_string(&path).unwrap();
        assert!(raw.ends_with(" stderr F dos\r\n"), "{raw:?}");
    }

    #[test]
    fn long_lines_become_partial_chunks_then_full() {
        let (_d, path, mut w) = writer(4);
        w.write_chunk(Stream::Stdout, b"abcdefghij\n").unwrap();
        w.write_chunk(Stream::Stdout, b"1234\n").unwrap();
        w.write_chunk(Stream::Stdout, b"12345678\n").unwrap();
        assert_eq!(
            records(&path),
            vec![
                rec("stdout", "P", "abcd"),
                rec("stdout", "P", "efgh"),
                rec("stdout", "F", "ij"),
                rec("stdout", "F", "1234"),
                rec("stdout", "P", "1234"),
                rec("stdout", "F", "5678"),
            ]
        );
    }

    #[test]
    fn unterminated_long_output_is_flushed_without_waiting_for_newline() {
        let (_d, path, mut w) = writer(4);
        w.write_chunk(Stream::Stdout, b"abcdefghij").unwrap();
        // Everything but the last chunk's worth is out already.
        assert_eq!(
            records(&path),
            vec![rec("stdout", "P", "abcd"), rec("stdout", "P", "efgh")]
        );
        w.write_chunk(Stream::Stdout, b"kl\n").unwrap();
        assert_eq!(records(&path)[2], rec("stdout", "F", "ijkl"));
        w.write_chunk(Stream::Stdout, b"abcd").unwrap();
        assert_eq!(
            records(&path).len(),
            3,
            "exactly max bytes may still end in F"
        );
        w.write_chunk(Stream::Stdout, b"\n").unwrap();
        assert_eq!(records(&path)[3], rec("stdout", "F", "abcd"));
    }

    #[test]
    fn streams_interleave_without_mixing_partial_lines() {
        let (_d, path, mut w) = writer(DEFAULT_MAX_LINE);
        w.write_chunk(Stream::Stdout, b"out-").unwrap();
        w.write_chunk(Stream::Stderr, b"err-").unwrap();
        w.write_chunk(Stream::Stderr, b"line\n").unwrap();
        w.write_chunk(Stream::Stdout, b"line\n").unwrap();
        assert_eq!(
            records(&path),
            vec![
                rec("stderr", "F", "err-line"),
                rec("stdout", "F", "out-line")
            ]
        );
    }

    #[test]
    fn finish_writes_trailing_partial_lines_as_partial() {
        let (_d, path, mut w) = writer(DEFAULT_MAX_LINE);
        w.write_chunk(Stream::Stdout, b"done\nno newline").unwrap();
        w.write_chunk(Stream::Stderr, b"oops").unwrap();
        w.finish().unwrap();
        assert_eq!(
            records(&path),
            vec![
                rec("stdout", "F", "done"),
                rec("stdout", "P", "no newline"),
                rec("stderr", "P", "oops"),
            ]
        );
        w.finish().unwrap();
        assert_eq!(records(&path).len(), 3, "finish twice writes nothing more");
    }

    #[test]
    fn reopen_after_rename_writes_to_a_new_file() {
        let (dir, path, mut w) = writer(DEFAULT_MAX_LINE);
        w.write_chunk(Stream::Stdout, b"before\nhalf ").unwrap();
        let rotated = dir.path().join("0.log.20240101");
        std::fs::rename(&path, &rotated).unwrap();
        w.write_chunk(Stream::Stdout, b"still old\n").unwrap();
        w.reopen().unwrap();
        w.write_chunk(Stream::Stdout, b"after\n").unwrap();
        assert_eq!(
            records(&rotated),
            vec![
                rec("stdout", "F", "before"),
                rec("stdout", "F", "half still old")
            ]
        );
        assert_eq!(records(&path), vec![rec("stdout", "F", "after")]);
    }

    #[test]
    fn no_path_or_empty_path_discards() {
        for path in [None, Some(Path::new(""))] {
            let mut w = LogWriter::open(path, DEFAULT_MAX_LINE).unwrap();
            w.write_chunk(Stream::Stdout, b"gone\n").unwrap();
            w.reopen().unwrap();
            w.finish().unwrap();
        }
    }

    #[test]
    fn unopenable_path_is_an_error_naming_it() {
        let err = LogWriter::open(Some(Path::new("/nonexistent-dir/x.log")), 10)
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent-dir/x.log"), "{err}");
    }
}
