//! cgroup v1 cpuset: a new cgroup starts with empty `cpuset.cpus` and
//! `cpuset.mems` (no process may enter it) unless its parent has
//! `cgroup.clone_children` set, in which case it copies the parent's.
//!
//! liblxc fills in the cgroups it creates itself, but not the ones that
//! already exist: the kubelet makes `kubepods/<qos>/pod<uid>` with its
//! cpus and mems set and `clone_children` off, so the container cgroup
//! liblxc then creates beneath it stays empty and the start fails with
//! ENOSPC ("Failed to enter cgroup"). [`prepare`] sets `clone_children` on
//! every existing ancestor (filling empty cpus/mems from above first),
//! before the container's cgroup is created.

use std::io;
use std::path::{Path, PathBuf};

use super::CgroupMount;

/// The mount point of the v1 cpuset hierarchy (its mount showing the
/// whole hierarchy) among the cgroup mounts; `None` on a unified-only host.
pub fn mount_point(mounts: &[CgroupMount]) -> Option<PathBuf> {
    mounts
        .iter()
        .find(|m| m.has_v1_controller("cpuset") && m.root == Path::new("/"))
        .map(|m| m.mount_point.clone())
}

/// Makes every existing ancestor on `parent` (relative to the hierarchy
/// at `mount`) hand its cpus and mems to new children.
pub(crate) fn prepare(mount: &Path, parent: &str) -> io::Result<()> {
    let mut above = mount.to_owned();
    for part in parent.split('/').filter(|p| !p.is_empty() && *p != "..") {
        let dir = above.join(part);
        if !dir.is_dir() {
            // liblxc creates the rest and fills them in.
            break;
        }
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let current = std::fs::read_to_string(dir.join(file))?;
            if current.trim().is_empty() {
                let inherited = std::fs::read_to_string(above.join(file))?;
                std::fs::write(dir.join(file), inherited.trim())?;
            }
        }
        let clone = dir.join("cgroup.clone_children");
        if std::fs::read_to_string(&clone)?.trim() != "1" {
            std::fs::write(&clone, "1")?;
        }
        above = dir;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::cgroup_mounts;
    use crate::node::mountinfo;

    fn mounts(text: &str) -> Vec<CgroupMount> {
        cgroup_mounts(mountinfo::parse(text))
    }

    #[test]
    fn finds_the_cpuset_hierarchy() {
        let text = "\
33 25 0:27 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
38 25 0:33 /lxc/ct1 /mnt/ct1\\040cpuset rw - cgroup cgroup rw,cpuset
34 33 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
39 33 0:33 / /sys/fs/cgroup/cpuset rw,nosuid - cgroup cgroup rw,cpuset
40 33 0:34 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
";
        assert_eq!(
            mount_point(&mounts(text)),
            Some("/sys/fs/cgroup/cpuset".into())
        );
        let unified = "33 25 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(mount_point(&mounts(unified)), None);
    }

    fn cgroup(dir: &Path, cpus: &str, mems: &str, clone: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("cpuset.cpus"), cpus).unwrap();
        std::fs::write(dir.join("cpuset.mems"), mems).unwrap();
        std::fs::write(dir.join("cgroup.clone_children"), clone).unwrap();
    }

    #[test]
    fn existing_ancestors_pass_cpus_and_mems_down() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        cgroup(r, "0-1\n", "0\n", "0\n");
        // As the kubelet leaves them: filled in, clone_children off; and
        // one made by something else, empty.
        cgroup(&r.join("kubepods"), "0-1\n", "0\n", "0\n");
        cgroup(&r.join("kubepods/besteffort"), "\n", "\n", "0\n");
        prepare(r, "kubepods/besteffort/pod1").unwrap();
        let read = |p: &str| std::fs::read_to_string(r.join(p)).unwrap();
        assert_eq!(read("kubepods/cgroup.clone_children"), "1");
        assert_eq!(read("kubepods/besteffort/cgroup.clone_children"), "1");
        assert_eq!(read("kubepods/besteffort/cpuset.cpus"), "0-1");
        assert_eq!(read("kubepods/besteffort/cpuset.mems"), "0");
        // The root is never touched, and missing levels are left to liblxc.
        assert_eq!(read("cgroup.clone_children"), "0\n");
        assert!(!r.join("kubepods/besteffort/pod1").exists());
    }
}
