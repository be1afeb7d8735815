//! The container's mounts as CRIU sees them, from init's mountinfo.
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

/// One line of `/proc/<pid>/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountInfo {
    pub id: u64,
    pub dev: String,
    /// The mounted directory of its filesystem (`/` for the whole one).
    pub root: String,
    pub mount_point: String,
    pub fstype: String,
}

/// Parses a mountinfo file's text; lines that do not parse are skipped.
pub(crate) fn parse(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountInfo> {
    let (head, tail) = line.split_once(" - ")?;
    let f: Vec<&str> = head.split(' ').collect();
    if f.len() < 5 {
        return None;
    }
    Some(MountInfo {
        id: f[0].parse().ok()?,
        dev: f[2].to_owned(),
        root: unescape(f[3]),
        mount_point: unescape(f[4]),
        fstype: tail.split(' ').next()?.to_owned(),
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).ok();
            if let Some(v) = oct.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points CRIU must be told are external: neither a filesystem it
/// recreates, shown whole, nor a bind of another mount in the same
/// namespace. The root mount is the container's rootfs, restored with
/// `--root`, and is never listed.
pub(crate) fn external(mounts: &[MountInfo]) -> Vec<String> {
    mounts
        .iter()
        .filter(|m| m.mount_point != "/")
        .filter(|m| !(m.root == "/" && RECREATED.contains(&m.fstype.as_str())))
        .filter(|m| {
            !mounts.iter().any(|other| {
                other.id != m.id
                    && other.dev == m.dev
                    && other.root != m.root
                    && is_under(&m.root, &other.root)
            })
        })
        .map(|m| m.mount_point.clone())
        .collect()
}

/// Whether `path` is `dir` or below it.
fn is_under(path: &str, dir: &str) -> bool {
    dir == "/"
        || path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The mount IDs of a namespace, to tell a file opened inside the
/// container from one opened on a host mount.
pub(crate) fn ids(mounts: &[MountInfo]) -> HashSet<u64> {
    mounts.iter().map(|m| m.id).collect()
}

/// Init's mounts.
pub(crate) fn of_pid(pid: i32) -> std::io::Result<Vec<MountInfo>> {
    let text = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("mountinfo"))?;
    Ok(parse(&text))
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
        let mounts = parse(MOUNTINFO);
        assert_eq!(mounts.len(), 12);
        assert_eq!(mounts[7].mount_point, "/data dir", "octal escapes decoded");
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

    #[test]
    fn prefixes_are_whole_components() {
        assert!(is_under("/a/b", "/a"));
        assert!(is_under("/a", "/"));
        assert!(!is_under("/ab", "/a"));
    }
}
