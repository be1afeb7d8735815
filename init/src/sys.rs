//! The few syscalls pvecri-init makes, as safe functions returning [`Errno`].
//!
//! libc directly rather than nix: the binary is linked statically into every
//! container, so it stays small, and glibc's own wrappers for set*id/setgroups
//! already apply them to the (single) thread. Every fd is opened O_CLOEXEC so
//! nothing of the run dir survives into the workload.

use std::ffi::{CStr, CString};
use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// An errno value; displays as a lowercase strerror ("no such file or
/// directory"), the form kubelet users know from runc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Errno(pub i32);

impl Errno {
    pub(crate) fn last() -> Self {
        Self(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        )
    }
}

impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Self {
        Self(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 128];
        // SAFETY: buf is writable for buf.len() bytes; the XSI strerror_r
        // (the libc crate links __xpg_strerror_r) NUL-terminates within it.
        let ret = unsafe { libc::strerror_r(self.0, buf.as_mut_ptr().cast(), buf.len()) };
        let msg = match CStr::from_bytes_until_nul(&buf) {
            Ok(s) if ret == 0 && !s.is_empty() => s.to_string_lossy(),
            _ => return write!(f, "errno {}", self.0),
        };
        let mut chars = msg.chars();
        if let Some(first) = chars.next() {
            write!(f, "{}{}", first.to_lowercase(), chars.as_str())?;
        }
        Ok(())
    }
}

impl std::error::Error for Errno {}

/// The one place a C return code becomes an error.
fn check(ret: libc::c_int) -> Result<libc::c_int, Errno> {
    if ret == -1 {
        Err(Errno::last())
    } else {
        Ok(ret)
    }
}

fn check_retry(mut call: impl FnMut() -> libc::c_int) -> Result<libc::c_int, Errno> {
    loop {
        match check(call()) {
            Err(Errno(libc::EINTR)) => continue,
            other => return other,
        }
    }
}

/// Opens a directory for use as an `openat` base.
pub(crate) fn open_dir(path: &CStr) -> Result<OwnedFd, Errno> {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: path is a valid NUL-terminated string for the whole call.
    let fd = check_retry(|| unsafe { libc::open(path.as_ptr(), flags) })?;
    // SAFETY: open returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat(dir, name, flags | O_CLOEXEC, mode)`.
pub(crate) fn open_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> Result<OwnedFd, Errno> {
    let flags = flags | libc::O_CLOEXEC;
    // SAFETY: dir is a live fd for the borrow and name a valid C string;
    // mode is passed as the variadic argument openat expects with O_CREAT.
    let fd = check_retry(|| unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags,
            libc::c_uint::from(mode),
        )
    })?;
    // SAFETY: openat returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one byte; `None` on end of file.
pub(crate) fn read_byte(fd: BorrowedFd<'_>) -> Result<Option<u8>, Errno> {
    let mut byte = 0u8;
    // SAFETY: byte is a writable one-byte buffer and fd is live for the borrow.
    let n = check_retry(|| unsafe {
        libc::read(fd.as_raw_fd(), (&raw mut byte).cast(), 1) as libc::c_int
    })?;
    Ok((n == 1).then_some(byte))
}

/// `umount2(path, MNT_DETACH)`.
pub(crate) fn umount_detach(path: &CStr) -> Result<(), Errno> {
    // SAFETY: path is a valid NUL-terminated string for the whole call.
    check(unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

pub(crate) fn setgroups(gids: &[libc::gid_t]) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe the slice, which the kernel
    // only reads; a zero length clears the groups without reading.
    check(unsafe { libc::setgroups(gids.len(), gids.as_ptr()) }).map(drop)
}

pub(crate) fn setgid(gid: libc::gid_t) -> Result<(), Errno> {
    // SAFETY: plain syscall wrapper without pointers.
    check(unsafe { libc::setgid(gid) }).map(drop)
}

pub(crate) fn setuid(uid: libc::uid_t) -> Result<(), Errno> {
    // SAFETY: plain syscall wrapper without pointers.
    check(unsafe { libc::setuid(uid) }).map(drop)
}

/// The file mode mask a workload starts with: runc's and containerd's 022,
/// not whatever the daemon runs with (pvecri's own 077 would make every
/// file a container writes private to its owner, breaking volumes shared
/// between containers running as different users).
pub(crate) fn set_workload_umask() {
    // SAFETY: umask cannot fail and takes an integer.
    unsafe { libc::umask(0o022) };
}

pub(crate) fn set_no_new_privs() -> Result<(), Errno> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }).map(drop)
}

pub(crate) fn chdir(path: &CStr) -> Result<(), Errno> {
    // SAFETY: path is a valid NUL-terminated string for the whole call.
    check(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

/// Keeps the permitted capabilities across the switch to a non-root uid so
/// that `raise_dac_override` can still write `start-error` into the
/// root-owned run dir. It costs the workload nothing: execve clears the flag
/// and computes a non-root process's capabilities without the old permitted
/// set.
pub(crate) fn keep_caps() -> Result<(), Errno> {
    // SAFETY: PR_SET_KEEPCAPS takes integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) }).map(drop)
}

/// Raises CAP_DAC_OVERRIDE into the effective set if it is still permitted
/// (see `keep_caps`); only used on the way to exit.
pub(crate) fn raise_dac_override() -> Result<(), Errno> {
    const CAP_DAC_OVERRIDE: u32 = 1;
    let mut sets = capget()?;
    sets.effective |= sets.permitted & (1 << CAP_DAC_OVERRIDE);
    capset(sets)
}

/// The three per-thread capability sets as 64-bit masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

// <linux/capability.h>: version 3 uses two 32-bit data words.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

pub(crate) fn capget() -> Result<CapSets, Errno> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and data match the kernel's v3 layout and are writable.
    check(unsafe {
        libc::syscall(libc::SYS_capget, &raw mut header, data.as_mut_ptr()) as libc::c_int
    })?;
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok(CapSets {
        effective: join(data[0].effective, data[1].effective),
        permitted: join(data[0].permitted, data[1].permitted),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

pub(crate) fn capset(sets: CapSets) -> Result<(), Errno> {
    let mut header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let split = |v: u64| (v as u32, (v >> 32) as u32);
    let (e0, e1) = split(sets.effective);
    let (p0, p1) = split(sets.permitted);
    let (i0, i1) = split(sets.inheritable);
    let data = [
        CapData {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        CapData {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: header and data match the kernel's v3 layout; capset only
    // reads data.
    check(unsafe { libc::syscall(libc::SYS_capset, &raw mut header, data.as_ptr()) as libc::c_int })
        .map(drop)
}

/// The highest capability number this kernel knows.
pub(crate) fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
        .min(63)
}

/// Drops `cap` from the bounding set; one that is already out is left
/// alone (dropping needs CAP_SETPCAP even then).
pub(crate) fn drop_bounding(cap: u32) -> Result<(), Errno> {
    // SAFETY: PR_CAPBSET_READ takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) } == 0 {
        return Ok(());
    }
    // SAFETY: PR_CAPBSET_DROP takes integer arguments only.
    match check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) }) {
        // A capability this kernel does not have is not in the set.
        Ok(_) | Err(Errno(libc::EINVAL)) => Ok(()),
        Err(e) => Err(e),
    }
}

pub(crate) fn raise_ambient(cap: u32) -> Result<(), Errno> {
    // SAFETY: PR_CAP_AMBIENT takes integer arguments only.
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
            cap as libc::c_ulong,
            0,
            0,
        )
    })
    .map(drop)
}

fn mount(
    source: &CStr,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    // SAFETY: every pointer is a valid NUL-terminated string or null, as
    // mount(2) allows for fstype and data.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.map_or(std::ptr::null(), CStr::as_ptr),
            flags,
            data.map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    })
    .map(drop)
}

/// The mount flags of the filesystem holding `path` that a read-only
/// remount must repeat (the kernel refuses to clear locked ones).
fn locked_flags(path: &CStr) -> Result<libc::c_ulong, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: path is NUL-terminated and st is a writable statvfs.
    check(unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) })?;
    // SAFETY: statvfs succeeded, so st is initialised.
    let st = unsafe { st.assume_init() };
    let mut flags = 0;
    for (vfs, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & vfs != 0 {
            flags |= ms;
        }
    }
    Ok(flags)
}

/// Remounts the mount at `path` read-only, keeping its other flags.
pub(crate) fn remount_readonly(path: &CStr) -> Result<(), Errno> {
    let flags = locked_flags(path)?;
    mount(
        c"",
        path,
        None,
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | flags,
        None,
    )
}

/// Makes the mount at `path` and every mount beneath it read-only with
/// mount_setattr(2) (MOUNT_ATTR_RDONLY, AT_RECURSIVE); a remount would
/// reach only the top one.
pub(crate) fn readonly_recursive(path: &CStr) -> Result<(), Errno> {
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: path is NUL-terminated and outlives the call; attr is a
    // mount_attr of the size passed.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE | libc::AT_SYMLINK_NOFOLLOW,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ) as libc::c_int
    })
    .map(drop)
}

/// Binds `path` onto itself and makes that mount read-only.
pub(crate) fn bind_readonly(path: &CStr) -> Result<(), Errno> {
    mount(path, path, None, libc::MS_BIND | libc::MS_REC, None)?;
    remount_readonly(path)
}

/// Hides `path`: an empty read-only tmpfs over a directory, /dev/null
/// over anything else.
pub(crate) fn mask_path(path: &CStr) -> Result<(), Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: path is NUL-terminated and st is a writable stat.
    check(unsafe { libc::stat(path.as_ptr(), st.as_mut_ptr()) })?;
    // SAFETY: stat succeeded, so st is initialised.
    let st = unsafe { st.assume_init() };
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        mount(
            c"tmpfs",
            path,
            Some(c"tmpfs"),
            libc::MS_RDONLY,
            Some(c"size=0k"),
        )
    } else {
        mount(c"/dev/null", path, None, libc::MS_BIND, None)
    }
}

/// Whether the current (already dropped) credentials may execute `path`.
pub(crate) fn is_executable(path: &Path) -> bool {
    let Ok(path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: path is a valid NUL-terminated string for the whole call.
    // AT_EACCESS checks the effective ids, which execve uses.
    let ret =
        unsafe { libc::faccessat(libc::AT_FDCWD, path.as_ptr(), libc::X_OK, libc::AT_EACCESS) };
    ret == 0
}

/// Gives the workload default signal dispositions and an empty mask, as a
/// fresh process expects: std ignores SIGPIPE (an ignored disposition
/// survives execve, and a workload writing to a closed pipe must die as
/// usual), and whatever the monitor was started with (a shell's ignored
/// SIGINT/SIGQUIT, say) must not leak into the container.
pub(crate) fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: SIG_DFL involves no handler; signals glibc reserves
            // for itself just fail with EINVAL, which is fine.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
    // SAFETY: set is initialised by sigemptyset before sigprocmask reads it;
    // the old-mask pointer may be null.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// A detached recursive clone of the mount tree at `path` (open_tree(2)
/// with OPEN_TREE_CLONE).
pub(crate) fn clone_tree(path: &CStr) -> Result<OwnedFd, Errno> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint;
    // SAFETY: path is NUL-terminated and outlives the call.
    let fd = check(unsafe {
        libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) as libc::c_int
    })?;
    // SAFETY: open_tree returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Joins the mount namespace at `path`; root and cwd become its root.
pub(crate) fn enter_mount_ns(path: &CStr) -> Result<(), Errno> {
    let fd = open_at_cwd(path)?;
    // SAFETY: fd is a live nsfs fd for the duration of the call.
    check(unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNS) }).map(drop)
}

/// Opens `path` read-only (close-on-exec).
pub(crate) fn open_at_cwd(path: &CStr) -> Result<OwnedFd, Errno> {
    // SAFETY: path is NUL-terminated and outlives the call.
    let fd = check(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    // SAFETY: open returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attaches the detached mount tree `fd` at `target` with move_mount(2).
pub(crate) fn attach_mount(fd: OwnedFd, target: &CStr) -> Result<(), Errno> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    // SAFETY: the paths are NUL-terminated and fd is live for the call.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        ) as libc::c_int
    })
    .map(drop)
}

/// Asks AppArmor to confine the next execve with `profile`.
pub(crate) fn apparmor_exec_label(profile: &str) -> Result<(), Errno> {
    let text = format!("exec {profile}");
    // The per-LSM file on newer kernels, the shared one on older.
    let write = |path: &str| std::fs::write(path, text.as_bytes()).map_err(Errno::from);
    write("/proc/thread-self/attr/apparmor/exec").or_else(|_| write("/proc/self/attr/exec"))
}

pub(crate) fn unshare_pid() -> Result<(), Errno> {
    unshare(libc::CLONE_NEWPID)
}

pub(crate) fn unshare(flags: libc::c_int) -> Result<(), Errno> {
    // SAFETY: plain syscall without pointers.
    check(unsafe { libc::unshare(flags) }).map(drop)
}

/// Points fds 0-2 at /dev/null.
pub(crate) fn stdio_to_null() -> Result<(), Errno> {
    // Not close-on-exec: it may itself be one of 0-2 (when they were closed).
    // SAFETY: the path is a NUL-terminated constant.
    let null = check(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) })?;
    // SAFETY: open returned a new fd that nothing else owns.
    let null = unsafe { OwnedFd::from_raw_fd(null) };
    for target in 0..3 {
        // SAFETY: dup2 takes plain fds; the copies (without close-on-exec)
        // replace whatever 0-2 were.
        check(unsafe { libc::dup2(null.as_raw_fd(), target) })?;
    }
    if null.as_raw_fd() <= 2 {
        // It is one of stdio itself (they were closed): keep it open.
        let _ = std::os::fd::IntoRawFd::into_raw_fd(null);
    }
    Ok(())
}

/// `close_range(first, ~0, flags)`: every descriptor from `first` up.
/// ENOSYS on kernels before 5.9 (5.11 for CLOSE_RANGE_CLOEXEC, which
/// older ones refuse with EINVAL).
pub(crate) fn close_range_from(first: libc::c_uint, flags: libc::c_int) -> Result<(), Errno> {
    // SAFETY: close_range takes integers only; closing descriptors other
    // code still owns is the caller's contract (see `fds`).
    check(unsafe { libc::close_range(first, libc::c_uint::MAX, flags) }).map(drop)
}

/// `close_range(first, last, 0)`.
pub(crate) fn close_between(first: libc::c_uint, last: libc::c_uint) -> Result<(), Errno> {
    // SAFETY: as in `close_range_from`.
    check(unsafe { libc::close_range(first, last, 0) }).map(drop)
}

/// Sets FD_CLOEXEC on `fd`, keeping its other descriptor flags.
pub(crate) fn set_cloexec(fd: RawFd) -> Result<(), Errno> {
    // SAFETY: F_GETFD/F_SETFD take integers only; an fd that is not open
    // fails with EBADF.
    let flags = check(unsafe { libc::fcntl(fd, libc::F_GETFD) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) }).map(drop)
}

/// Closes `fd`, ignoring errors: the descriptor is gone either way.
pub(crate) fn close(fd: RawFd) {
    // SAFETY: the caller owns `fd` and does not use it again.
    unsafe { libc::close(fd) };
}

/// `memfd_create(name, flags)`.
pub(crate) fn memfd_create(name: &CStr, flags: libc::c_uint) -> Result<OwnedFd, Errno> {
    // SAFETY: name is NUL-terminated and outlives the call.
    let fd = check(unsafe { libc::memfd_create(name.as_ptr(), flags) })?;
    // SAFETY: memfd_create returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds file seals (F_SEAL_*) to a memfd.
pub(crate) fn add_seals(fd: BorrowedFd<'_>, seals: libc::c_int) -> Result<(), Errno> {
    // SAFETY: F_ADD_SEALS takes an integer; fd is live for the borrow.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) }).map(drop)
}

/// The seals of `fd`; EINVAL for a file that cannot be sealed.
pub(crate) fn seals(fd: BorrowedFd<'_>) -> Result<libc::c_int, Errno> {
    // SAFETY: F_GET_SEALS takes no argument; fd is live for the borrow.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) })
}

/// Copies everything from `from` (at its offset) to `to` with sendfile(2),
/// which takes any file as the destination (copy_file_range refuses to
/// copy from the host's file system into a memfd: EXDEV).
pub(crate) fn copy_all(from: BorrowedFd<'_>, to: BorrowedFd<'_>) -> Result<u64, Errno> {
    let mut total = 0u64;
    loop {
        // SAFETY: both fds are live for the borrows; a null offset uses
        // and advances `from`'s file offset.
        let n = unsafe {
            libc::sendfile(
                to.as_raw_fd(),
                from.as_raw_fd(),
                std::ptr::null_mut(),
                1 << 30,
            )
        };
        match n {
            0 => return Ok(total),
            n if n > 0 => total += n as u64,
            _ => match Errno::last() {
                Errno(libc::EINTR) => {}
                errno => return Err(errno),
            },
        }
    }
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`: runs the program `fd`
/// holds without a path (none is needed, nor /proc); returns only on
/// failure.
pub(crate) fn execve_fd(fd: BorrowedFd<'_>, args: &[CString], env: &[CString]) -> Errno {
    let argv = null_terminated(args);
    let envp = null_terminated(env);
    // SAFETY: the empty path, argv and envp are NUL-terminated and the
    // arrays end in a null pointer; all outlive the call, which only
    // returns on error.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Errno::last()
}

/// `PR_SET_DUMPABLE`: a process that is not dumpable has its /proc files
/// owned by root and may only be ptraced with CAP_SYS_PTRACE.
pub(crate) fn set_dumpable(dumpable: bool) -> Result<(), Errno> {
    // SAFETY: PR_SET_DUMPABLE takes integer arguments only.
    check(unsafe {
        libc::prctl(
            libc::PR_SET_DUMPABLE,
            libc::c_ulong::from(dumpable),
            0,
            0,
            0,
        )
    })
    .map(drop)
}

/// Empties the ambient capability set.
pub(crate) fn clear_ambient() -> Result<(), Errno> {
    // SAFETY: PR_CAP_AMBIENT takes integer arguments only.
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    })
    .map(drop)
}

/// Makes every mount of this (private) mount namespace private, so that
/// nothing done here reaches the host's mounts (and pivot_root accepts it).
pub(crate) fn make_mounts_private() -> Result<(), Errno> {
    mount(c"none", c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)
}

/// Mounts an empty, read-only tmpfs at `target`.
pub(crate) fn mount_empty_tmpfs(target: &CStr) -> Result<(), Errno> {
    mount(
        c"none",
        target,
        Some(c"tmpfs"),
        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        Some(c"size=4k,mode=0555"),
    )
}

/// `pivot_root(".", ".")`: the mount at the working directory becomes
/// the root, with the old root stacked on it until it is detached.
pub(crate) fn pivot_root_here() -> Result<(), Errno> {
    // SAFETY: both paths are NUL-terminated constants.
    check(unsafe {
        libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as libc::c_int
    })
    .map(drop)
}

fn sigchld_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset reads it.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        set
    }
}

/// Blocks SIGCHLD, so that it stays pending until `wait_for_sigchld`
/// takes it: a child that exits between a reaping pass and the wait is
/// not missed.
pub(crate) fn block_sigchld() {
    let set = sigchld_set();
    // SAFETY: set is initialised; the old-mask pointer may be null.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Sleeps until a (blocked) SIGCHLD is pending and takes it.
pub(crate) fn wait_for_sigchld() {
    let set = sigchld_set();
    // SAFETY: set is initialised; a null siginfo pointer is allowed.
    unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) };
}

/// A pipe, both ends close-on-exec: (read, write).
pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    let mut fds = [0; 2];
    // SAFETY: fds is a writable array of two ints, as pipe2 expects.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two new fds that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// `fork()`: the child gets `None`. Only for the single-threaded modes.
///
/// # Safety
/// The calling process must be single-threaded, so that the child may
/// run any code (no lock can be held by a thread that is not copied).
pub(crate) unsafe fn fork() -> Result<Option<libc::pid_t>, Errno> {
    // SAFETY: the caller guarantees a single-threaded process.
    match check(unsafe { libc::fork() })? {
        0 => Ok(None),
        child => Ok(Some(child)),
    }
}

/// `execve`; returns only on failure.
pub(crate) fn execve(path: &CStr, args: &[CString], env: &[CString]) -> Errno {
    let argv = null_terminated(args);
    let envp = null_terminated(env);
    // SAFETY: path, argv and envp are NUL-terminated and the arrays end in a
    // null pointer; all of them outlive the call (which only returns on error).
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Errno::last()
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Reopens the container's terminal through /dev/console, so `tty` and
/// ttyname(3) find it: the terminal is a pty slave from the host's devpts,
/// which the container's /dev/pts does not show, and the monitor has it
/// bound onto /dev/console (as LXC does for its console). Returns whether
/// it did; without that bind (or without a terminal) nothing changes.
pub(crate) fn terminal_as_console() -> Result<bool, Errno> {
    // SAFETY: isatty only inspects the fd.
    if unsafe { libc::isatty(0) } != 1 {
        return Ok(false);
    }
    let mut ours = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fd 0 is open; ours is a writable stat.
    check(unsafe { libc::fstat(0, ours.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so it filled the struct.
    let ours = unsafe { ours.assume_init() };
    let console = c"/dev/console";
    // SAFETY: the path is a NUL-terminated constant.
    let tty = match check(unsafe {
        libc::open(
            console.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    }) {
        Ok(fd) => fd,
        // No bind, or (user namespaces) a terminal owned by an ID the
        // container does not map: keep the inherited descriptors.
        Err(Errno(libc::ENOENT | libc::EACCES)) => return Ok(false),
        Err(e) => return Err(e),
    };
    let mut theirs = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: tty is open; theirs is a writable stat.
    let same = unsafe { libc::fstat(tty, theirs.as_mut_ptr()) } == 0
        // SAFETY: fstat succeeded, so it filled the struct.
        && unsafe { theirs.assume_init() }.st_rdev == ours.st_rdev;
    if same {
        for target in 0..3 {
            // SAFETY: plain fd calls; dup2 onto 0-2 replaces a descriptor
            // of the same terminal and clears CLOEXEC on the copy.
            unsafe {
                if libc::isatty(target) == 1 {
                    libc::dup2(tty, target);
                }
            }
        }
    }
    // SAFETY: tty is ours; the copies stay open.
    unsafe { libc::close(tty) };
    Ok(same)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_displays_lowercase_strerror() {
        assert_eq!(Errno(libc::ENOENT).to_string(), "no such file or directory");
        assert_eq!(Errno(libc::EACCES).to_string(), "permission denied");
    }

    #[test]
    fn unknown_errno_still_says_something() {
        let text = Errno(100_000).to_string();
        assert!(text.contains("100000"), "{text}");
    }
}
