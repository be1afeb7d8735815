//! An exec'd command gets the workload's confinement (user, groups,
//! capabilities, no_new_privs, seccomp) by running through pvecri-init's
//! exec mode: the helper attaches as root and has the container's
//! pvecri-init, opened on the host, exec the command under the container's
//! spec.json. Both files reach the attached process as inherited fds.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::Context;

/// The two files the attached process inherits; they must stay open until
/// the attach has forked.
pub struct ConfinedArgv {
    _init: File,
    _spec: File,
    pub argv: Vec<String>,
}

/// `argv` wrapped as `/proc/self/fd/<init> exec <spec fd> -- argv...`.
pub fn wrap(init: &Path, spec: &Path, argv: &[String]) -> anyhow::Result<ConfinedArgv> {
    let init_file =
        File::open(init).with_context(|| format!("cannot open pvecri-init {}", init.display()))?;
    let spec_file = File::open(spec).with_context(|| format!("cannot open {}", spec.display()))?;
    for f in [&init_file, &spec_file] {
        inheritable(f)?;
    }
    let mut wrapped = vec![
        format!("/proc/self/fd/{}", init_file.as_raw_fd()),
        "exec".to_owned(),
        spec_file.as_raw_fd().to_string(),
        "--".to_owned(),
    ];
    wrapped.extend(argv.iter().cloned());
    Ok(ConfinedArgv {
        _init: init_file,
        _spec: spec_file,
        argv: wrapped,
    })
}

/// Clears FD_CLOEXEC: the exec helper is single-threaded, so no other
/// thread can fork with it in the meantime.
fn inheritable(file: &File) -> anyhow::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    fcntl(file, FcntlArg::F_SETFD(FdFlag::empty())).context("cannot clear FD_CLOEXEC")?;
    Ok(())
}
