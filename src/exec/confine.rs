//! liblxc's attach (records without an init; `join` confines in-process):
//! an exec'd command gets the workload's confinement (user, groups,
//! capabilities, no_new_privs, seccomp) by running through pvecri-init's
//! exec mode: the helper attaches as root and has pvecri-init exec the
//! command under the container's spec.json. Both files reach the attached
//! process as inherited descriptors of sealed memfd copies (see `sealed`),
//! never of the host's files: the attached process runs inside the
//! container, where `/proc/<pid>/fd/<n>` reopens whatever such a
//! descriptor points at. pvecri-init closes the spec's after reading it
//! and keeps its own (and every other one above stderr) from the command.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::Context;

use super::sealed::sealed_copy;

/// The wrapped command line and the two copies it names, held open (not
/// read again here) until the attach has forked.
pub(super) struct ConfinedArgv {
    _init_copy: File,
    _spec_copy: File,
    pub argv: Vec<String>,
}

/// `argv` wrapped as `/proc/self/fd/<init> exec <spec fd> -- argv...`.
/// `init` may name the daemon's own sealed copy (`/proc/<daemon>/fd/<n>`,
/// reopened here without copying); any other file is copied.
pub(super) fn wrap(init: &Path, spec: &Path, argv: &[String]) -> anyhow::Result<ConfinedArgv> {
    let init_copy = match File::open(init) {
        Ok(file) if super::sealed::is_sealed(&file) => file,
        _ => sealed_copy(init, c"pvecri-init")
            .with_context(|| format!("cannot copy pvecri-init {}", init.display()))?,
    };
    let spec_copy = sealed_copy(spec, c"spec.json")?;
    for f in [&init_copy, &spec_copy] {
        inheritable(f)?;
    }
    let mut wrapped = vec![
        format!("/proc/self/fd/{}", init_copy.as_raw_fd()),
        "exec".to_owned(),
        spec_copy.as_raw_fd().to_string(),
        "--".to_owned(),
    ];
    wrapped.extend(argv.iter().cloned());
    Ok(ConfinedArgv {
        _init_copy: init_copy,
        _spec_copy: spec_copy,
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

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn a_sealed_init_is_reused_and_a_plain_one_copied() {
        let dir = tempfile::tempdir().unwrap();
        let (init, spec) = (dir.path().join("pvecri-init"), dir.path().join("spec.json"));
        std::fs::write(&init, b"\x7fELF not really").unwrap();
        std::fs::write(&spec, b"{}").unwrap();
        let daemon_copy = sealed_copy(&init, c"pvecri-init").unwrap();
        let by_proc = std::path::PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            daemon_copy.as_raw_fd()
        ));
        let fd_of = |w: &ConfinedArgv| -> i32 {
            w.argv[0]
                .strip_prefix("/proc/self/fd/")
                .unwrap()
                .parse()
                .unwrap()
        };
        let inode = |fd: i32| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(format!("/proc/self/fd/{fd}"))
                .unwrap()
                .ino()
        };
        let reused = wrap(&by_proc, &spec, &["true".into()]).unwrap();
        assert_eq!(inode(fd_of(&reused)), inode(daemon_copy.as_raw_fd()));
        let copied = wrap(&init, &spec, &["true".into()]).unwrap();
        assert_ne!(inode(fd_of(&copied)), inode(daemon_copy.as_raw_fd()));
    }

    #[test]
    fn the_attached_process_gets_sealed_copies_only() {
        let dir = tempfile::tempdir().unwrap();
        let (init, spec) = (dir.path().join("pvecri-init"), dir.path().join("spec.json"));
        std::fs::write(&init, b"\x7fELF not really").unwrap();
        std::fs::write(&spec, b"{}").unwrap();
        let wrapped = wrap(&init, &spec, &["ls".into(), "-l".into()]).unwrap();
        let [program, mode, spec_fd, sep, rest @ ..] = &wrapped.argv[..] else {
            panic!("{:?}", wrapped.argv);
        };
        assert_eq!((mode.as_str(), sep.as_str()), ("exec", "--"));
        assert_eq!(rest, ["ls", "-l"]);
        let init_fd: i32 = program
            .strip_prefix("/proc/self/fd/")
            .unwrap()
            .parse()
            .unwrap();
        let spec_fd: i32 = spec_fd.parse().unwrap();
        for fd in [init_fd, spec_fd] {
            let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
            assert!(
                target.to_string_lossy().starts_with("/memfd:"),
                "{target:?}"
            );
            // SAFETY: `wrapped` owns fd and outlives this borrow.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            // SAFETY: F_GET_SEALS takes no argument; fd is live.
            let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
            assert_eq!(seals & libc::F_SEAL_WRITE, libc::F_SEAL_WRITE);
        }
        let mut text = String::new();
        File::open(format!("/proc/self/fd/{spec_fd}"))
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "{}");
    }
}
