//! A fork whose child starts in a given cgroup2 cgroup: `clone3(2)` with
//! `CLONE_INTO_CGROUP` (Linux 5.7+). The child is charged to that cgroup
//! from its first instruction, and nobody has to move a process there
//! afterwards (a move by `cgroup.procs` waits for an RCU grace period; see
//! `cgroups::enter`). Used by the exec helper.

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

/// `CLONE_INTO_CGROUP` from the kernel's uapi `sched.h`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The kernel's `struct clone_args` as of Linux 5.7 (`CLONE_ARGS_SIZE_VER2`,
/// 88 bytes): every field a `__aligned_u64`.
#[repr(C)]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Which side of the fork the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forked {
    Parent { child: i32 },
    Child,
}

/// Whether an error of [`fork_into_cgroup`] means the kernel lacks the call
/// or the flag (so a fork and a move by `cgroup.procs` should be used)
/// rather than that the clone itself failed.
pub(crate) fn unsupported(err: Errno) -> bool {
    // ENOSYS: no clone3 (< 5.3); E2BIG: a struct larger than the kernel
    // knows with the cgroup field set, EINVAL: an unknown flag (5.3-5.6).
    matches!(err, Errno::ENOSYS | Errno::E2BIG | Errno::EINVAL)
}

/// Forks like `fork(2)` (SIGCHLD to the parent at exit, a copy of the
/// address space), the child in the cgroup2 directory `cgroup`.
///
/// # Safety
/// The caller must be single-threaded, as for any fork whose child runs
/// code. The C library does not see this fork: no `atfork` handlers run
/// and its cached thread ID stays the parent's, so until it execs or
/// `_exit`s the child must not use what depends on them (`raise`,
/// `pthread_kill`, process-shared or error-checking mutexes).
pub(crate) unsafe fn fork_into_cgroup(cgroup: BorrowedFd<'_>) -> Result<Forked, Errno> {
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: the kernel reads `size_of::<CloneArgs>()` bytes from `args`,
    // which lives across the call. With no stack given, the child goes on
    // on a copy of the parent's stack, as after fork; what it may do then
    // is the caller's contract above.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        child => Ok(Forked::Parent {
            child: child as i32,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_struct_is_the_kernels_version_2() {
        assert_eq!(std::mem::size_of::<CloneArgs>(), 88);
    }

    #[test]
    fn old_kernels_are_told_apart_from_failures() {
        assert!(unsupported(Errno::ENOSYS));
        assert!(unsupported(Errno::E2BIG));
        assert!(!unsupported(Errno::EPERM));
        assert!(!unsupported(Errno::EBUSY));
    }
}
