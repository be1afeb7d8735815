//! Init's stdin, stdout and stderr, which come from outside the container.
//!
//! stdout and stderr are pipes whose read ends the monitor holds; stdin is
//! a pipe too (`stdin: true`) or the host's `/dev/null`, opened by the
//! starter in the host's mount namespace. A pipe needs nothing at dump
//! time (its key, `pipe:[ino]`, is what a restore passes to
//! `--inherit-fd`). A file on a mount the container cannot see makes CRIU
//! fail ("Can't lookup mount") unless it is declared external as
//! `file[<mnt_id>:<inode>]` (both in hex). The keys of fds 0-2 are kept in
//! the archive (`descriptors.json`) for a restore.

use std::collections::HashSet;
use std::path::PathBuf;

/// One of init's standard fds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StdioFd {
    pub fd: u8,
    /// The key a restore's `--inherit-fd fd[N]:<key>` names.
    pub key: String,
    /// Whether the dump must declare it `--external`.
    pub external: bool,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StdioError {
    #[error("cannot read fd {fd} of process {pid}")]
    Read {
        pid: i32,
        fd: u8,
        #[source]
        source: std::io::Error,
    },
    #[error("fd {fd} of process {pid} is a terminal or device CRIU cannot take: {target}")]
    Unsupported { pid: i32, fd: u8, target: String },
}

/// What `/proc/<pid>/fd/<fd>` tells about one fd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FdFacts {
    /// The link's target (`pipe:[123]`, `/dev/null`).
    pub target: String,
    /// `mnt_id` from fdinfo.
    pub mnt_id: u64,
    pub inode: u64,
    /// For a character device: its device number.
    pub rdev: Option<u64>,
}

/// Decides the key of one fd; `container_mounts` are the mount IDs of
/// init's own mount namespace.
pub(crate) fn classify(
    pid: i32,
    fd: u8,
    facts: &FdFacts,
    container_mounts: &HashSet<u64>,
) -> Result<StdioFd, StdioError> {
    if facts.target.starts_with("pipe:[") || facts.target.starts_with("socket:[") {
        return Ok(StdioFd {
            fd,
            key: facts.target.clone(),
            external: false,
        });
    }
    // Only /dev/null (1:3) is expected among the character devices: a
    // terminal would need CRIU's tty handling, which pvecri refuses
    // (`tty: true` containers) before getting here.
    let is_null = facts.rdev == Some(libc::makedev(1, 3));
    if facts.rdev.is_some() && !is_null {
        return Err(StdioError::Unsupported {
            pid,
            fd,
            target: facts.target.clone(),
        });
    }
    Ok(StdioFd {
        fd,
        key: format!("file[{:x}:{:x}]", facts.mnt_id, facts.inode),
        external: !container_mounts.contains(&facts.mnt_id),
    })
}

/// Reads the facts of fds 0-2 of `pid` and classifies them.
pub(crate) fn inspect(
    pid: i32,
    container_mounts: &HashSet<u64>,
) -> Result<Vec<StdioFd>, StdioError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    (0u8..=2)
        .map(|fd| {
            let err = |source| StdioError::Read { pid, fd, source };
            let link = PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
            let target = std::fs::read_link(&link).map_err(err)?;
            let meta = std::fs::metadata(&link).map_err(err)?;
            let fdinfo =
                std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).map_err(err)?;
            let facts = FdFacts {
                target: target.to_string_lossy().into_owned(),
                mnt_id: mnt_id(&fdinfo).unwrap_or_default(),
                inode: meta.ino(),
                rdev: meta.file_type().is_char_device().then(|| meta.rdev()),
            };
            classify(pid, fd, &facts, container_mounts)
        })
        .collect()
}

/// The `mnt_id:` field of an fdinfo file.
fn mnt_id(fdinfo: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(target: &str, mnt_id: u64, inode: u64, rdev: Option<u64>) -> FdFacts {
        FdFacts {
            target: target.into(),
            mnt_id,
            inode,
            rdev,
        }
    }

    #[test]
    fn pipes_are_kept_by_inode_and_host_dev_null_is_external() {
        let ours = HashSet::from([600, 601]);
        let pipe = classify(1, 1, &facts("pipe:[77727]", 14, 77727, None), &ours).unwrap();
        assert_eq!(pipe.key, "pipe:[77727]");
        assert!(!pipe.external);
        let null = libc::makedev(1, 3);
        let host = classify(1, 0, &facts("/dev/null", 24, 3, Some(null)), &ours).unwrap();
        assert_eq!(host.key, "file[18:3]");
        assert!(host.external, "mount 24 is not the container's");
        let inside = classify(1, 0, &facts("/dev/null", 601, 5, Some(null)), &ours).unwrap();
        assert!(!inside.external);
    }

    #[test]
    fn terminals_are_refused() {
        let pts = facts("/dev/pts/0", 24, 3, Some(libc::makedev(136, 0)));
        let err = classify(7, 0, &pts, &HashSet::new()).unwrap_err();
        assert!(err.to_string().contains("/dev/pts/0"), "{err}");
    }

    #[test]
    fn fdinfo_mount_ids_are_read() {
        assert_eq!(
            mnt_id("pos:\t0\nflags:\t0100002\nmnt_id:\t24\nino:\t3\n"),
            Some(24)
        );
        assert_eq!(mnt_id("pos: 0\n"), None);
    }
}
