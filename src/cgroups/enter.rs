//! Moving this process into the cgroups another process is in, on every
//! hierarchy the node mounts: a v1 hierarchy found by its controllers (or
//! its `name=`), cgroup2 by the `0::` line. The exec helper does this
//! before it joins a container liblxc did not start (one restored from a
//! checkpoint), so that the command it forks there starts in the
//! container's cgroups.
//!
//! The paths come from `/proc/<pid>/cgroup` read in the host's cgroup
//! namespace, so they start at each hierarchy's root; a mount showing only
//! part of a hierarchy serves only the cgroups below its root. Every
//! `cgroup.procs` is opened beneath its mount point without following a
//! symlink: the names on the way may be the container's.

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
    #[error("cannot move into the cgroup of {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One hierarchy's `cgroup.procs` to write: a mount point of the host and
/// the file's path below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcsFile {
    pub mount_point: PathBuf,
    pub rel: PathBuf,
}

impl ProcsFile {
    fn path(&self) -> PathBuf {
        self.mount_point.join(&self.rel)
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

/// Moves this process into the cgroups `proc_cgroup` (another process's
/// `/proc/<pid>/cgroup`, read from the host) names, on every mounted
/// hierarchy; all files are opened before the first move.
pub(crate) fn enter(proc_cgroup: &str) -> Result<(), EnterError> {
    let mounts = super::read_mounts().map_err(EnterError::Mounts)?;
    let files = procs_files(proc_cgroup, &mounts);
    let mut opened = Vec::with_capacity(files.len());
    for f in &files {
        opened.push((f.path(), open_beneath(f)?));
    }
    for (path, fd) in opened {
        // "0" is the writer itself, whatever PID namespace reads it.
        std::fs::File::from(fd)
            .write_all(b"0")
            .map_err(|source| EnterError::Write { path, source })?;
    }
    Ok(())
}

/// Opens `f.rel` for writing beneath the mount point, refusing symlinks
/// and anything that leaves the mount.
fn open_beneath(f: &ProcsFile) -> Result<OwnedFd, EnterError> {
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
    let how = OpenHow::new()
        .flags(OFlag::O_WRONLY | OFlag::O_CLOEXEC)
        .resolve(
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
        };
        open_beneath(&file("real/cgroup.procs")).unwrap();
        let err = open_beneath(&file("link/cgroup.procs")).unwrap_err();
        assert!(
            matches!(
                err,
                EnterError::Open {
                    source: Errno::ELOOP,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = open_beneath(&file("../cgroup.procs")).unwrap_err();
        assert!(
            matches!(
                err,
                EnterError::Open {
                    source: Errno::EXDEV,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
