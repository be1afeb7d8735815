//! The container's mounts as CRIU sees them, from init's mountinfo
//! (parsed by `crate::node::mountinfo`).
//!
//! CRIU recreates a mount at restore either from scratch (proc, sysfs, a
//! fresh tmpfs, devpts, mqueue, cgroup) or as a bind of another mount of
//! the same namespace. Everything else came from the host (pod files,
//! volumes, device nodes): CRIU cannot know its source and refuses to dump
//! it unless told that it is external (`--ext-mount-map <mountpoint>:<key>`).
//! The key chosen here is the mount point itself; a restore maps each key
//! to the new source.

use std::collections::HashSet;
use std::path::Path;

use crate::node::mountinfo::{self, Mount};

/// Filesystems CRIU makes anew when their mount shows the whole filesystem.
const RECREATED: &[&str] = &[
    "proc",
    "sysfs",
    "tmpfs",
    "devpts",
    "mqueue",
    "cgroup",
    "cgroup2",
    "binfmt_misc",
    "securityfs",
    "tracefs",
    "debugfs",
    "pstore",
];

/// Mount points CRIU must be told are external: neither a filesystem it
/// recreates, shown whole, nor a bind of another mount in the same
/// namespace. The root mount is the container's rootfs, restored with
/// `--root`, and is never listed.
pub(crate) fn external(mounts: &[Mount]) -> Vec<String> {
    let whole = Path::new("/");
    mounts
        .iter()
        .filter(|m| m.mount_point != whole)
        .filter(|m| !(m.root == whole && RECREATED.contains(&m.fs_type.as_str())))
        .filter(|m| {
            !mounts.iter().any(|other| {
                other.mount_id != m.mount_id
                    && (other.major, other.minor) == (m.major, m.minor)
                    && other.root != m.root
                    && m.root.starts_with(&other.root)
            })
        })
        .map(|m| m.mount_point.to_string_lossy().into_owned())
        .collect()
}

/// The mount IDs of a namespace, to tell a file opened inside the
/// container from one opened on a host mount.
pub(crate) fn ids(mounts: &[Mount]) -> HashSet<u64> {
    mounts.iter().map(|m| u64::from(m.mount_id)).collect()
}

/// Init's mounts.
pub(crate) fn of_pid(pid: i32) -> std::io::Result<Vec<Mount>> {
    let text = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("mountinfo"))?;
    Ok(mountinfo::parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped like a pvecri container: an overlay root, LXC's /dev tmpfs,
    /// proc with a read-only bind of its own /proc/sys, pod files bound
    /// from the host's /run tmpfs, a volume and a host device node.
    const MOUNTINFO: &str = "\
600 500 0:60 / / rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
601 600 0:61 / /dev rw,nosuid - tmpfs none rw,size=492k,mode=755
602 600 0:62 / /proc rw,nosuid,nodev,noexec - proc proc rw
603 602 0:62 /sys /proc/sys ro,nosuid - proc proc rw
604 600 0:63 / /sys rw - sysfs sysfs rw
605 600 0:25 /pvecri/pods/p1/hostname /etc/hostname rw - tmpfs tmpfs rw
606 600 0:25 /pvecri/pods/p1/resolv.conf /etc/resolv.conf rw - tmpfs tmpfs rw
607 600 254:1 /srv/data /data\\040dir rw - ext4 /dev/vda rw
608 601 0:5 /fuse /dev/fuse rw - devtmpfs udev rw
609 601 0:64 / /dev/pts rw - devpts devpts rw
610 604 0:26 / /sys/fs/cgroup ro - cgroup2 cgroup2 rw
611 600 0:60 /etc /mnt/etc-again rw - overlay overlay rw
";

    #[test]
    fn host_binds_are_external_and_the_rest_is_left_to_criu() {
        let mounts = mountinfo::parse(MOUNTINFO);
        assert_eq!(mounts.len(), 12);
        assert_eq!(
            external(&mounts),
            [
                "/etc/hostname",
                "/etc/resolv.conf",
                "/data dir",
                "/dev/fuse"
            ]
        );
        assert!(ids(&mounts).contains(&605));
    }
}
