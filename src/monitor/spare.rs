//! `pvecri-helper monitor-spare`: a monitor started before its container.
//!
//! Starting a monitor costs the daemon a fork, an exec of the helper with
//! liblxc and its libraries, and the detach's double fork: about 3 ms of
//! every CreateContainer on a small node. The daemon therefore keeps a few
//! spares (`crate::runtime::spares`): each detaches at once, says
//! `ready <pid>` on its socket (one end of a `SOCK_SEQPACKET` pair the
//! daemon holds the other end of) and waits. CreateContainer sends one
//! [`Assignment`]: the monitor's arguments and, as `SCM_RIGHTS`, the write
//! end of the readiness pipe. From then on the spare is that container's
//! monitor: it takes on the command line a freshly started monitor would
//! have ([`super::proctitle`]), so everything that finds monitors by it
//! sees no difference, and runs exactly as one ([`super::run`]).
//!
//! A spare ends without a trace when its socket reaches end of file: the
//! daemon stopped, died or shrank its pool.

use std::ffi::OsString;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Parser;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use super::detach::{self, Role};
use super::{proctitle, MonitorArgs};

/// The largest assignment message (a monitor's arguments are paths and an
/// ID: a few hundred bytes).
pub(crate) const MAX_MESSAGE: usize = 64 * 1024;

/// `pvecri-helper monitor-spare` arguments.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct SpareArgs {
    /// liblxc's lxcpath of the daemon that keeps this spare (the census
    /// tells spares of different daemons apart by it).
    #[arg(long, value_name = "DIR")]
    pub lxcpath: PathBuf,
    /// The inherited fd of the spare's end of the daemon's socket pair.
    #[arg(long, value_name = "FD")]
    pub socket_fd: i32,
}

impl SpareArgs {
    /// The subcommand's name on the `pvecri-helper` command line.
    pub const VERB: &'static str = "monitor-spare";

    /// The arguments after the program name (the verb first).
    pub fn to_args(&self) -> Vec<OsString> {
        vec![
            Self::VERB.into(),
            "--lxcpath".into(),
            self.lxcpath.clone().into(),
            "--socket-fd".into(),
            self.socket_fd.to_string().into(),
        ]
    }
}

/// What the daemon sends a spare: the monitor's command line (without a
/// ready fd: the pipe end travels with the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub args: MonitorArgs,
}

impl Assignment {
    /// The message bytes: [`MonitorArgs::to_args`], each argument ended by
    /// a NUL (as in `/proc/<pid>/cmdline`).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for arg in self.args.to_args() {
            out.extend_from_slice(arg.as_bytes());
            out.push(0);
        }
        out
    }

    /// Parses a message with the monitor's own argument parser.
    pub fn decode(bytes: &[u8]) -> anyhow::Result<Self> {
        let Some(body) = bytes.strip_suffix(&[0]) else {
            bail!("the assignment does not end with a NUL");
        };
        let argv: Vec<OsString> = body
            .split(|b| *b == 0)
            .map(|a| OsString::from_vec(a.to_vec()))
            .collect();
        if argv.first().map(|v| v.as_bytes()) != Some(MonitorArgs::VERB.as_bytes()) {
            bail!("the assignment is not a monitor command line");
        }
        // The verb stands where clap expects the program name.
        let parsed = AssignedCli::try_parse_from(argv).context("bad monitor arguments")?;
        if parsed.args.ready_fd.is_some() {
            bail!("an assignment carries its ready fd as SCM_RIGHTS, not as a number");
        }
        Ok(Self { args: parsed.args })
    }

    /// Sends the assignment and the ready pipe's write end on `socket`.
    pub fn send(&self, socket: impl AsFd, ready: impl AsFd) -> nix::Result<()> {
        let bytes = self.encode();
        let fds = [ready.as_fd().as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let iov = [std::io::IoSlice::new(&bytes)];
        let sent = sendmsg::<()>(
            socket.as_fd().as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        if sent != bytes.len() {
            // A SOCK_SEQPACKET message goes whole or not at all.
            return Err(nix::errno::Errno::EMSGSIZE);
        }
        Ok(())
    }
}

/// A daemon's and a spare's ends of a new socket pair (message-preserving,
/// both close-on-exec).
pub fn socket_pair() -> nix::Result<(OwnedFd, OwnedFd)> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

#[derive(Parser)]
struct AssignedCli {
    #[command(flatten)]
    args: MonitorArgs,
}

/// `pvecri-helper monitor-spare`: returns in the launcher once the spare is
/// detached, and in the spare when its container is gone (or its socket
/// ended without one).
pub(crate) fn run(args: SpareArgs) -> anyhow::Result<ExitCode> {
    super::run::set_signals()?;
    let socket = super::run::take_inherited_fd("--socket-fd", args.socket_fd)?;
    match detach::detach(None)? {
        Role::Launcher(code) => return Ok(code),
        Role::Monitor => {}
    }
    let _ = std::env::set_current_dir("/");
    detach::quiet_stdio()?;
    // Proves, before the daemon counts on this spare, that it can take a
    // monitor's command line later.
    proctitle::set(&own_argv(args.to_args())).context("cannot set the command line")?;
    let pid = nix::unistd::getpid();
    let hello = format!("ready {pid}\n");
    sendmsg::<()>(
        socket.as_raw_fd(),
        &[std::io::IoSlice::new(hello.as_bytes())],
        &[],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .context("cannot tell the daemon the spare is ready")?;
    // Started at idle priority (it must not slow a start while it comes
    // up), it waits for its container at the normal one: an idle-policy
    // task that wakes never preempts a running one, so the hand-over
    // would wait for whatever runs on the CPU to block or use up its
    // slice. From here on it is a container's monitor like any other.
    leave_idle_priority();
    let Some((bytes, ready)) = receive(&socket)? else {
        return Ok(ExitCode::SUCCESS);
    };
    // The socket is the daemon's business only; the container must not
    // find it (the starter closes every fd, this is belt and braces).
    drop(socket);
    let mut ready = Some(super::ready::ReadyFd::new(ready));
    let decoded = Assignment::decode(&bytes);
    // Freed before the monitor's heap trim: a receive buffer kept for the
    // container's life costs every spare-born monitor (and its starter's
    // copy) the pages it touched, which measured 75 KiB of PSS a pod.
    drop(bytes);
    let assignment = match decoded {
        Ok(a) => a,
        Err(err) => return Err(fail(&mut ready, err)),
    };
    if let Err(err) = proctitle::set(&own_argv(assignment.args.to_args())) {
        return Err(fail(
            &mut ready,
            anyhow::Error::new(err).context("cannot set the command line"),
        ));
    }
    let fd = ready.take().map(super::ready::ReadyFd::into_raw_fd);
    super::run::run_assigned(MonitorArgs {
        ready_fd: fd,
        ..assignment.args
    })
}

/// Back to the normal policy, with the nice value the daemon gave.
fn leave_idle_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 is this (single-threaded) process; `param` is a valid
    // sched_param that outlives the call. Failing leaves the spare slow,
    // not wrong.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_OTHER, &param);
    }
}

fn fail(ready: &mut Option<super::ready::ReadyFd>, err: anyhow::Error) -> anyhow::Error {
    if let Some(ready) = ready.take() {
        ready.send(&super::ready::Readiness::Failed {
            message: format!("{err:#}"),
        });
    }
    err
}

/// This process's program name (as the daemon ran it) before `args`.
fn own_argv(args: Vec<OsString>) -> Vec<OsString> {
    let program = std::env::args_os()
        .next()
        .unwrap_or_else(|| OsString::from("pvecri-helper"));
    std::iter::once(program).chain(args).collect()
}

/// Waits for the assignment: its bytes and the one fd that came with it;
/// `None` at end of file.
fn receive(socket: &OwnedFd) -> anyhow::Result<Option<(Vec<u8>, OwnedFd)>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let (len, fds, truncated) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fds = Vec::new();
                for c in msg.cmsgs().context("cannot read the control messages")? {
                    if let ControlMessageOwned::ScmRights(got) = c {
                        // SAFETY: the kernel just installed these fds in
                        // this process for us alone.
                        fds.extend(
                            got.into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
                let truncated = msg
                    .flags
                    .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
                break (msg.bytes, fds, truncated);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("cannot receive the assignment"),
        }
    };
    if len == 0 && fds.is_empty() {
        return Ok(None);
    }
    if truncated {
        bail!("the assignment was cut short");
    }
    let mut fds = fds.into_iter();
    let (Some(ready), None) = (fds.next(), fds.next()) else {
        bail!("an assignment must carry exactly one fd");
    };
    // Only the message is kept; the buffer goes back to the heap now.
    Ok(Some((buf[..len].to_vec(), ready)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> MonitorArgs {
        MonitorArgs {
            id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
            lxcpath: "/var/lib/pvecri/lxc".into(),
            run_dir: "/run/pvecri/containers/a dir".into(),
            cgroup: None,
            log: Some("/var/log/pods/ns_p_u/c/0.log".into()),
            ready_fd: None,
            max_log_line: 77,
            stdin: true,
            stdin_once: false,
            tty: true,
            restore: None,
        }
    }

    #[test]
    fn assignments_round_trip() {
        let a = Assignment { args: args() };
        assert_eq!(Assignment::decode(&a.encode()).unwrap(), a);
    }

    #[test]
    fn malformed_assignments_are_refused() {
        let good = Assignment { args: args() }.encode();
        assert!(
            Assignment::decode(&good[..good.len() - 1]).is_err(),
            "no final NUL"
        );
        assert!(Assignment::decode(b"").is_err());
        assert!(Assignment::decode(b"exec-helper\0--id\0x\0").is_err());
        assert!(
            Assignment::decode(b"monitor\0--id\0c1\0").is_err(),
            "missing options"
        );
        let with_fd = Assignment {
            args: MonitorArgs {
                ready_fd: Some(3),
                ..args()
            },
        };
        assert!(Assignment::decode(&with_fd.encode()).is_err());
        let mut unknown = good.clone();
        unknown.extend_from_slice(b"--evil\0");
        assert!(Assignment::decode(&unknown).is_err());
    }

    fn pair() -> (OwnedFd, OwnedFd) {
        socket_pair().unwrap()
    }

    #[test]
    fn a_message_and_its_fd_arrive_together_and_eof_is_none() {
        let (daemon, spare) = pair();
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let a = Assignment { args: args() };
        a.send(&daemon, &w).unwrap();
        drop(w);
        let (bytes, fd) = receive(&spare).unwrap().unwrap();
        assert_eq!(Assignment::decode(&bytes).unwrap(), a);
        // The received fd is the pipe's write end.
        nix::unistd::write(&fd, b"ok 1\n").unwrap();
        drop(fd);
        assert_eq!(
            std::io::read_to_string(std::fs::File::from(r)).unwrap(),
            "ok 1\n"
        );
        drop(daemon);
        assert!(receive(&spare).unwrap().is_none());
    }

    #[test]
    fn a_message_without_exactly_one_fd_is_refused() {
        let (daemon, spare) = pair();
        let bytes = Assignment { args: args() }.encode();
        sendmsg::<()>(
            daemon.as_raw_fd(),
            &[std::io::IoSlice::new(&bytes)],
            &[],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        assert!(receive(&spare).is_err());
    }

    #[test]
    fn spare_command_lines_parse_back() {
        #[derive(Parser)]
        enum Cmd {
            MonitorSpare(SpareArgs),
        }
        let a = SpareArgs {
            lxcpath: "/var/lib/pvecri/lxc".into(),
            socket_fd: 3,
        };
        let argv = std::iter::once(OsString::from("pvecri-helper")).chain(a.to_args());
        let Cmd::MonitorSpare(parsed) = Cmd::try_parse_from(argv).unwrap();
        assert_eq!(parsed, a);
    }
}
