//! The monitor's attach socket, `<run-dir>/attach.sock`: how CRI Attach
//! reaches the container's main process.
//!
//! Any number of clients may be attached. Each gets a copy of the output
//! from the moment it connects, as frames: one byte naming the stream
//! ([`STDOUT`] or [`STDERR`]), a 32-bit big-endian length, the bytes. A
//! client sends frames of the same layout: [`STDIN`] data goes to the
//! container's stdin (when the container was created with `stdin`),
//! [`RESIZE`] carries the terminal width and height as two big-endian
//! 16-bit numbers (TTY containers). A client that carries stdin says so
//! with a first, possibly empty, [`STDIN`] frame; when it then shuts down
//! its sending side it has closed its stdin, and with `stdin_once` that
//! closes the container's stdin too. Clients without stdin never do. When the container's output ends the monitor closes every client.
//! The monitor never blocks on a client: one that does not keep up with
//! the output is disconnected.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};

use crate::container::run_dir::RunDir;

/// Stream tags of output frames.
pub(crate) const STDOUT: u8 = 1;
pub(crate) const STDERR: u8 = 2;
/// Tags of client frames.
pub(crate) const STDIN: u8 = 0;
pub(crate) const RESIZE: u8 = 4;
/// Largest client frame accepted.
const MAX_FRAME: usize = 1 << 20;

pub(crate) struct AttachServer {
    listener: UnixListener,
    clients: Vec<Client>,
}

struct Client {
    stream: UnixStream,
    /// Still sending stdin.
    reading: bool,
    /// Bytes of a frame not complete yet.
    partial: Vec<u8>,
    /// It sent a STDIN frame: its end is the end of its stdin.
    has_stdin: bool,
}

/// What reading from the clients produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Input {
    pub data: Vec<u8>,
    /// A STDIN frame arrived (even an empty one).
    pub saw_stdin: bool,
    /// The last terminal size asked for, (width, height).
    pub resize: Option<(u16, u16)>,
    /// A client closed its stdin.
    pub stdin_closed: bool,
}

/// Takes the complete frames off the front of `partial` into `input`;
/// false when the client sent something that is not a frame.
fn parse_frames(partial: &mut Vec<u8>, input: &mut Input) -> bool {
    let mut at = 0;
    while partial.len() - at >= 5 {
        let head = &partial[at..at + 5];
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        if len > MAX_FRAME {
            return false;
        }
        if partial.len() - at - 5 < len {
            break;
        }
        let body = &partial[at + 5..at + 5 + len];
        match head[0] {
            STDIN => {
                input.saw_stdin = true;
                input.data.extend_from_slice(body);
            }
            RESIZE if len == 4 => {
                input.resize = Some((
                    u16::from_be_bytes([body[0], body[1]]),
                    u16::from_be_bytes([body[2], body[3]]),
                ))
            }
            _ => return false,
        }
        at += 5 + len;
    }
    partial.drain(..at);
    true
}

impl AttachServer {
    pub(crate) fn bind(run_dir: &RunDir) -> io::Result<Self> {
        match std::fs::remove_file(run_dir.attach_socket()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let short = run_dir.open_short()?;
        let listener = UnixListener::bind(short.attach_socket())?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            clients: Vec::new(),
        })
    }

    pub(crate) fn listener_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// The fds of clients still sending, in a stable order for
    /// [`Self::read_ready`].
    pub(crate) fn client_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.clients
            .iter()
            .filter(|c| c.reading)
            .map(|c| c.stream.as_fd())
            .collect()
    }

    pub(crate) fn accept_pending(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_ok() {
                        tracing::info!("attach client connected");
                        self.clients.push(Client {
                            stream,
                            reading: true,
                            partial: Vec::new(),
                            has_stdin: false,
                        });
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Reads from the sending clients whose entries in `ready` (parallel to
    /// [`Self::client_fds`]) are set.
    pub(crate) fn read_ready(&mut self, ready: &[bool]) -> Input {
        let mut input = Input::default();
        let mut buf = [0u8; 16 * 1024];
        let sending = self.clients.iter_mut().filter(|c| c.reading);
        for (client, _) in sending.zip(ready).filter(|(_, r)| **r) {
            loop {
                match client.stream.read(&mut buf) {
                    Ok(0) => {
                        client.reading = false;
                        input.stdin_closed |= client.has_stdin;
                        break;
                    }
                    Ok(n) => {
                        client.partial.extend_from_slice(&buf[..n]);
                        input.saw_stdin = false;
                        let ok = parse_frames(&mut client.partial, &mut input);
                        client.has_stdin |= input.saw_stdin;
                        if !ok {
                            tracing::warn!(
                                head = ?&client.partial[..client.partial.len().min(16)],
                                "an attach client sent a malformed frame"
                            );
                            client.reading = false;
                            input.stdin_closed = true;
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        client.reading = false;
                        input.stdin_closed |= client.has_stdin;
                        break;
                    }
                }
            }
        }
        input
    }

    /// Sends output to every client, dropping those that cannot take it.
    pub(crate) fn broadcast(&mut self, stream: u8, data: &[u8]) {
        if self.clients.is_empty() {
            return;
        }
        let frame = frame(stream, data);
        self.clients.retain_mut(|c| {
            let ok = write_nonblocking(&mut c.stream, &frame);
            if !ok {
                tracing::warn!("dropping an attach client that does not keep up");
            }
            ok
        });
    }

    /// Disconnects everyone: the container's output has ended.
    pub(crate) fn close_all(&mut self) {
        self.clients.clear();
    }
}

/// Writes all of `data` or reports failure; a full socket buffer counts
/// as failure after a short grace, so the monitor never stalls.
fn write_nonblocking(stream: &mut UnixStream, mut data: &[u8]) -> bool {
    let mut stalls = 0;
    while !data.is_empty() {
        match stream.write(data) {
            Ok(0) => return false,
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && stalls < 50 => {
                stalls += 1;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(_) => return false,
        }
    }
    true
}

/// One output frame.
pub(crate) fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(data.len() + 5);
    f.push(stream);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_may_arrive_in_pieces() {
        let mut partial = frame(STDIN, b"abc");
        let rest = partial.split_off(4);
        let mut input = Input::default();
        assert!(parse_frames(&mut partial, &mut input));
        assert!(input.data.is_empty());
        partial.extend_from_slice(&rest);
        assert!(parse_frames(&mut partial, &mut input));
        assert_eq!(input.data, b"abc");
        assert!(partial.is_empty());
        assert!(!parse_frames(&mut vec![9, 0, 0, 0, 0], &mut input));
    }

    #[test]
    fn frames_carry_stream_and_length() {
        assert_eq!(frame(STDERR, b"ab"), [2, 0, 0, 0, 2, b'a', b'b']);
    }

    /// Output reaches a connected client; its input and its stdin close
    /// are reported.
    #[test]
    fn clients_get_output_and_send_input() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::at(tmp.path());
        let mut server = AttachServer::bind(&dir).unwrap();
        let mut client = UnixStream::connect(dir.attach_socket()).unwrap();
        server.accept_pending();
        server.broadcast(STDOUT, b"hello");
        let mut got = [0u8; 10];
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, [1, 0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o']);
        client.write_all(&frame(STDIN, b"in")).unwrap();
        client
            .write_all(&[RESIZE, 0, 0, 0, 4, 0, 80, 0, 24])
            .unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut input = Input::default();
        while !input.stdin_closed {
            let fds = server.client_fds().len();
            let part = server.read_ready(&vec![true; fds]);
            input.data.extend(part.data);
            input.resize = part.resize.or(input.resize);
            input.stdin_closed |= part.stdin_closed;
        }
        assert_eq!(input.data, b"in");
        assert_eq!(input.resize, Some((80, 24)));
        server.close_all();
        assert_eq!(client.read(&mut got).unwrap(), 0);
    }
}
