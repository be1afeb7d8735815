//! The `pvecri` command line: the daemon entry point and the root-only
//! diagnostic verbs. This is the only place that prints to stdout.

mod census;
mod doctor;
mod events;
mod generate;
mod inspect;
mod list;
mod logging;
mod logs;
mod migrate;
mod stats;
mod version;
mod view;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(name = "pvecri", version = crate::version::PACKAGE_VERSION, about = "Kubernetes CRI runtime for Proxmox VE nodes, running pods as LXC containers")]
struct Cli {
    /// Config file (default /etc/pvecri/config.toml; built-in defaults when absent).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the CRI daemon in the foreground.
    Daemon,
    /// Print the versions of pvecri, liblxc and, if it runs, the daemon.
    Version,
    /// Check the node for what pvecri needs, one line per check, with the
    /// fix for every warning and failure; exit code 1 on a failure.
    Doctor(doctor::DoctorArgs),
    /// CPU, memory and disk of running containers, from the daemon.
    Stats(stats::StatsArgs),
    /// Follow the daemon's container lifecycle events.
    Events,
    /// Containers (running ones unless --all); from the store when the
    /// daemon is down.
    Ps(list::PsArgs),
    /// Pod sandboxes; from the store when the daemon is down.
    Pods(list::ListArgs),
    /// Images; from the store when the daemon is down.
    Images(list::ListArgs),
    /// One container or pod in full (record, LXC config, monitor, cgroup,
    /// mounts, network), as JSON.
    Inspect(inspect::InspectArgs),
    /// A container's log, without the CRI line prefix (`--raw` keeps it).
    Logs(logs::LogsArgs),
    /// Count what pvecri owns on the node (processes, cgroups, mounts,
    /// links, nftables, dirs, records), one line per kind.
    Census(census::CensusArgs),
    /// Move a running pod to another pvecri daemon: checkpoint it (its
    /// containers end once saved), restore it there, remove it here.
    Migrate(migrate::MigrateArgs),
    /// Supervise one container (spawned by the daemon).
    #[command(hide = true)]
    Monitor(crate::monitor::MonitorArgs),
    /// Internal: a monitor started before its container (spawned by the
    /// daemon, which hands it one later).
    #[command(hide = true)]
    MonitorSpare(crate::monitor::SpareArgs),
    /// Internal: runs one exec inside a container (liblxc attach).
    #[command(hide = true)]
    ExecHelper(crate::exec::ExecHelperArgs),
    /// Internal: runs criu inside a pod's namespaces (checkpoints).
    #[command(hide = true)]
    CriuExec(crate::checkpoint::nsexec::CriuExecArgs),
    /// Internal: man pages and shell completions for the package.
    #[command(hide = true, subcommand)]
    Generate(generate::Generate),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Generating the package's man pages and completions touches nothing
    // of the node: the package build runs it unprivileged.
    let needs_root = !matches!(cli.command, Command::Generate(_));
    if let (true, Err(msg)) = (needs_root, require_root()) {
        eprintln!("pvecri: {msg}");
        return ExitCode::from(1);
    }
    let result = match cli.command {
        Command::Daemon => run_daemon(cli.config),
        Command::Version => load(cli.config).and_then(|c| version::run(&c)),
        Command::Doctor(args) => load(cli.config).and_then(|c| doctor::run(&c, args)),
        Command::Stats(args) => load(cli.config).and_then(|c| stats::run(&c, args)),
        Command::Events => load(cli.config).and_then(|c| events::run(&c)),
        Command::Ps(args) => load(cli.config).and_then(|c| list::ps(&c, args)),
        Command::Pods(args) => load(cli.config).and_then(|c| list::pods(&c, args)),
        Command::Images(args) => load(cli.config).and_then(|c| list::images(&c, args)),
        Command::Inspect(args) => load(cli.config).and_then(|c| inspect::run(&c, args)),
        Command::Logs(args) => load(cli.config).and_then(|c| logs::run(&c, args)),
        Command::Census(args) => load(cli.config).and_then(|c| census::run(c, args)),
        Command::Migrate(args) => load(cli.config).and_then(|c| migrate::run(&c, args)),
        Command::Monitor(args) => crate::monitor::run(args),
        Command::MonitorSpare(args) => crate::monitor::spare::run(args),
        Command::ExecHelper(args) => crate::exec::run(args),
        Command::CriuExec(args) => crate::checkpoint::nsexec::run(args),
        Command::Generate(what) => generate::run(what),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("pvecri: {err:#}");
            ExitCode::from(1)
        }
    }
}

/// The helper binary's command line: the same verbs and arguments as the
/// hidden `pvecri monitor` and `pvecri exec-helper`, so either binary can
/// serve (`crate::runtime` prefers the helper).
#[derive(Parser)]
#[command(name = "pvecri-helper", version = crate::version::BUILD_VERSION, about = "pvecri's per-container helper processes (started by the daemon)")]
struct HelperCli {
    #[command(subcommand)]
    command: HelperCommand,
}

#[derive(Subcommand)]
enum HelperCommand {
    /// Supervise one container.
    Monitor(crate::monitor::MonitorArgs),
    /// Wait, detached, for a container to supervise.
    MonitorSpare(crate::monitor::SpareArgs),
    /// Run one exec inside a container.
    ExecHelper(crate::exec::ExecHelperArgs),
}

/// `pvecri-helper`'s entry point.
pub fn helper_main() -> ExitCode {
    let cli = HelperCli::parse();
    if let Err(msg) = require_root() {
        eprintln!("pvecri-helper: {msg}");
        return ExitCode::from(1);
    }
    let result = match cli.command {
        HelperCommand::Monitor(args) => crate::monitor::run(args),
        HelperCommand::MonitorSpare(args) => crate::monitor::spare::run(args),
        HelperCommand::ExecHelper(args) => crate::exec::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("pvecri-helper: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn load(path: Option<PathBuf>) -> anyhow::Result<Config> {
    Ok(Config::load(path.as_deref())?)
}

fn run_daemon(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    // Whatever the daemon's parent left open (a shell's, a test harness's)
    // must not travel on to the monitors and exec helpers it spawns.
    cloexec_inherited();
    let config = load(path)?;
    logging::init(&config);
    if let Err(err) = crate::daemon::run(config) {
        tracing::error!(error = format!("{err:#}"), "daemon failed");
        return Err(err);
    }
    Ok(ExitCode::SUCCESS)
}

/// Marks every descriptor above stderr close-on-exec: `close_range` with
/// `CLOSE_RANGE_CLOEXEC` (5.11+), else one `fcntl` per open descriptor.
fn cloexec_inherited() {
    // SAFETY: plain syscall with integer arguments; it only sets flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on a descriptor number; a closed one gives EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// pvecri manages containers, namespaces and cgroups: every verb is root only.
fn require_root() -> Result<(), String> {
    let euid = nix::unistd::geteuid();
    if euid.is_root() {
        Ok(())
    } else {
        Err(format!(
            "must be run as root (effective uid is {euid}); try `sudo pvecri ...`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;
    use crate::exec::ExecHelperArgs;
    use crate::monitor::MonitorArgs;

    /// Parses a child's command line as the `pvecri` binary does.
    fn parse(args: Vec<OsString>) -> Command {
        let argv = std::iter::once(OsString::from("/usr/bin/pvecri")).chain(args);
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.command,
            Err(err) => panic!("{err}"),
        }
    }

    fn monitor(args: MonitorArgs) {
        match parse(args.to_args()) {
            Command::Monitor(parsed) => assert_eq!(parsed, args),
            _ => panic!("{:?} is not the monitor verb", MonitorArgs::VERB),
        }
    }

    fn exec_helper(args: ExecHelperArgs) {
        match parse(args.to_args()) {
            Command::ExecHelper(parsed) => assert_eq!(parsed, args),
            _ => panic!("{:?} is not the exec-helper verb", ExecHelperArgs::VERB),
        }
    }

    #[test]
    fn criu_exec_command_lines_parse_back_into_their_arguments() {
        use crate::checkpoint::nsexec::CriuExecArgs;
        let args = CriuExecArgs {
            criu: "/usr/sbin/criu".into(),
            net: "/run/pvecri/ns/p1/net".into(),
            ipc: "/run/pvecri/ns/p1/ipc".into(),
            uts: "/run/pvecri/ns/p1/uts".into(),
            argv: vec![
                "dump".into(),
                "--tree".into(),
                "42".into(),
                "--leave-running".into(),
            ],
        };
        match parse(args.to_args()) {
            Command::CriuExec(parsed) => assert_eq!(parsed, args),
            _ => panic!("{:?} is not the criu-exec verb", CriuExecArgs::VERB),
        }
    }

    #[test]
    fn spare_monitor_command_lines_parse_back_in_both_binaries() {
        let args = crate::monitor::SpareArgs {
            lxcpath: "/var/lib/pvecri/lxc".into(),
            socket_fd: 3,
        };
        match parse(args.to_args()) {
            Command::MonitorSpare(parsed) => assert_eq!(parsed, args),
            _ => panic!(
                "{:?} is not the spare verb",
                crate::monitor::SpareArgs::VERB
            ),
        }
        let argv =
            std::iter::once(OsString::from("/usr/lib/pvecri/pvecri-helper")).chain(args.to_args());
        match HelperCli::try_parse_from(argv).unwrap().command {
            HelperCommand::MonitorSpare(parsed) => assert_eq!(parsed, args),
            _ => panic!("not the spare verb of pvecri-helper"),
        }
    }

    #[test]
    fn monitor_command_lines_parse_back_into_their_arguments() {
        let base = MonitorArgs {
            id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
            lxcpath: "/var/lib/pvecri/lxc".into(),
            run_dir: "/run/pvecri/containers/0123".into(),
            cgroup: None,
            log: None,
            ready_fd: None,
            max_log_line: crate::monitor::DEFAULT_MAX_LINE,
            stdin: false,
            stdin_once: false,
            tty: false,
            restore: None,
        };
        monitor(base.clone());
        monitor(MonitorArgs {
            log: Some("/var/log/pods/ns_pod_uid/c/0.log".into()),
            ready_fd: Some(3),
            max_log_line: 8,
            stdin: true,
            stdin_once: true,
            tty: true,
            ..base.clone()
        });
        monitor(MonitorArgs {
            run_dir: "/tmp/a dir with spaces/containers/c1".into(),
            cgroup: Some("kubepods/burstable/pod-u1/c1".into()),
            log: Some("/logs/--tty".into()),
            stdin: true,
            ..base.clone()
        });
        monitor(MonitorArgs {
            restore: Some("/var/lib/pvecri/restore/c1/restore.json".into()),
            ..base
        });
    }

    #[test]
    fn exec_helper_command_lines_parse_back_into_their_arguments() {
        let base = ExecHelperArgs {
            id: "c1".into(),
            lxcpath: "/var/lib/pvecri/lxc".into(),
            spec: "/run/pvecri/containers/c1/spec.json".into(),
            init: "/proc/1234/fd/7".into(),
            timeout: 0,
            tty: false,
            init_pid: None,
            init_start_time: None,
            argv: vec!["true".into()],
        };
        exec_helper(base.clone());
        exec_helper(ExecHelperArgs {
            timeout: 5,
            tty: true,
            // Words of the command that look like the helper's options
            // stay the command's.
            argv: ["sh", "-c", "echo $0", "--tty", "--", "--init-pid", "9"]
                .map(String::from)
                .to_vec(),
            ..base.clone()
        });
        // A restored container: the init is joined directly.
        exec_helper(ExecHelperArgs {
            init_pid: Some(4242),
            init_start_time: Some(123_456_789),
            ..base
        });
    }

    #[test]
    fn an_init_pid_without_its_start_time_is_refused() {
        for args in [
            &[
                "exec-helper",
                "--id",
                "c1",
                "--lxcpath",
                "/l",
                "--spec",
                "/s",
                "--init",
                "/i",
                "--init-pid",
                "7",
                "--",
                "true",
            ][..],
            &[
                "exec-helper",
                "--id",
                "c1",
                "--lxcpath",
                "/l",
                "--spec",
                "/s",
                "--init",
                "/i",
                "--init-start-time",
                "7",
                "--",
                "true",
            ],
        ] {
            let argv = std::iter::once("pvecri").chain(args.iter().copied());
            assert!(Cli::try_parse_from(argv).is_err(), "{args:?} parsed");
        }
    }
}
