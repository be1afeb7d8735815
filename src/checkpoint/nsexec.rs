//! `pvecri criu-exec`: enters a pod's pinned net, ipc and uts namespaces
//! and execs criu there.
//!
//! CRIU dumps a namespace of the tree only when it differs from its own.
//! Run from inside the pod's namespaces, it leaves them out of the images:
//! a restore then simply inherits the namespaces of the pod it runs in,
//! and a TCP lock during the dump covers the container's connections
//! instead of the whole pod's network. `setns` cannot be called from the
//! multithreaded daemon for one child without forking in it, so this
//! single-threaded verb does it and replaces itself with criu.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use nix::sched::CloneFlags;

/// `pvecri criu-exec` arguments, built by the daemon with
/// [`CriuExecArgs::to_args`].
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub(crate) struct CriuExecArgs {
    /// The criu binary.
    #[arg(long)]
    pub criu: PathBuf,
    /// The pod's pinned network namespace (an nsfs file).
    #[arg(long)]
    pub net: PathBuf,
    /// The pod's pinned IPC namespace.
    #[arg(long)]
    pub ipc: PathBuf,
    /// The pod's pinned UTS namespace.
    #[arg(long)]
    pub uts: PathBuf,
    /// criu's arguments.
    #[arg(last = true, required = true)]
    pub argv: Vec<OsString>,
}

impl CriuExecArgs {
    /// The subcommand's name on the `pvecri` command line.
    pub(crate) const VERB: &'static str = "criu-exec";

    /// The arguments after the program name that parse back into `self`.
    pub(crate) fn to_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec![Self::VERB.into()];
        for (name, value) in [
            ("--criu", &self.criu),
            ("--net", &self.net),
            ("--ipc", &self.ipc),
            ("--uts", &self.uts),
        ] {
            out.push(name.into());
            out.push(value.into());
        }
        out.push("--".into());
        out.extend(self.argv.iter().cloned());
        out
    }
}

/// Joins the namespaces and execs criu; returns only on failure.
pub(crate) fn run(args: CriuExecArgs) -> anyhow::Result<ExitCode> {
    // All three are opened before the first setns: a path is resolved in
    // the caller's mount namespace, which setns of these kinds keeps, but
    // a missing pin should fail before anything was joined.
    let pins = [
        (&args.net, CloneFlags::CLONE_NEWNET),
        (&args.ipc, CloneFlags::CLONE_NEWIPC),
        (&args.uts, CloneFlags::CLONE_NEWUTS),
    ]
    .map(|(path, flag)| {
        std::fs::File::open(path)
            .with_context(|| format!("cannot open the namespace pin {}", path.display()))
            .map(|f| (path, f, flag))
    });
    let mut opened = Vec::with_capacity(3);
    for pin in pins {
        opened.push(pin?);
    }
    for (path, file, flag) in &opened {
        nix::sched::setns(file, *flag)
            .with_context(|| format!("cannot enter the namespace {}", path.display()))?;
    }
    drop(opened);
    let err = std::process::Command::new(&args.criu)
        .args(&args.argv)
        .exec();
    Err(err).with_context(|| format!("cannot execute {}", args.criu.display()))
}
