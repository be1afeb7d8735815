//! Handing one descriptor to a helper process under a fixed number.
//!
//! Every descriptor the daemon opens is close-on-exec, so concurrent spawns
//! never inherit each other's. The one a helper is meant to get (the
//! monitor's ready pipe, a spare's socket) is duplicated onto its number in
//! the child alone, between fork and exec; `dup2` clears close-on-exec on
//! the copy.

use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;

/// Makes `fd` descriptor number `target` of the process `cmd` spawns. `fd`
/// must stay open in the daemon until the spawn has returned.
pub(super) fn pass_as(cmd: &mut std::process::Command, fd: RawFd, target: RawFd) {
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls dup2, which is async-signal-safe; `fd` is open then, as the
    // caller keeps it open until the spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, target) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn the_child_gets_the_descriptor_under_the_number() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.args(["-c", "echo passed >&7"]);
        pass_as(&mut cmd, w.as_raw_fd(), 7);
        assert!(cmd.status().unwrap().success());
        drop(w);
        let text = std::io::read_to_string(std::fs::File::from(r)).unwrap();
        assert_eq!(text, "passed\n");
    }
}
