//! A restore as the monitor runs it: the [`RestorePlan`] the daemon writes
//! at CreateContainer (`restore.json` next to the unpacked archive) and
//! the criu command line it turns into.
//!
//! The restored tree runs in the pod it is restored into: criu is started
//! inside the pod's network, IPC and UTS namespaces, which the dump left
//! out of the images (see [`super::nsexec`]), and CRIU makes the
//! container's own PID and mount namespaces anew, rooted at the new
//! container's root filesystem. Every mount the dump declared external
//! is given the new container's source for the same mount point; init's
//! stdio becomes the new monitor's pipes (`--inherit-fd`, keys from
//! `descriptors.json`); the tree is placed in the cgroup the starter
//! joined beforehand (`--manage-cgroups=ignore`) and becomes the
//! starter's child (`--restore-sibling`), so its exit status is real.
//! Established TCP connections are closed (`--tcp-close`): the pod's
//! address may differ from the one they were made on.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// CRIU's log of a restore, in the work dir.
pub(crate) const RESTORE_LOG: &str = "restore.log";
/// The plan's file name in the restore dir.
pub(crate) const PLAN: &str = "restore.json";
/// Where the starter moves the container's stdio before it runs criu:
/// fds 0-2 of criu itself are its own (/dev/null and its output file).
pub(crate) const INHERITED_FD_BASE: i32 = 10;

/// Everything the monitor's starter needs to restore one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RestorePlan {
    pub criu: PathBuf,
    /// CRIU's images (the archive's `checkpoint/`).
    pub images_dir: PathBuf,
    /// CRIU's work dir (logs, the pid file).
    pub work_dir: PathBuf,
    /// The new container's root filesystem (mounted on the host).
    pub root: PathBuf,
    /// The pod's pinned namespaces; `None`: the host's (refused at dump).
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    /// The restore keys of init's fds 0, 1 and 2.
    pub descriptors: Vec<String>,
    /// External mount point (the dump's key) -> its source on this node.
    pub mounts: Vec<(String, PathBuf)>,
    /// The container's cgroup directory on every hierarchy; criu joins
    /// them all (the starter does not), and the tree it makes inherits
    /// them.
    pub cgroups: Vec<PathBuf>,
    /// The container's cgroup relative to the hierarchy roots, and the
    /// LXC config's settings for it, which the daemon applies before the
    /// monitor starts (`crate::cgroups::create`).
    pub cgroup: String,
    pub cgroup_settings: Vec<(String, String)>,
}

impl RestorePlan {
    pub(crate) fn pid_file(&self) -> PathBuf {
        self.work_dir.join("restored.pid")
    }

    pub(crate) fn log_file(&self) -> PathBuf {
        self.work_dir.join(RESTORE_LOG)
    }

    /// criu's arguments, with init's stdio expected on
    /// [`INHERITED_FD_BASE`] + 0..3.
    pub(crate) fn criu_args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut push = |s: &dyn AsRef<std::ffi::OsStr>| a.push(s.as_ref().to_owned());
        push(&"restore");
        push(&"--images-dir");
        push(&self.images_dir);
        push(&"--work-dir");
        push(&self.work_dir);
        push(&"--log-file");
        push(&self.log_file());
        push(&"-v4");
        push(&"--root");
        push(&self.root);
        push(&"--restore-detached");
        push(&"--restore-sibling");
        push(&"--pidfile");
        push(&self.pid_file());
        push(&"--manage-cgroups=ignore");
        push(&"--tcp-close");
        push(&"--file-locks");
        for (i, key) in self.descriptors.iter().enumerate() {
            push(&"--inherit-fd");
            push(&format!("fd[{}]:{key}", INHERITED_FD_BASE + i as i32));
        }
        for (key, source) in &self.mounts {
            push(&"--ext-mount-map");
            push(&format!("{key}:{}", source.display()));
        }
        a
    }

    pub(crate) fn read(path: &Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("invalid {}", path.display()))
    }
}

/// Pairs each external mount point of the dump with the new container's
/// source for it; `sources` are the new container's bind mounts (target
/// relative to its root, as the LXC config has them). A mount point the
/// new container does not provide is named in the error.
pub(crate) fn map_mounts(
    external: &[String],
    sources: &[(String, PathBuf)],
) -> Result<Vec<(String, PathBuf)>, String> {
    external
        .iter()
        .map(|key| {
            let rel = key.trim_matches('/');
            sources
                .iter()
                .find(|(target, _)| target.trim_matches('/') == rel)
                .map(|(_, source)| (key.clone(), source.clone()))
                .ok_or_else(|| {
                    format!(
                        "the checkpoint has a mount at {key} that the new container does not provide"
                    )
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> RestorePlan {
        RestorePlan {
            criu: "/usr/sbin/criu".into(),
            images_dir: "/var/lib/pvecri/restore/c2/checkpoint".into(),
            work_dir: "/var/lib/pvecri/restore/c2".into(),
            root: "/var/lib/pvecri/snapshots/overlay/containers/c2/rootfs".into(),
            net: Some("/run/pvecri/ns/p2/net".into()),
            ipc: None,
            uts: None,
            descriptors: vec!["file[18:3]".into(), "pipe:[5]".into(), "pipe:[6]".into()],
            mounts: vec![(
                "/etc/hostname".into(),
                "/run/pvecri/pods/p2/hostname".into(),
            )],
            cgroups: vec!["/sys/fs/cgroup/k/c2".into()],
            cgroup: "k/c2".into(),
            cgroup_settings: vec![("lxc.cgroup2.memory.max".into(), "1048576".into())],
        }
    }

    #[test]
    fn restores_detached_as_a_sibling_with_stdio_and_mounts_mapped() {
        let joined: Vec<String> = plan()
            .criu_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = joined.join(" ");
        assert!(
            joined.starts_with("restore --images-dir /var/lib/pvecri/restore/c2/checkpoint"),
            "{joined}"
        );
        for want in [
            "--root /var/lib/pvecri/snapshots/overlay/containers/c2/rootfs",
            "--restore-detached --restore-sibling",
            "--pidfile /var/lib/pvecri/restore/c2/restored.pid",
            "--inherit-fd fd[10]:file[18:3] --inherit-fd fd[11]:pipe:[5] --inherit-fd fd[12]:pipe:[6]",
            "--ext-mount-map /etc/hostname:/run/pvecri/pods/p2/hostname",
            "--tcp-close",
        ] {
            assert!(joined.contains(want), "{want} missing from {joined}");
        }
    }

    #[test]
    fn plans_round_trip() {
        let p = plan();
        let back: RestorePlan = serde_json::from_slice(&serde_json::to_vec(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn every_external_mount_needs_a_source() {
        let sources = vec![
            ("etc/hostname".to_owned(), PathBuf::from("/run/p2/hostname")),
            ("data".to_owned(), PathBuf::from("/srv/data")),
            (
                "sys/fs/cgroup/".to_owned(),
                PathBuf::from("/sys/fs/cgroup/k/c2"),
            ),
        ];
        let cgroup = map_mounts(&["/sys/fs/cgroup".into()], &sources).unwrap();
        assert_eq!(cgroup[0].1, PathBuf::from("/sys/fs/cgroup/k/c2"));
        let ok = map_mounts(&["/etc/hostname".into(), "/data".into()], &sources).unwrap();
        assert_eq!(ok[1], ("/data".to_owned(), PathBuf::from("/srv/data")));
        let err = map_mounts(&["/secret".into()], &sources).unwrap_err();
        assert!(err.contains("/secret"), "{err}");
    }
}
