//! Moving this process into the cgroups another process is in, on every
//! hierarchy the node mounts: a v1 hierarchy found by its controllers (or
//! its `name=`), cgroup2 by the `0::` line. The exec helper does this
//! before it joins a container, so that the command it forks there starts
//! in the container's cgroups.
//!
//! The paths come from `/proc/<pid>/cgroup` read in the host's cgroup
//! namespace, so they start at each hierarchy's root; a mount showing only
//! part of a hierarchy serves only the cgroups below its root. Every file
//! is opened beneath its mount point without following a symlink: the
//! names on the way may be the container's.
//!
//! Cost matters here (every exec pays it): writing a process to
//! `cgroup.procs` takes the kernel's global threadgroup lock for writing,
//! which waits for an RCU grace period, milliseconds on an idle VM. A
//! single-threaded process moving only itself (`"0"` to a v1 `tasks`
//! file) takes no such lock, and a child cloned straight into its cgroup2
//! cgroup (`CLONE_INTO_CGROUP`) needs no move at all. So [`enter`] moves
//! the caller on the v1 hierarchies and hands back the cgroup2 directory
//! for the caller's clone; [`Unified::enter`] is the slow move for kernels
//! without clone3.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{open, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use super::CgroupMount;

#[derive(Debug, thiserror::Error)]
pub(crate) enum EnterError {
    #[error("cannot read the node's cgroup mounts")]
    Mounts(#[source] std::io::Error),
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("enter needs a single-threaded process")]
    Threads(#[from] crate::monitor::ThreadsError),
    #[error("cannot move into the cgroup of {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One hierarchy's `cgroup.procs`: a mount point of the host and the
/// file's path below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcsFile {
    pub mount_point: PathBuf,
    pub rel: PathBuf,
    /// On the cgroup2 hierarchy.
    pub v2: bool,
}

impl ProcsFile {
    fn path(&self) -> PathBuf {
        self.mount_point.join(&self.rel)
    }

    /// The same cgroup's `name` (`tasks`, or `.` for its directory).
    fn sibling(&self, name: &str) -> ProcsFile {
        ProcsFile {
            mount_point: self.mount_point.clone(),
            rel: self.rel.with_file_name(name),
            v2: self.v2,
        }
    }
}

/// The `cgroup.procs` files that put a process where the `/proc/<pid>/cgroup`
/// text `proc_cgroup` says another one is, one per hierarchy mounted here.
/// A hierarchy the node does not mount (or shows no mount for that path)
/// is left out: no process here could be moved on it anyway.
pub(crate) fn procs_files(proc_cgroup: &str, mounts: &[CgroupMount]) -> Vec<ProcsFile> {
    let mut out: Vec<ProcsFile> = Vec::new();
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let unified = id == "0" && controllers.is_empty();
        let controllers: Vec<&str> = controllers.split(',').filter(|c| !c.is_empty()).collect();
        if !unified && controllers.is_empty() {
            continue;
        }
        let serves = |m: &&CgroupMount| {
            if unified {
                m.v2
            } else {
                controllers.iter().all(|c| m.has_v1_controller(c))
            }
        };
        let found = mounts.iter().filter(serves).find_map(|m| {
            Some(ProcsFile {
                mount_point: m.mount_point.clone(),
                rel: m.relative(path)?.join("cgroup.procs"),
                v2: unified,
            })
        });
        if let Some(file) = found {
            if !out.iter().any(|f| f.path() == file.path()) {
                out.push(file);
            }
        }
    }
    out
}

/// The cgroup2 cgroup [`enter`] found and did not move into: its directory
/// (for `CLONE_INTO_CGROUP`) and its `cgroup.procs`, both opened.
#[derive(Debug)]
pub(crate) struct Unified {
    pub dir: OwnedFd,
    procs: OwnedFd,
    path: PathBuf,
}

impl Unified {
    /// Moves the calling process into this cgroup by `cgroup.procs` (the
    /// way with the grace period), for when it cannot clone into it.
    pub(crate) fn enter(self) -> Result<(), EnterError> {
        // "0" is the writer itself, whatever PID namespace reads it.
        std::fs::File::from(self.procs)
            .write_all(b"0")
            .map_err(|source| EnterError::Write {
                path: self.path,
                source,
            })
    }
}

/// Moves this single-threaded process into the cgroups `proc_cgroup`
/// (another process's `/proc/<pid>/cgroup`, read from the host) names on
/// every mounted v1 hierarchy, and opens the cgroup2 one, which it leaves
/// to the caller (see the module comment). All files are opened before the
/// first move.
pub(crate) fn enter(proc_cgroup: &str) -> Result<Option<Unified>, EnterError> {
    let mounts = super::read_mounts().map_err(EnterError::Mounts)?;
    let files = procs_files(proc_cgroup, &mounts);
    // `tasks` moves one thread: with a second one the process would be
    // split across cgroups.
    crate::monitor::ensure_single_threaded()?;
    let mut unified = None;
    let mut tasks = Vec::with_capacity(files.len());
    for f in &files {
        if f.v2 {
            let dir = f.sibling(".");
            unified = Some(Unified {
                dir: open_beneath(&dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?,
                procs: open_beneath(f, OFlag::O_WRONLY)?,
                path: f.path(),
            });
        } else {
            let file = f.sibling("tasks");
            tasks.push((file.path(), open_beneath(&file, OFlag::O_WRONLY)?));
        }
    }
    for (path, fd) in tasks {
        // "0": the writing thread, the only one.
        std::fs::File::from(fd)
            .write_all(b"0")
            .map_err(|source| EnterError::Write { path, source })?;
    }
    Ok(unified)
}

/// Opens `f.rel` (with `flags`) beneath the mount point, refusing symlinks
/// and anything that leaves the mount.
pub(super) fn open_beneath(f: &ProcsFile, flags: OFlag) -> Result<OwnedFd, EnterError> {
    let err = |source| EnterError::Open {
        path: f.path(),
        source,
    };
    let root = open(
        &f.mount_point,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(err)?;
    let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_MAGICLINKS
            | ResolveFlag::RESOLVE_NO_XDEV,
    );
    openat2(&root, &f.rel, how).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::cgroup_mounts;
    use crate::node::mountinfo;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:15 - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";

    fn files(proc_cgroup: &str, mountinfo_text: &str) -> Vec<(String, String)> {
        procs_files(
            proc_cgroup,
            &cgroup_mounts(mountinfo::parse(mountinfo_text)),
        )
        .into_iter()
        .map(|f| {
            (
                f.mount_point.display().to_string(),
                f.rel.display().to_string(),
            )
        })
        .collect()
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.to_owned(), b.to_owned())
    }

    #[test]
    fn every_mounted_hierarchy_of_a_hybrid_host() {
        let proc_cgroup = "\
12:pids:/kubepods/pod1/c1
9:name=systemd:/kubepods/pod1/c1
4:memory:/kubepods/pod1/c1
2:cpu,cpuacct:/kubepods/pod1/c1
0::/kubepods/pod1/c1
";
        assert_eq!(
            files(proc_cgroup, HYBRID),
            [
                // pids is not mounted here: nothing to join on it.
                pair("/sys/fs/cgroup/systemd", "kubepods/pod1/c1/cgroup.procs"),
                pair("/sys/fs/cgroup/memory", "kubepods/pod1/c1/cgroup.procs"),
                pair(
                    "/sys/fs/cgroup/cpu,cpuacct",
                    "kubepods/pod1/c1/cgroup.procs"
                ),
                pair("/sys/fs/cgroup/unified", "kubepods/pod1/c1/cgroup.procs"),
            ]
        );
    }

    #[test]
    fn only_the_cgroup2_mount_is_marked_unified() {
        let marks: Vec<(String, bool)> = procs_files(
            "4:memory:/k/c1\n0::/k/c1\n",
            &cgroup_mounts(mountinfo::parse(HYBRID)),
        )
        .into_iter()
        .map(|f| (f.mount_point.display().to_string(), f.v2))
        .collect();
        assert_eq!(
            marks,
            [
                ("/sys/fs/cgroup/memory".to_owned(), false),
                ("/sys/fs/cgroup/unified".to_owned(), true),
            ]
        );
        // A v1 file's sibling (the thread-level `tasks`) stays v1.
        let f = ProcsFile {
            mount_point: "/sys/fs/cgroup/memory".into(),
            rel: "k/c1/cgroup.procs".into(),
            v2: false,
        };
        let tasks = f.sibling("tasks");
        assert_eq!(tasks.rel, std::path::Path::new("k/c1/tasks"));
        assert!(!tasks.v2);
    }

    #[test]
    fn the_unified_hierarchy_alone() {
        let unified = "33 25 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            files("0::/pvecri/c1\n", unified),
            [pair("/sys/fs/cgroup", "pvecri/c1/cgroup.procs")]
        );
        // A process in the root cgroup joins the root.
        assert_eq!(
            files("0::/\n", unified),
            [pair("/sys/fs/cgroup", "cgroup.procs")]
        );
        // A v1 line finds no v1 mount on a unified host.
        assert!(files("4:memory:/a\n", unified).is_empty());
    }

    #[test]
    fn a_mount_of_part_of_a_hierarchy_serves_only_what_it_shows() {
        let partial = "\
50 31 0:38 /kubepods /mnt/pods rw - cgroup2 cgroup2 rw
51 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            files("0::/kubepods/pod1\n", partial),
            [pair("/mnt/pods", "pod1/cgroup.procs")]
        );
        assert_eq!(
            files("0::/system.slice/x.service\n", partial),
            [pair(
                "/sys/fs/cgroup/unified",
                "system.slice/x.service/cgroup.procs"
            )]
        );
        // A sibling whose name only starts like the mount's root.
        assert_eq!(
            files("0::/kubepods-besteffort/p\n", partial),
            [pair(
                "/sys/fs/cgroup/unified",
                "kubepods-besteffort/p/cgroup.procs"
            )]
        );
    }

    #[test]
    fn paths_that_climb_or_lines_that_are_not_cgroups_are_left_out() {
        assert!(files("0::/a/../../etc\n", HYBRID).is_empty());
        assert!(files("garbage\n3::/x\n", HYBRID).is_empty());
        // A controller list must be carried whole by one mount.
        assert!(files("2:cpu,memory:/x\n", HYBRID).is_empty());
    }

    #[test]
    fn a_symlink_on_the_way_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::fs::write(dir.path().join("real/cgroup.procs"), b"").unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        let file = |rel: &str| ProcsFile {
            mount_point: dir.path().to_owned(),
            rel: rel.into(),
            v2: false,
        };
        let w = OFlag::O_WRONLY;
        open_beneath(&file("real/cgroup.procs"), w).unwrap();
        // The siblings enter opens: `tasks` and the directory itself.
        std::fs::write(dir.path().join("real/tasks"), b"").unwrap();
        open_beneath(&file("real/cgroup.procs").sibling("tasks"), w).unwrap();
        open_beneath(
            &file("real/cgroup.procs").sibling("."),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        )
        .unwrap();
        let refused = |f: ProcsFile, flags: OFlag, errno: Errno| {
            let err = open_beneath(&f, flags).unwrap_err();
            assert!(
                matches!(err, EnterError::Open { source, .. } if source == errno),
                "{err:?}"
            );
        };
        refused(
            file("link/cgroup.procs").sibling("."),
            OFlag::O_RDONLY,
            Errno::ELOOP,
        );
        refused(file("link/cgroup.procs"), w, Errno::ELOOP);
        refused(file("../cgroup.procs"), w, Errno::EXDEV);
    }
}
