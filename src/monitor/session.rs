//! One container's supervision after the starter is forked: the
//! single-threaded `poll(2)` loop over the output pipes, the status pipe,
//! the control socket and the OOM notifications, then the exit record.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::wait::waitpid;
use nix::unistd::{pipe2, Pid};

use super::attach::{self, AttachServer};
use super::control::ControlServer;
use super::exit::{self, ExitRecord};
use super::log::{LogWriter, Stream};
use super::lxclog::LogMark;
use super::oom::OomWatch;
use super::poll::PollSet;
use super::ready::{Readiness, ReadyFd};
use super::restorer;
use super::run::Settings;
use super::starter::{self, StarterFds, StarterReport};
use super::timestamp::unix_nanos;
use crate::cgroups::memory;
use crate::cgroups::tree::{self, KillMethod};
use crate::checkpoint::restore::RestorePlan;
use crate::lxc::Container;

/// The OOM sampling period while the container runs.
const TICK: Duration = Duration::from_millis(100);
/// The readiness check period while liblxc sets the container up (a
/// foreground start takes a few ms; after a second, check less eagerly).
const STARTUP_TICK: Duration = Duration::from_millis(2);
const SLOW_STARTUP_TICK: Duration = Duration::from_millis(20);
const FAST_STARTUP: Duration = Duration::from_secs(1);
/// How long to wait for EOF on the output pipes after init's status came.
/// How long processes init left behind get to die once SIGKILLed.
const LEFTOVER_KILL: Duration = Duration::from_secs(5);

const DRAIN: Duration = Duration::from_millis(500);
/// How much of the container's stderr to keep for a start-failure message.
const STDERR_TAIL: usize = 2048;
/// Bytes read from a pipe per wake-up at most, to stay fair to the others.
const READ_BUDGET: usize = 1 << 20;
/// Bytes read from a pipe per read(2). Small on purpose: a node runs
/// hundreds of monitors, and each keeps its buffer for the container's
/// life; a busy container's output is simply read in more calls.
const READ_BUF: usize = 16 * 1024;

/// The monitor's state while its container lives.
pub(super) struct Session<'a> {
    s: &'a Settings,
    log: LogWriter,
    control: ControlServer,
    attach: AttachServer,
    /// The write end of the container's stdin pipe (or its terminal),
    /// while it is open.
    stdin: Option<File>,
    /// The master side of the container's terminal (TTY containers).
    terminal: Option<OwnedFd>,
    starter: Pid,
    out: Option<File>,
    err: Option<File>,
    status: Option<File>,
    status_text: Vec<u8>,
    /// The starter's report, once the status pipe closed (`None` inside
    /// when the starter died without one).
    report: Option<Option<StarterReport>>,
    report_at: Option<Instant>,
    /// liblxc's view of the container, to ask for init's pid (opened after
    /// the fork, dropped once the pid is known).
    container: Option<Container>,
    /// The container's cgroup (`lxc.cgroup.dir.container`), relative to
    /// the hierarchy roots.
    cgroup: Option<String>,
    init_pid: Option<i32>,
    ready: Option<ReadyFd>,
    oom: Option<OomWatch>,
    last_sample: Instant,
    stderr_tail: Vec<u8>,
    /// The pipe read buffer ([`READ_BUF`]).
    buf: Vec<u8>,
    /// Where liblxc's log ended before the start, for failure messages.
    lxc_log: Option<LogMark>,
    started: Instant,
    log_errors: RateLimit,
}

impl<'a> Session<'a> {
    /// Forks the starter first, then, while liblxc sets the container up
    /// (most of a create), runs `own_setup` (the monitor's pid file and
    /// log), binds the control and attach sockets and opens the
    /// container's log. None of those is needed before the container runs,
    /// and the monitor reports it running only after all of them. Should
    /// any of them fail, the starter is killed before the error returns
    /// (the daemon's rollback removes the container's cgroups).
    pub(super) fn start(
        s: &'a Settings,
        ready: &mut Option<ReadyFd>,
        own_setup: impl FnOnce() -> anyhow::Result<()>,
    ) -> anyhow::Result<Self> {
        let lxc_log = LogMark::take(&s.lxcpath, &s.id);
        let (status_r, status_w) = pipe2(OFlag::O_CLOEXEC).context("pipe")?;
        let stdio = if s.tty {
            Stdio::terminal(s.stdin)?
        } else {
            Stdio::pipes(s.stdin)?
        };
        let fds = StarterFds {
            stdin: stdio.child_stdin,
            stdout: stdio.child_stdout,
            stderr: stdio.child_stderr,
            status: status_w,
        };
        // From the daemon; only a monitor started without it reads liblxc's
        // config (a parse the starter's own start waits behind).
        let cgroup = s.cgroup.clone().or_else(|| {
            Container::open(&s.id, &s.lxcpath)
                .ok()
                .and_then(|c| c.config_item("lxc.cgroup.dir.container"))
                .filter(|p| !p.is_empty())
        });
        let starter = match &s.restore {
            Some(plan) => restorer::spawn(RestorePlan::read(plan)?, fds)?,
            None => starter::spawn(&s.id, &s.lxcpath, fds)?,
        };
        let rest = own_setup().and_then(|()| {
            let control = ControlServer::bind(&s.run_dir).context("cannot bind monitor.sock")?;
            let attach = AttachServer::bind(&s.run_dir).context("cannot bind attach.sock")?;
            let log = LogWriter::open(s.log.as_deref(), s.max_log_line)?;
            Ok((control, attach, log))
        });
        let (control, attach, log) = match rest {
            Ok(made) => made,
            Err(err) => {
                abandon_start(starter, cgroup.as_deref());
                return Err(err);
            }
        };
        Ok(Self {
            s,
            log,
            control,
            attach,
            stdin: stdio.stdin,
            terminal: stdio.terminal,
            starter,
            out: Some(nonblocking(stdio.out)?),
            err: stdio.err.map(nonblocking).transpose()?,
            status: Some(nonblocking(status_r)?),
            status_text: Vec::new(),
            report: None,
            report_at: None,
            container: None,
            cgroup,
            init_pid: None,
            ready: ready.take(),
            oom: None,
            last_sample: Instant::now(),
            stderr_tail: Vec::new(),
            buf: vec![0; READ_BUF],
            lxc_log,
            started: Instant::now(),
            log_errors: RateLimit::new(Duration::from_secs(60)),
        })
    }

    /// The starter's pid.
    pub(super) fn starter(&self) -> Pid {
        self.starter
    }

    pub(super) fn run_loop(&mut self) -> anyhow::Result<()> {
        loop {
            if let Some(at) = self.report_at {
                let drained = self.out.is_none() && self.err.is_none();
                if drained || at.elapsed() >= DRAIN {
                    if !drained {
                        tracing::warn!(
                            "output pipes still open {DRAIN:?} after init ended; closing them"
                        );
                    }
                    return Ok(());
                }
            }
            let timeout = self.timeout();
            let (r_out, r_err, r_status, r_ctl, r_oom, r_attach, r_clients) = {
                let mut set = PollSet::new();
                let i_attach = set.add(Some(self.attach.listener_fd()));
                let i_clients: Vec<usize> = self
                    .attach
                    .client_fds()
                    .into_iter()
                    .map(|fd| set.add(Some(fd)))
                    .collect();
                let i_out = set.add(self.out.as_ref().map(AsFd::as_fd));
                let i_err = set.add(self.err.as_ref().map(AsFd::as_fd));
                let i_status = set.add(self.status.as_ref().map(AsFd::as_fd));
                let i_ctl = set.add(Some(self.control.fd()));
                let i_oom = set.add(self.oom.as_ref().and_then(OomWatch::fd));
                set.wait(timeout).context("poll")?;
                (
                    set.ready(i_out),
                    set.ready(i_err),
                    set.ready(i_status),
                    set.ready(i_ctl),
                    set.ready(i_oom),
                    set.ready(i_attach),
                    i_clients.iter().map(|i| set.ready(*i)).collect::<Vec<_>>(),
                )
            };
            if r_attach {
                self.attach.accept_pending();
            }
            if r_clients.iter().any(|r| *r) {
                self.forward_input(&r_clients);
            }
            if r_out {
                self.drain(Stream::Stdout);
            }
            if r_err {
                self.drain(Stream::Stderr);
            }
            if r_status {
                self.read_status();
            }
            if r_ctl {
                let log = &mut self.log;
                self.control.serve_pending(|| {
                    tracing::info!("reopening the container log");
                    log.reopen()
                });
            }
            if r_oom {
                if let Some(oom) = &mut self.oom {
                    oom.on_notify();
                }
            }
            self.tick();
        }
    }

    /// Writes what attach clients sent to the container's stdin.
    fn forward_input(&mut self, ready: &[bool]) {
        let input = self.attach.read_ready(ready);
        if let Some(stdin) = self.stdin.as_mut() {
            if !input.data.is_empty() {
                if let Err(err) = write_patiently(stdin, &input.data) {
                    tracing::info!(error = %err, "the container's stdin is closed");
                    self.stdin = None;
                }
            }
        }
        if let (Some((width, height)), Some(terminal)) = (input.resize, &self.terminal) {
            let size = libc::winsize {
                ws_row: height,
                ws_col: width,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: the fd is the open pty master owned by the session;
            // TIOCSWINSZ reads one winsize from the valid pointer.
            if unsafe { libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
                tracing::debug!(error = %io::Error::last_os_error(), "terminal resize failed");
            }
        }
        if input.stdin_closed && self.s.stdin_once && self.stdin.is_some() {
            tracing::info!("closing the container's stdin (stdin_once)");
            self.stdin = None;
        }
    }

    fn timeout(&mut self) -> Duration {
        if let Some(at) = self.report_at {
            return DRAIN.saturating_sub(at.elapsed());
        }
        if self.init_pid.is_none() {
            return if self.started.elapsed() < FAST_STARTUP {
                STARTUP_TICK
            } else {
                SLOW_STARTUP_TICK
            };
        }
        if self
            .oom
            .as_mut()
            .is_some_and(|o| o.in_burst(Instant::now()))
        {
            Duration::from_millis(1)
        } else {
            TICK
        }
    }

    /// Reads what a pipe has (up to a budget) into the log.
    fn drain(&mut self, stream: Stream) {
        let mut buf = std::mem::take(&mut self.buf);
        self.drain_into(stream, &mut buf);
        self.buf = buf;
    }

    fn drain_into(&mut self, stream: Stream, buf: &mut [u8]) {
        let mut budget = READ_BUDGET;
        loop {
            let file = match stream {
                Stream::Stdout => self.out.as_mut(),
                Stream::Stderr => self.err.as_mut(),
            };
            let Some(file) = file else { return };
            // A terminal's master reads EIO once every slave is closed:
            // that is its end of file.
            let read = match file.read(buf) {
                Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(0),
                other => other,
            };
            match read {
                Ok(0) => {
                    match stream {
                        Stream::Stdout => self.out = None,
                        Stream::Stderr => self.err = None,
                    }
                    if self.out.is_none() && self.err.is_none() {
                        self.attach.close_all();
                        // Every container process is gone but liblxc has
                        // not removed the cgroup yet: the best last look.
                        self.sample_oom();
                    }
                    return;
                }
                Ok(n) => {
                    let tag = match stream {
                        Stream::Stdout => attach::STDOUT,
                        Stream::Stderr => attach::STDERR,
                    };
                    self.attach.broadcast(tag, &buf[..n]);
                    if stream == Stream::Stderr {
                        self.stderr_tail.extend_from_slice(&buf[..n]);
                        let excess = self.stderr_tail.len().saturating_sub(STDERR_TAIL);
                        self.stderr_tail.drain(..excess);
                    }
                    if let Err(err) = self.log.write_chunk(stream, &buf[..n]) {
                        if self.log_errors.allow() {
                            tracing::warn!(error = error_chain(&err), "container output lost");
                        }
                    }
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) => {
                    tracing::warn!(?stream, error = %err, "reading the container output failed");
                    match stream {
                        Stream::Stdout => self.out = None,
                        Stream::Stderr => self.err = None,
                    }
                    return;
                }
            }
        }
    }

    fn read_status(&mut self) {
        let Some(file) = self.status.as_mut() else {
            return;
        };
        let mut buf = [0u8; 1024];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.status_text.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.check_restored();
                    return;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "reading the starter status failed");
                    break;
                }
            }
        }
        self.status = None;
        self.check_restored();
        let report = StarterReport::parse(&String::from_utf8_lossy(&self.status_text));
        tracing::info!(?report, "starter reported");
        self.report = Some(report);
        self.report_at = Some(Instant::now());
        self.sample_oom();
        self.kill_leftovers();
    }

    /// Init is gone. Without a PID namespace of its own (hostPID, or the
    /// pod's shared one) its children outlive it: they go too, as they
    /// would with the namespace, so the output pipes close, the exit is
    /// final and the cgroup can be removed.
    fn kill_leftovers(&self) {
        if let Some(rel) = &self.cgroup {
            kill_cgroup(rel);
        }
    }

    /// Removes the container's cgroup if liblxc could not (it tries while
    /// processes init left behind may still be in it).
    fn remove_cgroup(&self) {
        let Some(rel) = &self.cgroup else { return };
        if let Err(err) =
            tree::hierarchies().and_then(|h| tree::remove(&h, rel, Duration::from_secs(2)))
        {
            tracing::warn!(error = %err, "cannot remove the container's cgroup");
        }
    }

    /// A restoring starter reports the restored init's pid on the status
    /// pipe (`running <pid>`) before its final report.
    fn check_restored(&mut self) {
        if self.init_pid.is_some() {
            return;
        }
        if let Some(pid) = restorer::parse_running(&String::from_utf8_lossy(&self.status_text)) {
            self.on_running(pid);
        }
    }

    fn tick(&mut self) {
        if self.s.restore.is_none() && self.report.is_none() && self.init_pid.is_none() {
            self.check_ready();
        }
        let now = Instant::now();
        let due = now.duration_since(self.last_sample) >= TICK;
        if let Some(oom) = &mut self.oom {
            if due || oom.in_burst(now) {
                oom.sample();
                self.last_sample = now;
            }
        }
    }

    /// Reports readiness once liblxc answers with init's pid: its command
    /// socket is served only from its main loop, which it enters after
    /// marking the container RUNNING (so a pid means RUNNING).
    fn check_ready(&mut self) {
        if self.container.is_none() {
            match Container::open(&self.s.id, &self.s.lxcpath) {
                Ok(c) => {
                    // This handle only asks for init's pid; liblxc logs a
                    // refused or reset command socket (start failed, init
                    // gone) as ERROR, which would bury the real errors the
                    // starter's liblxc writes to the same lxc.log.file.
                    if let Err(err) = c.set_config_item("lxc.log.level", "FATAL") {
                        tracing::debug!(error = %err, "cannot quieten liblxc");
                    }
                    self.container = Some(c);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot open the container with liblxc");
                    return;
                }
            }
        }
        let Some(pid) = self.container.as_ref().and_then(Container::init_pid) else {
            return;
        };
        self.container = None;
        self.on_running(pid);
    }

    /// Init runs: report it, and watch its memory cgroup.
    fn on_running(&mut self, pid: i32) {
        self.init_pid = Some(pid);
        tracing::info!(init_pid = pid, elapsed = ?self.started.elapsed(), "container running");
        if let Some(ready) = self.ready.take() {
            ready.send(&Readiness::Running { init_pid: pid });
        }
        match memory::locate(pid) {
            Some(cg) => {
                tracing::info!(cgroup = %cg.dir.display(), version = ?cg.version, "watching for OOM kills");
                self.oom = Some(OomWatch::new(cg));
                self.last_sample = Instant::now();
            }
            // An init that already exited has no cgroup left to find.
            None if std::path::Path::new(&format!("/proc/{pid}")).exists() => tracing::warn!(
                init_pid = pid,
                "memory cgroup not found, OOM kills go unnoticed"
            ),
            None => {}
        }
    }

    fn sample_oom(&mut self) {
        if let Some(oom) = &mut self.oom {
            oom.sample();
        }
    }

    pub(super) fn finish(mut self) -> anyhow::Result<()> {
        if let Err(err) = self.log.finish() {
            tracing::warn!(error = error_chain(&err), "container output lost");
        }
        let starter_end = match waitpid(self.starter, None) {
            Ok(status) => format!("{status:?}"),
            Err(err) => format!("waitpid: {err}"),
        };
        let now = unix_nanos(SystemTime::now());
        let oom_killed = self.oom.as_ref().is_some_and(OomWatch::oom_killed);
        let start_error = exit::read_start_error(&self.s.run_dir);
        let was_ready = self.init_pid.is_some();
        let report = self.report.clone().flatten();
        let record = match &report {
            Some(StarterReport::Exited { error_num }) => {
                ExitRecord::new(exit::decode(*error_num), oom_killed, start_error, now)
            }
            Some(StarterReport::Failed { message }) if was_ready => {
                ExitRecord::unknown(oom_killed, message.clone(), now)
            }
            None if was_ready => ExitRecord::unknown(
                oom_killed,
                format!("the starter process ended without reporting ({starter_end})"),
                now,
            ),
            Some(StarterReport::Failed { message }) => {
                ExitRecord::start_failed(self.start_failure(start_error, message), now)
            }
            None => ExitRecord::start_failed(
                self.start_failure(
                    start_error,
                    &format!("the starter process ended without reporting ({starter_end})"),
                ),
                now,
            ),
        };
        self.remove_cgroup();
        tracing::info!(?record, starter = starter_end, "container exited");
        record
            .write_atomic(&self.s.run_dir)
            .context("cannot write the exit record")?;
        if let Some(ready) = self.ready.take() {
            let message = match &report {
                Some(StarterReport::Exited { error_num }) => format!(
                    "container init ended before liblxc reported it running (exit code {})",
                    exit::decode(*error_num).exit_code()
                ),
                _ => record.message.clone(),
            };
            ready.send(&Readiness::Failed { message });
        }
        self.control.remove();
        Ok(())
    }

    /// A start failure's message: pvecri-init's start-error, else the
    /// starter's words, liblxc's ERROR lines from this start and what the
    /// container printed on stderr.
    fn start_failure(&self, start_error: Option<String>, starter: &str) -> String {
        if let Some(text) = start_error {
            return text;
        }
        let mut message = starter.to_owned();
        let errors = self
            .lxc_log
            .as_ref()
            .map(|mark| mark.errors_since(&self.s.id))
            .unwrap_or_default();
        if !errors.is_empty() {
            message.push_str(": ");
            message.push_str(&errors.join("; "));
        }
        let tail = String::from_utf8_lossy(&self.stderr_tail);
        let tail = tail.trim();
        if !tail.is_empty() {
            message.push_str("; stderr: ");
            message.push_str(tail);
        }
        if errors.is_empty() {
            if let Some(mark) = &self.lxc_log {
                message.push_str(&format!(" (see {})", mark.path.display()));
            }
        }
        message
    }
}

/// The container's stdio as the monitor and the starter hold it.
struct Stdio {
    /// The monitor's ends.
    stdin: Option<File>,
    out: OwnedFd,
    err: Option<OwnedFd>,
    terminal: Option<OwnedFd>,
    /// The starter's ends.
    child_stdin: Option<OwnedFd>,
    child_stdout: OwnedFd,
    child_stderr: OwnedFd,
}

impl Stdio {
    /// Two output pipes, and a stdin pipe when the container asked for
    /// stdin (else the starter uses /dev/null).
    fn pipes(stdin: bool) -> anyhow::Result<Self> {
        let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).context("pipe")?;
        let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).context("pipe")?;
        let (child_stdin, stdin) = if stdin {
            let (r, w) = pipe2(OFlag::O_CLOEXEC).context("pipe")?;
            (Some(r), Some(File::from(w)))
        } else {
            (None, None)
        };
        Ok(Self {
            stdin,
            out: out_r,
            err: Some(err_r),
            terminal: None,
            child_stdin,
            child_stdout: out_w,
            child_stderr: err_w,
        })
    }

    /// A pseudo-terminal: its slave is the container's stdin, stdout and
    /// stderr, its master the one output stream (and the input, with
    /// stdin). openpty is two syscalls; the monitor is single-threaded.
    fn terminal(stdin: bool) -> anyhow::Result<Self> {
        let pty = nix::pty::openpty(None, None).context("openpty")?;
        for fd in [&pty.master, &pty.slave] {
            fcntl(
                fd.as_fd(),
                FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .context("F_SETFD")?;
        }
        let dup = |fd: &OwnedFd| fd.try_clone().context("dup terminal");
        Ok(Self {
            stdin: if stdin {
                Some(File::from(dup(&pty.master)?))
            } else {
                None
            },
            out: dup(&pty.master)?,
            err: None,
            child_stdin: Some(dup(&pty.slave)?),
            child_stdout: dup(&pty.slave)?,
            child_stderr: pty.slave,
            terminal: Some(pty.master),
        })
    }
}

/// Kills every process in the container's cgroup `rel` and waits for them.
fn kill_cgroup(rel: &str) {
    let killed = tree::hierarchies().and_then(|h| tree::kill_and_wait(&h, rel, LEFTOVER_KILL));
    match killed {
        Ok(KillMethod::Empty) => {}
        Ok(method) => tracing::info!(?method, "killed processes init left behind"),
        Err(err) => tracing::warn!(error = %err, "cannot kill processes init left behind"),
    }
}

/// Ends a start the monitor cannot see through: the starter (liblxc's
/// foreground start; init dies with it) and whatever of the container
/// already runs in its cgroup.
fn abandon_start(starter: Pid, cgroup: Option<&str>) {
    let _ = nix::sys::signal::kill(starter, nix::sys::signal::Signal::SIGKILL);
    let _ = waitpid(starter, None);
    if let Some(rel) = cgroup {
        kill_cgroup(rel);
    }
}

/// Writes all of `data` to a descriptor that may be non-blocking (a
/// terminal master shares its flags with the read side), waiting briefly
/// when it is full.
fn write_patiently(file: &mut File, mut data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut stalls = 0;
    while !data.is_empty() {
        match file.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && stalls < 500 => {
                stalls += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn nonblocking(fd: OwnedFd) -> anyhow::Result<File> {
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL).context("F_GETFL")?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags)).context("F_SETFL")?;
    Ok(File::from(fd))
}

/// An error and its sources on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Lets one event through per period (for log lines a workload can cause).
struct RateLimit {
    period: Duration,
    last: Option<Instant>,
}

impl RateLimit {
    fn new(period: Duration) -> Self {
        Self { period, last: None }
    }

    fn allow(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < self.period)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_lets_one_through_per_period() {
        let mut r = RateLimit::new(Duration::from_secs(3600));
        assert!(r.allow());
        assert!(!r.allow());
    }

    #[test]
    fn error_chain_joins_sources() {
        let err = super::super::log::LogError::Open {
            path: "/x".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        };
        let text = error_chain(&err);
        assert!(
            text.starts_with("cannot open container log \"/x\": "),
            "{text}"
        );
        assert!(text.contains("No such file"), "{text}");
    }
}
