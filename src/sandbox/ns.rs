//! Pinned pod namespaces: a sandbox without a pause process.
//!
//! [`pin`] creates the pod's namespaces with `unshare(2)` on a fresh,
//! short-lived `std::thread`, configures them from inside (hostname, `lo`
//! up, namespaced sysctls) and bind-mounts that thread's
//! `/proc/thread-self/ns/<kind>` onto `R/ns/<sandbox-id>/<kind>`. The bind
//! mounts are what keep the namespaces alive; containers join them with
//! `lxc.namespace.share.<kind> = <path>`, and [`unpin`] drops them.
//!
//! Why a fresh thread, joined before returning: `unshare` moves only the
//! calling thread, for good. On a tokio worker or a `spawn_blocking` thread
//! that thread would go on to run unrelated work inside the pod's
//! namespaces (sockets opened in the pod's netns, the pod's hostname). A
//! thread that exits after pinning takes its references along, so the
//! namespaces of a failed pin vanish on their own and only the mounts need
//! undoing.
//!
//! Why the sysctls are written on that thread: files under `/proc/sys/net`
//! and the ipc sysctls resolve against the namespaces of the thread that
//! opens them, not of the process. (`/proc/net` by contrast follows the
//! thread group leader, and `/sys/class/net` the netns that mounted sysfs:
//! neither shows a pod's netns.)
//!
//! `R/ns` is made a private mount ([`prepare_ns_root`]) so the pins do not
//! propagate into other mount namespaces, where copies would keep a pod's
//! namespaces alive after [`unpin`].

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::statfs::{statfs, NSFS_MAGIC};
use thiserror::Error;

use crate::node::mountinfo;

use super::hostname::{validate_hostname, InvalidHostname};
use super::loopback::bring_up_loopback;
use super::sysctl::{Sysctl, SysctlError};

/// A namespace a sandbox can pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum NsKind {
    Net,
    Ipc,
    Uts,
}

impl NsKind {
    #[cfg(test)]
    pub(crate) const ALL: [NsKind; 3] = [NsKind::Net, NsKind::Ipc, NsKind::Uts];

    /// The pin's file name, the same as under `/proc/<pid>/ns/`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            NsKind::Net => "net",
            NsKind::Ipc => "ipc",
            NsKind::Uts => "uts",
        }
    }

    /// The flag for `unshare(2)` and `setns(2)`.
    pub(crate) fn clone_flag(self) -> CloneFlags {
        match self {
            NsKind::Net => CloneFlags::CLONE_NEWNET,
            NsKind::Ipc => CloneFlags::CLONE_NEWIPC,
            NsKind::Uts => CloneFlags::CLONE_NEWUTS,
        }
    }
}

impl fmt::Display for NsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct PinRequest<'a> {
    /// `R/ns/<sandbox-id>`; must not exist yet, its parent must.
    pub dir: &'a Path,
    pub kinds: &'a [NsKind],
    /// Set only when `Uts` is pinned: otherwise the pod shares the host's
    /// uts namespace and the name is the host's own.
    pub hostname: Option<&'a str>,
    /// `(name, value)`; see [`Sysctl`] for which names are allowed.
    pub sysctls: &'a [(String, String)],
    /// Join the namespaces of this process instead of creating new ones
    /// (the user-namespace helper made them inside the pod's user
    /// namespace; see `super::userns`).
    pub join: Option<i32>,
    /// Join the network namespace pinned at this path instead of creating
    /// one: a spare made ahead of need, `lo` already up ([`make_spare_net`]).
    pub net_from: Option<&'a Path>,
}

#[derive(Debug, Error)]
pub(crate) enum NsError {
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error(transparent)]
    Hostname(#[from] InvalidHostname),
    #[error("namespace directory {dir} already exists")]
    DirExists { dir: PathBuf },
    #[error("creating the namespace directory {dir} failed")]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pinning the {kind} namespace in {dir}: {step} failed")]
    Pin {
        dir: PathBuf,
        kind: NsKind,
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("pinning the {kind} namespace in {dir}: setting sysctl {name} to {value:?} failed")]
    SysctlWrite {
        dir: PathBuf,
        kind: NsKind,
        name: String,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("pinning namespaces in {dir}: cannot start the namespace thread")]
    Thread {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pinning namespaces in {dir}: the namespace thread panicked")]
    ThreadPanicked { dir: PathBuf },
    #[error("unpinning {path}: {step} failed")]
    Unpin {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("preparing the namespace root {root}: {step} failed")]
    Root {
        root: PathBuf,
        step: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Creates, configures and pins the namespaces of one sandbox.
///
/// Runs the namespace work on a dedicated thread and joins it (see the
/// module docs). On any failure the pins made so far are unmounted and the
/// directory removed; the error names the namespace and the step.
/// Blocks for about a millisecond (mostly netns creation): call it from
/// `spawn_blocking` in async code.
pub(crate) fn pin(req: &PinRequest) -> Result<(), NsError> {
    let mut kinds: Vec<NsKind> = Vec::with_capacity(req.kinds.len());
    for kind in req.kinds {
        if !kinds.contains(kind) {
            kinds.push(*kind);
        }
    }
    let sysctls = req
        .sysctls
        .iter()
        .map(|(name, value)| Sysctl::parse(name, value))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(s) = sysctls.iter().find(|s| !kinds.contains(&s.namespace())) {
        return Err(SysctlError::NamespaceNotPinned {
            name: s.name().to_owned(),
            namespace: s.namespace(),
        }
        .into());
    }
    let hostname = req.hostname.filter(|_| kinds.contains(&NsKind::Uts));
    if let Some(hostname) = hostname {
        validate_hostname(hostname)?;
    }

    let dir = req.dir;
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(NsError::DirExists {
                dir: dir.to_owned(),
            })
        }
        Err(source) => {
            return Err(NsError::CreateDir {
                dir: dir.to_owned(),
                source,
            })
        }
    }

    let work = PinWork {
        dir,
        kinds: &kinds,
        hostname,
        sysctls: &sysctls,
        join: req.join,
        net_from: req.net_from,
    };
    let result = std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("pvecri-ns-pin".into())
            .spawn_scoped(scope, || work.run())
            .map_err(|source| NsError::Thread {
                dir: dir.to_owned(),
                source,
            })?;
        thread.join().map_err(|_| NsError::ThreadPanicked {
            dir: dir.to_owned(),
        })?
    });
    if let Err(err) = result {
        if let Err(cleanup) = unpin(dir) {
            tracing::warn!(dir = %dir.display(), error = %cleanup, "cannot undo a failed namespace pin");
        }
        return Err(err);
    }
    tracing::debug!(dir = %dir.display(), kinds = ?kinds, "pinned pod namespaces");
    Ok(())
}

/// Unmounts and removes every pin under `dir`, then `dir`. A missing `dir`
/// is not an error, so it can be called again after a partial failure.
pub(crate) fn unpin(dir: &Path) -> Result<(), NsError> {
    let fail = |path: &Path, step| {
        let path = path.to_owned();
        move |source: io::Error| NsError::Unpin { path, step, source }
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail(dir, "reading the directory")(e)),
    };
    for entry in entries {
        let path = entry.map_err(fail(dir, "reading the directory"))?.path();
        // A pin mounted over another one needs one unmount per layer.
        while is_nsfs(&path) {
            umount2(&path, MntFlags::MNT_DETACH)
                .map_err(|e| fail(&path, "unmounting")(e.into()))?;
        }
        ignore_not_found(fs::remove_file(&path)).map_err(fail(&path, "removing"))?;
    }
    ignore_not_found(fs::remove_dir(dir)).map_err(fail(dir, "removing"))?;
    tracing::debug!(dir = %dir.display(), "unpinned pod namespaces");
    Ok(())
}

/// Makes a network namespace ahead of need: `lo` up, pinned at
/// `dir/net` (`dir` must not exist). A pod's [`pin`] joins it with
/// [`PinRequest::net_from`]; [`unpin`] drops the spare's own pin after that
/// (the pod's pin keeps the namespace) or when it is never used.
pub(crate) fn make_spare_net(dir: &Path) -> Result<(), NsError> {
    pin(&PinRequest {
        dir,
        kinds: &[NsKind::Net],
        hostname: None,
        sysctls: &[],
        join: None,
        net_from: None,
    })
}

/// Makes `root` (`R/ns`) a private mount: a bind mount of itself, unless
/// it already is a mount point (a daemon restart), then private. Call it
/// once at startup, before any [`pin`], not concurrently with itself.
pub(crate) fn prepare_ns_root(root: &Path) -> Result<(), NsError> {
    let fail = |step| {
        move |source: io::Error| NsError::Root {
            root: root.to_owned(),
            step,
            source,
        }
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(fail("creating the directory"))?;
    let path = root.canonicalize().map_err(fail("resolving the path"))?;
    let mounted = mountinfo::read_self()
        .map_err(fail("reading /proc/self/mountinfo"))?
        .iter()
        .any(|m| m.mount_point == path);
    if !mounted {
        mount(
            Some(&path),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| fail("bind-mounting it onto itself")(e.into()))?;
    }
    mount(
        None::<&str>,
        &path,
        None::<&str>,
        MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| fail("making it private")(e.into()))?;
    Ok(())
}

/// Whether `dir/<kind>` is a pinned namespace (an nsfs mount).
#[cfg(test)]
pub(crate) fn is_pinned(dir: &Path, kind: NsKind) -> bool {
    is_nsfs(&dir.join(kind.name()))
}

/// Whether `path` is an nsfs file (a pinned namespace).
pub(crate) fn is_nsfs(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

fn ignore_not_found(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// What the namespace thread does, in order.
struct PinWork<'a> {
    dir: &'a Path,
    kinds: &'a [NsKind],
    hostname: Option<&'a str>,
    sysctls: &'a [Sysctl],
    join: Option<i32>,
    net_from: Option<&'a Path>,
}

impl PinWork<'_> {
    /// Must run on a thread of its own that exits afterwards.
    fn run(&self) -> Result<(), NsError> {
        for &kind in self.kinds {
            match (self.join, self.net_from) {
                (None, Some(spare)) if kind == NsKind::Net => {
                    let ns = fs::File::open(spare)
                        .map_err(|e| self.fail(kind, "opening the spare namespace", e))?;
                    nix::sched::setns(&ns, kind.clone_flag())
                        .map_err(|e| self.fail(kind, "setns", e.into()))?
                }
                (None, _) => {
                    unshare(kind.clone_flag()).map_err(|e| self.fail(kind, "unshare", e.into()))?
                }
                (Some(pid), _) => {
                    let ns = fs::File::open(format!("/proc/{pid}/ns/{}", kind.name()))
                        .map_err(|e| self.fail(kind, "opening the helper's namespace", e))?;
                    nix::sched::setns(&ns, kind.clone_flag())
                        .map_err(|e| self.fail(kind, "setns", e.into()))?
                }
            }
        }
        if let Some(hostname) = self.hostname {
            nix::unistd::sethostname(hostname)
                .map_err(|e| self.fail(NsKind::Uts, "sethostname", e.into()))?;
        }
        if self.kinds.contains(&NsKind::Net) && self.net_from.is_none() {
            bring_up_loopback().map_err(|e| self.fail(NsKind::Net, "bringing up lo", e))?;
        }
        for sysctl in self.sysctls {
            write_sysctl(sysctl).map_err(|source| NsError::SysctlWrite {
                dir: self.dir.to_owned(),
                kind: sysctl.namespace(),
                name: sysctl.name().to_owned(),
                value: sysctl.value().to_owned(),
                source,
            })?;
        }
        for &kind in self.kinds {
            self.bind(kind)?;
        }
        Ok(())
    }

    fn bind(&self, kind: NsKind) -> Result<(), NsError> {
        let target = self.dir.join(kind.name());
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&target)
            .map_err(|e| self.fail(kind, "creating the pin file", e))?;
        let source = Path::new("/proc/thread-self/ns").join(kind.name());
        mount(
            Some(&source),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| self.fail(kind, "bind-mounting the pin", e.into()))
    }

    fn fail(&self, kind: NsKind, step: &'static str, source: io::Error) -> NsError {
        NsError::Pin {
            dir: self.dir.to_owned(),
            kind,
            step,
            source,
        }
    }
}

/// Opened on the namespace thread: the file resolves against its namespaces.
fn write_sysctl(sysctl: &Sysctl) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(sysctl.proc_path())?
        .write_all(sysctl.value().as_bytes())
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use nix::sched::setns;

    use super::*;
    use crate::sandbox::loopback::loopback_flags;

    fn have_root(test: &str) -> bool {
        let root = nix::unistd::geteuid().is_root();
        if !root {
            eprintln!("skipping {test}: needs root");
        }
        root
    }

    fn ino(path: impl AsRef<Path>) -> u64 {
        fs::metadata(path).unwrap().ino()
    }

    fn read_sysctl(key: &str) -> String {
        fs::read_to_string(Path::new("/proc/sys").join(key))
            .unwrap()
            .trim()
            .to_owned()
    }

    fn hostname() -> String {
        nix::unistd::gethostname().unwrap().into_string().unwrap()
    }

    fn sysctls(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// Runs `f` on a fresh thread that has joined the pinned namespaces,
    /// as a container sharing them would.
    fn inside<T: Send>(dir: &Path, kinds: &[NsKind], f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    for &kind in kinds {
                        let ns = File::open(dir.join(kind.name())).unwrap();
                        setns(&ns, kind.clone_flag()).unwrap();
                    }
                    f()
                })
                .join()
                .unwrap()
        })
    }

    #[test]
    fn pin_creates_configured_namespaces_that_outlive_the_thread() {
        if !have_root("pin_creates_configured_namespaces_that_outlive_the_thread") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sb1");
        let host_port_start = read_sysctl("net/ipv4/ip_unprivileged_port_start");
        let host_rmid = read_sysctl("kernel/shm_rmid_forced");
        let host_name = hostname();
        let own: Vec<u64> = NsKind::ALL
            .iter()
            .map(|k| ino(format!("/proc/thread-self/ns/{k}")))
            .collect();

        let sysctls = sysctls(&[
            ("net.ipv4.ip_unprivileged_port_start", "0"),
            ("kernel.shm_rmid_forced", "1"),
        ]);
        pin(&PinRequest {
            dir: &dir,
            kinds: &NsKind::ALL,
            hostname: Some("pod-a"),
            sysctls: &sysctls,
            join: None,
            net_from: None,
        })
        .unwrap();
        let _cleanup = Unpin(&dir);

        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        for (kind, own) in NsKind::ALL.iter().zip(&own) {
            assert!(is_pinned(&dir, *kind), "{kind} not pinned");
            assert_ne!(ino(dir.join(kind.name())), *own, "{kind} is the host's");
            // The caller's thread never left its namespaces.
            assert_eq!(ino(format!("/proc/thread-self/ns/{kind}")), *own);
        }

        let (lo_flags, name, port_start, rmid, net) = inside(&dir, &NsKind::ALL, || {
            (
                loopback_flags().unwrap(),
                hostname(),
                read_sysctl("net/ipv4/ip_unprivileged_port_start"),
                read_sysctl("kernel/shm_rmid_forced"),
                ino("/proc/thread-self/ns/net"),
            )
        });
        assert_ne!(lo_flags & libc::IFF_UP, 0, "lo is down in the pod");
        assert_eq!(name, "pod-a");
        // A fresh netns starts at 1024 and a fresh ipc ns at 0, so these
        // values can only come from pin's writes.
        assert_eq!(port_start, "0");
        assert_eq!(rmid, "1");
        assert_eq!(net, ino(dir.join("net")));

        assert_eq!(
            read_sysctl("net/ipv4/ip_unprivileged_port_start"),
            host_port_start
        );
        assert_eq!(read_sysctl("kernel/shm_rmid_forced"), host_rmid);
        assert_eq!(hostname(), host_name);

        unpin(&dir).unwrap();
        assert!(!dir.exists());
        unpin(&dir).unwrap();
    }

    #[test]
    fn pinning_a_subset_leaves_the_rest_to_the_host() {
        if !have_root("pinning_a_subset_leaves_the_rest_to_the_host") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sb");
        pin(&PinRequest {
            dir: &dir,
            kinds: &[NsKind::Ipc, NsKind::Ipc],
            hostname: Some("ignored"),
            sysctls: &sysctls(&[("fs.mqueue.queues_max", "300")]),
            join: None,
            net_from: None,
        })
        .unwrap();
        let _cleanup = Unpin(&dir);
        assert!(is_pinned(&dir, NsKind::Ipc));
        assert!(!is_pinned(&dir, NsKind::Net));
        assert!(!dir.join("uts").exists());
        assert_eq!(
            inside(&dir, &[NsKind::Ipc], || read_sysctl("fs/mqueue/queues_max")),
            "300"
        );
        unpin(&dir).unwrap();
        assert!(!dir.exists());
    }

    #[test]
    fn refused_sysctls_leave_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sb");
        let try_pin = |kinds: &[NsKind], pairs: &[(&str, &str)]| {
            pin(&PinRequest {
                dir: &dir,
                kinds,
                hostname: None,
                sysctls: &sysctls(pairs),
                join: None,
                net_from: None,
            })
        };
        let err = try_pin(&NsKind::ALL, &[("vm.swappiness", "10")]).unwrap_err();
        assert!(
            matches!(&err, NsError::Sysctl(SysctlError::NotNamespaced { name }) if name == "vm.swappiness"),
            "{err}"
        );
        let err = try_pin(&NsKind::ALL, &[("kernel.hostname", "x")]).unwrap_err();
        assert!(
            matches!(err, NsError::Sysctl(SysctlError::NotNamespaced { .. })),
            "{err}"
        );
        let err = try_pin(&[NsKind::Ipc], &[("net.ipv4.ip_forward", "1")]).unwrap_err();
        assert!(
            matches!(
                err,
                NsError::Sysctl(SysctlError::NamespaceNotPinned {
                    namespace: NsKind::Net,
                    ..
                })
            ),
            "{err}"
        );
        let err = try_pin(&[NsKind::Net], &[("kernel.sem", "1 2 3 4")]).unwrap_err();
        assert!(
            matches!(err, NsError::Sysctl(SysctlError::NamespaceNotPinned { .. })),
            "{err}"
        );
        let err = try_pin(&NsKind::ALL, &[("net/../vm/swappiness", "1")]).unwrap_err();
        assert!(
            matches!(err, NsError::Sysctl(SysctlError::InvalidName { .. })),
            "{err}"
        );
        assert!(!dir.exists());
    }

    #[test]
    fn failed_sysctl_writes_roll_back() {
        if !have_root("failed_sysctl_writes_roll_back") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sb");
        let host_rmem = read_sysctl("net/core/rmem_max");
        for (name, value) in [
            ("net.ipv4.no_such_sysctl", "1"),
            ("kernel.shmmni", "not-a-number"),
            // Host-wide despite the net. prefix: outside the initial netns
            // the kernel refuses the write (EACCES) instead of leaking it.
            ("net.core.rmem_max", "12345"),
        ] {
            let result = pin(&PinRequest {
                dir: &dir,
                kinds: &NsKind::ALL,
                hostname: Some("pod-a"),
                sysctls: &sysctls(&[(name, value)]),
                join: None,
                net_from: None,
            });
            let left_behind = dir.exists();
            let _ = unpin(&dir);
            let err = result.unwrap_err();
            assert!(
                matches!(&err, NsError::SysctlWrite { name: n, .. } if n == name),
                "{name}: {err}"
            );
            assert!(err.to_string().contains(name), "{err}");
            assert!(!left_behind, "{name}: {dir:?} left behind");
        }
        assert_eq!(read_sysctl("net/core/rmem_max"), host_rmem);
    }

    #[test]
    fn an_existing_directory_is_neither_used_nor_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let err = pin(&PinRequest {
            dir: tmp.path(),
            kinds: &NsKind::ALL,
            hostname: None,
            sysctls: &[],
            join: None,
            net_from: None,
        })
        .unwrap_err();
        assert!(matches!(err, NsError::DirExists { .. }), "{err}");
        assert!(tmp.path().is_dir());
    }

    #[test]
    fn bad_hostname_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sb");
        let err = pin(&PinRequest {
            dir: &dir,
            kinds: &NsKind::ALL,
            hostname: Some("pod_a"),
            sysctls: &[],
            join: None,
            net_from: None,
        })
        .unwrap_err();
        assert!(matches!(err, NsError::Hostname(_)), "{err}");
        assert!(!dir.exists());
    }

    #[test]
    fn is_pinned_is_false_for_plain_and_missing_files() {
        let tmp = tempfile::tempdir().unwrap();
        File::create(tmp.path().join("net")).unwrap();
        assert!(!is_pinned(tmp.path(), NsKind::Net));
        assert!(!is_pinned(tmp.path(), NsKind::Uts));
    }

    /// Unmounts lazily on drop, so a failing test leaves no mounts.
    struct Unmount(PathBuf);

    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = umount2(&self.0, MntFlags::MNT_DETACH);
        }
    }

    /// Unpins on drop, so a failing test leaves no pins.
    struct Unpin<'a>(&'a Path);

    impl Drop for Unpin<'_> {
        fn drop(&mut self) {
            let _ = unpin(self.0);
        }
    }

    fn mounts_at(path: &Path) -> Vec<mountinfo::Mount> {
        mountinfo::read_self()
            .unwrap()
            .into_iter()
            .filter(|m| m.mount_point == path)
            .collect()
    }

    #[test]
    fn ns_root_is_one_private_mount_even_under_a_shared_parent() {
        if !have_root("ns_root_is_one_private_mount_even_under_a_shared_parent") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let parent = tmp.path().canonicalize().unwrap();
        // Like /run on a systemd host: a shared mount, whose new submounts
        // join its peer group and would propagate.
        mount(
            Some("tmpfs"),
            &parent,
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        let _parent = Unmount(parent.clone());
        mount(
            None::<&str>,
            &parent,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap();
        assert!(mounts_at(&parent)[0]
            .optional_fields
            .iter()
            .any(|t| t.starts_with("shared:")));

        let root = parent.join("run/ns");
        let _root = Unmount(root.clone());
        prepare_ns_root(&root).unwrap();
        prepare_ns_root(&root).unwrap();
        let at_root = mounts_at(&root);
        assert_eq!(at_root.len(), 1, "{at_root:?}");
        assert!(
            !at_root[0]
                .optional_fields
                .iter()
                .any(|t| t.starts_with("shared:")),
            "{at_root:?}"
        );

        let dir = root.join("sb1");
        pin(&PinRequest {
            dir: &dir,
            kinds: &[NsKind::Net],
            hostname: None,
            sysctls: &[],
            join: None,
            net_from: None,
        })
        .unwrap();
        let _cleanup = Unpin(&dir);
        assert!(is_pinned(&dir, NsKind::Net));
        let pins = mounts_at(&dir.join("net"));
        assert_eq!(pins.len(), 1, "{pins:?}");
        assert!(
            pins[0].optional_fields.is_empty(),
            "pin propagates: {pins:?}"
        );
        unpin(&dir).unwrap();
        assert!(!dir.exists());
    }
}
