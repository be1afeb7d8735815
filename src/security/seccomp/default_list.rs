//! The syscall names behind RuntimeDefault, as reviewed data.
//!
//! RuntimeDefault allows the names in [`ALLOWED`] and nothing else: a
//! syscall that is on no list here (one the kernel adds next year, or one
//! this list forgot) fails with EPERM. The reference for what a workload
//! needs is the default profile of Docker and containerd; the groups below
//! are sorted by purpose so that a reviewer can judge each name where it
//! belongs. Names cover the x86_64, x86 and x32 ABIs (pvecri-init adds the
//! latter two on x86_64); a name the running libseccomp does not know is
//! skipped when the filter is built, so listing a syscall newer than the
//! library is harmless.

use caps::Capability;

/// Reading and writing open files, pipes and asynchronous I/O.
const FILE_IO: &[&str] = &[
    "close",
    "close_range",
    "copy_file_range",
    "dup",
    "dup2",
    "dup3",
    "fadvise64",
    // x86: fadvise64 with a 64-bit offset
    "fadvise64_64",
    "fallocate",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "flock",
    "fsync",
    "ftruncate",
    "ftruncate64",
    // Every device and socket speaks ioctl; the kernel checks each request.
    "ioctl",
    // Linux AIO (databases use it; io_uring is refused instead, see NEVER).
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_setup",
    "io_submit",
    "_llseek",
    "lseek",
    "pipe",
    "pipe2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readv",
    "sendfile",
    "sendfile64",
    "splice",
    "sync",
    "sync_file_range",
    "syncfs",
    "tee",
    "vmsplice",
    "write",
    "writev",
];

/// Opening, naming and inspecting files and directories.
const FILESYSTEM: &[&str] = &[
    "access",
    // Page cache statistics of a file the caller has open.
    "cachestat",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "creat",
    "faccessat",
    "faccessat2",
    "fchdir",
    "fchmod",
    "fchmodat",
    // glibc 2.39 implements fchmodat(AT_SYMLINK_NOFOLLOW) with it.
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "lchown",
    "lchown32",
    "link",
    "linkat",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    // Device nodes need CAP_MKNOD in the kernel; FIFOs and sockets do not.
    "mknod",
    "mknodat",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "readlink",
    "readlinkat",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "truncate",
    "truncate64",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimes",
];

/// Extended attributes (trusted.* and security.* are checked by the kernel).
const XATTRS: &[&str] = &[
    "fgetxattr",
    "flistxattr",
    "fremovexattr",
    "fsetxattr",
    "getxattr",
    // The *xattrat calls (Linux 6.13) do what the calls above do, relative
    // to a directory descriptor.
    "getxattrat",
    "lgetxattr",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "lremovexattr",
    "lsetxattr",
    "removexattr",
    "removexattrat",
    "setxattr",
    "setxattrat",
];

/// Watching files: inotify only; fanotify needs CAP_SYS_ADMIN here.
const FILE_EVENTS: &[&str] = &[
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
];

/// Waiting on many descriptors, and the descriptors made to be waited on.
const POLLING: &[&str] = &[
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    // Never implemented by the kernel: allowed so that a caller sees ENOSYS
    // rather than EPERM, as under Docker.
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "_newselect",
    "poll",
    "ppoll",
    "pselect6",
    "select",
    "signalfd",
    "signalfd4",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_settime",
];

/// Address space: mappings, locking, sealing, protection keys.
const MEMORY: &[&str] = &[
    "brk",
    "madvise",
    // glibc's CET shadow stack support.
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    // Sealing one's own mappings (Linux 6.10).
    "mseal",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "remap_file_pages",
];

/// Creating, running, waiting for and describing processes and threads
/// (clone and clone3 have argument rules of their own).
const PROCESSES: &[&str] = &[
    "arch_prctl",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "futex",
    "futex_requeue",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "get_robust_list",
    "get_thread_area",
    "getcpu",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getrandom",
    "getrlimit",
    "getrusage",
    "getsid",
    "gettid",
    // Restricting oneself further is always safe.
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    // x86 segment descriptors of one's own process (Wine, old runtimes).
    "modify_ldt",
    "pidfd_open",
    "pidfd_send_signal",
    // Reaping a process that is already being killed.
    "process_mrelease",
    "prctl",
    "prlimit64",
    // Debuggers and strace; the kernel's ptrace access checks apply, and
    // seccomp has been safe from ptrace since Linux 4.8 (Docker allows it).
    "ptrace",
    "restart_syscall",
    "rseq",
    "seccomp",
    "set_robust_list",
    "set_thread_area",
    "set_tid_address",
    "setpgid",
    "setrlimit",
    "setsid",
    "sysinfo",
    "ugetrlimit",
    "uname",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
];

/// Signals, including the pre-rt entry points 32-bit programs use.
const SIGNALS: &[&str] = &[
    "kill",
    "pause",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_tgsigqueueinfo",
    "sigaction",
    "sigaltstack",
    "signal",
    "sigpending",
    "sigprocmask",
    "sigreturn",
    "sigsuspend",
    "tgkill",
    "tkill",
];

/// Clocks, sleeps and timers. adjtimex and clock_adjtime read the clock
/// state; changing it needs CAP_SYS_TIME in the kernel.
const TIME: &[&str] = &[
    "adjtimex",
    "alarm",
    "clock_adjtime",
    "clock_getres",
    "clock_gettime",
    "clock_nanosleep",
    "getitimer",
    "gettimeofday",
    "nanosleep",
    "setitimer",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_settime",
    "times",
];

/// The 64-bit time_t variants a 32-bit program built for dates after 2038
/// calls instead of the ones above (clock_settime64 is with the
/// capability-gated calls).
const TIME64: &[&str] = &[
    "clock_adjtime64",
    "clock_getres_time64",
    "clock_gettime64",
    "clock_nanosleep_time64",
    "futex_time64",
    "io_pgetevents_time64",
    "mq_timedreceive_time64",
    "mq_timedsend_time64",
    "ppoll_time64",
    "pselect6_time64",
    "recvmmsg_time64",
    "rt_sigtimedwait_time64",
    "sched_rr_get_interval_time64",
    "semtimedop_time64",
    "timer_gettime64",
    "timer_settime64",
    "timerfd_gettime64",
    "timerfd_settime64",
    "utimensat_time64",
];

/// Sockets once created (socket itself has an argument rule). socketcall
/// is the x86 multiplexer that carries all of them for old 32-bit code.
const SOCKETS: &[&str] = &[
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmsg",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socketcall",
    "socketpair",
];

/// System V and POSIX IPC, private to the pod's IPC namespace. ipc is the
/// x86 multiplexer for the System V calls.
const IPC: &[&str] = &[
    "ipc",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedsend",
    "mq_unlink",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
];

/// User and group IDs and capability sets; changing them needs
/// CAP_SETUID, CAP_SETGID or CAP_SETPCAP in the kernel.
const CREDENTIALS: &[&str] = &[
    "capget",
    "capset",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getuid",
    "getuid32",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setuid",
    "setuid32",
];

/// CPU and I/O scheduling; raising priorities or real-time policies needs
/// CAP_SYS_NICE in the kernel.
const SCHEDULING: &[&str] = &[
    "getpriority",
    "ioprio_get",
    "ioprio_set",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "setpriority",
];

/// Every syscall RuntimeDefault allows to any container, by group.
pub(super) const ALLOWED: &[&[&str]] = &[
    FILE_IO,
    FILESYSTEM,
    XATTRS,
    FILE_EVENTS,
    POLLING,
    MEMORY,
    PROCESSES,
    SIGNALS,
    TIME,
    TIME64,
    SOCKETS,
    IPC,
    CREDENTIALS,
    SCHEDULING,
];

/// Allowed only when the container holds the capability that gates them
/// in the kernel anyway; the filter keeps them away from a kernel bug when
/// it does not. A name under two capabilities is allowed with either.
pub(super) const BY_CAPABILITY: &[(Capability, &[&str])] = &[
    (
        Capability::CAP_SYS_ADMIN,
        &[
            "bpf",
            "fanotify_init",
            // Useless without a descriptor from fanotify_init.
            "fanotify_mark",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            // open_tree with mount attributes (Linux 6.15).
            "open_tree_attr",
            "perf_event_open",
            "pivot_root",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "swapoff",
            "swapon",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    (
        Capability::CAP_SYS_BOOT,
        &["kexec_file_load", "kexec_load", "reboot"],
    ),
    (Capability::CAP_SYS_CHROOT, &["chroot"]),
    (
        Capability::CAP_SYS_MODULE,
        &["delete_module", "finit_module", "init_module"],
    ),
    (Capability::CAP_SYS_PACCT, &["acct"]),
    (
        Capability::CAP_SYS_PTRACE,
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "userfaultfd",
        ],
    ),
    (Capability::CAP_SYS_RAWIO, &["ioperm", "iopl"]),
    (
        Capability::CAP_SYS_TIME,
        &["clock_settime", "clock_settime64", "settimeofday", "stime"],
    ),
    (Capability::CAP_SYS_TTY_CONFIG, &["vhangup"]),
    (
        Capability::CAP_SYS_NICE,
        &[
            "get_mempolicy",
            "mbind",
            "migrate_pages",
            "move_pages",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    (Capability::CAP_SYSLOG, &["syslog"]),
    (Capability::CAP_BPF, &["bpf"]),
    (Capability::CAP_PERFMON, &["perf_event_open"]),
    (Capability::CAP_DAC_READ_SEARCH, &["open_by_handle_at"]),
];

/// Never allowed, whatever the capabilities. io_uring does its work in
/// kernel threads the filter never sees and has been a steady source of
/// kernel exploits; the kernel keyring is not namespaced; the rest are
/// obsolete or unimplemented interfaces. They are on no allow list (a test
/// keeps them off), and the filter drops them should a list ever name one.
pub(super) const NEVER: &[&str] = &[
    "add_key",
    "afs_syscall",
    "create_module",
    "get_kernel_syms",
    "getpmsg",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "keyctl",
    "nfsservctl",
    "putpmsg",
    "query_module",
    "request_key",
    "security",
    "_sysctl",
    "sysfs",
    "tuxcall",
    "uselib",
    "ustat",
    "vm86",
    "vm86old",
    "vserver",
];
