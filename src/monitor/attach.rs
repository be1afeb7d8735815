//! The monitor's attach socket, `<run-dir>/attach.sock`: how CRI Attach
//! reaches the container's main process.
//!
//! Any number of clients may be attached. Each gets a copy of the output
//! from the moment it connects, as frames: one byte naming the stream
//! ([`STDOUT`] or [`STDERR`]), a 32-bit big-endian length, the bytes. What
//! a client sends is written to the container's stdin, when the container
//! was created with `stdin`. A client that shuts down its sending side has
//! closed its stdin; with `stdin_once` that closes the container's stdin
//! too. When the container's output ends the monitor closes every client.
//! The monitor never blocks on a client: one that does not keep up with
//! the output is disconnected.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// The attach socket's file name inside the run dir.
pub const ATTACH_SOCKET_FILE: &str = "attach.sock";
/// Stream tags of output frames.
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;

/// A short address for `run_dir/attach.sock` (see
/// `control::socket_address`); the returned handle must stay open while the
/// address is used.
pub fn socket_address(run_dir: &Path) -> io::Result<(std::fs::File, PathBuf)> {
    let (dir, control) = super::control::socket_address(run_dir)?;
    Ok((dir, control.with_file_name(ATTACH_SOCKET_FILE)))
}

pub struct AttachServer {
    listener: UnixListener,
    clients: Vec<Client>,
}

struct Client {
    stream: UnixStream,
    /// Still sending stdin.
    reading: bool,
}

/// What reading from the clients produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Input {
    pub data: Vec<u8>,
    /// A client closed its stdin.
    pub stdin_closed: bool,
}

impl AttachServer {
    pub fn bind(run_dir: &Path) -> io::Result<Self> {
        match std::fs::remove_file(run_dir.join(ATTACH_SOCKET_FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let (_dir, short) = socket_address(run_dir)?;
        let listener = UnixListener::bind(&short)?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            listener,
            clients: Vec::new(),
        })
    }

    pub fn listener_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// The fds of clients still sending, in a stable order for
    /// [`Self::read_ready`].
    pub fn client_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.clients
            .iter()
            .filter(|c| c.reading)
            .map(|c| c.stream.as_fd())
            .collect()
    }

    pub fn accept_pending(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_ok() {
                        tracing::info!("attach client connected");
                        self.clients.push(Client {
                            stream,
                            reading: true,
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
    pub fn read_ready(&mut self, ready: &[bool]) -> Input {
        let mut input = Input::default();
        let mut buf = [0u8; 16 * 1024];
        let sending = self.clients.iter_mut().filter(|c| c.reading);
        for (client, _) in sending.zip(ready).filter(|(_, r)| **r) {
            loop {
                match client.stream.read(&mut buf) {
                    Ok(0) => {
                        client.reading = false;
                        input.stdin_closed = true;
                        break;
                    }
                    Ok(n) => input.data.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        client.reading = false;
                        input.stdin_closed = true;
                        break;
                    }
                }
            }
        }
        input
    }

    /// Sends output to every client, dropping those that cannot take it.
    pub fn broadcast(&mut self, stream: u8, data: &[u8]) {
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
    pub fn close_all(&mut self) {
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
pub fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
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
    fn frames_carry_stream_and_length() {
        assert_eq!(frame(STDERR, b"ab"), [2, 0, 0, 0, 2, b'a', b'b']);
    }

    /// Output reaches a connected client; its input and its stdin close
    /// are reported.
    #[test]
    fn clients_get_output_and_send_input() {
        let dir = tempfile::tempdir().unwrap();
        let mut server = AttachServer::bind(dir.path()).unwrap();
        let mut client = UnixStream::connect(dir.path().join(ATTACH_SOCKET_FILE)).unwrap();
        server.accept_pending();
        server.broadcast(STDOUT, b"hello");
        let mut got = [0u8; 10];
        client.read_exact(&mut got).unwrap();
        assert_eq!(got, [1, 0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o']);
        client.write_all(b"in").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut input = Input::default();
        while !input.stdin_closed {
            let fds = server.client_fds().len();
            let part = server.read_ready(&vec![true; fds]);
            input.data.extend(part.data);
            input.stdin_closed |= part.stdin_closed;
        }
        assert_eq!(input.data, b"in");
        server.close_all();
        assert_eq!(client.read(&mut got).unwrap(), 0);
    }
}
