//! The checkpoint archive: an uncompressed tar in the layout CRI-O writes
//! and checkpoint tools (`checkpointctl`) read:
//!
//! | entry | content |
//! |---|---|
//! | `checkpoint/` | CRIU's images (the directory entry itself included) |
//! | `config.dump` | [`ConfigDump`], JSON |
//! | `spec.dump` | an OCI runtime spec of the container, JSON ([`spec_dump`]) |
//! | `rootfs-diff.tar`, `deleted.files` | the writable layer ([`super::rootfs_diff`]) |
//! | `dump.log`, `stats-dump` | CRIU's log and statistics |
//!
//! The archive holds every memory page of the workload, secrets included,
//! so it is created 0600 and appears at its final name only when complete
//! (a temporary name in the same directory, then rename).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;
use serde::{Deserialize, Serialize};

use crate::container::ContainerRecord;
use crate::pod::PodRecord;

/// Names inside the archive.
pub(crate) const CHECKPOINT_DIR: &str = "checkpoint";
pub(crate) const CONFIG_DUMP: &str = "config.dump";
pub(crate) const SPEC_DUMP: &str = "spec.dump";
pub(crate) const ROOTFS_DIFF: &str = "rootfs-diff.tar";
pub(crate) const DELETED_FILES: &str = "deleted.files";
pub(crate) const DUMP_LOG: &str = "dump.log";
pub(crate) const STATS_DUMP: &str = "stats-dump";
/// The images of pre-dump `n` (1-based), next to `checkpoint/`: pre-copy
/// archives carry them, the final images naming the last as their
/// parent.
pub(crate) fn pre_dump_dir(n: u32) -> String {
    format!("pre-{n}")
}

/// pvecri's own addition inside `checkpoint/`: the restore keys of init's
/// fds 0-2 ([`super::stdio`]).
pub(crate) const DESCRIPTORS: &str = "descriptors.json";

/// `config.dump`. The field names are the ones checkpoint tools parse;
/// times are RFC 3339 as Go writes `time.Time` (the zero time for a
/// container never restored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConfigDump {
    pub id: String,
    pub name: String,
    pub rootfs_image: String,
    pub rootfs_image_ref: String,
    pub rootfs_image_name: String,
    pub runtime: String,
    pub created_time: String,
    pub checkpointed_time: String,
    pub restored_time: String,
    pub restored: bool,
}

/// Go's zero `time.Time` in JSON.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn rfc3339_ns(ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns.max(0) as u64);
    crate::monitor::timestamp::rfc3339_nano(t)
}

impl ConfigDump {
    pub(crate) fn new(c: &ContainerRecord, checkpointed_ns: i64) -> Self {
        let image = if c.config.user_specified_image.is_empty() {
            c.config.image.clone()
        } else {
            c.config.user_specified_image.clone()
        };
        ConfigDump {
            id: c.id.clone(),
            name: c.config.name.clone(),
            rootfs_image: image,
            rootfs_image_ref: c.image_id.clone(),
            rootfs_image_name: if c.image_name.is_empty() {
                c.config.image.clone()
            } else {
                c.image_name.clone()
            },
            runtime: crate::version::RUNTIME_NAME.to_owned(),
            created_time: rfc3339_ns(c.created_at_ns),
            checkpointed_time: rfc3339_ns(checkpointed_ns),
            restored_time: ZERO_TIME.to_owned(),
            restored: false,
        }
    }
}

/// Facts of the node recorded in `spec.dump`'s annotations.
#[derive(Debug, Clone, Default)]
pub(crate) struct Provenance {
    pub criu_version: String,
    pub kernel: String,
    pub cgroup_version: &'static str,
}

/// `spec.dump`: the container as an OCI runtime spec. Tools identify the
/// engine and the pod from its annotations: the CRI-O set (which
/// `checkpointctl` requires: metadata, creation time, pod IP, pod name
/// and namespace) plus `org.criu.checkpoint.*` naming pvecri as the engine.
pub(crate) fn spec_dump(
    c: &ContainerRecord,
    pod: &PodRecord,
    mount_points: &[String],
    node: &Provenance,
) -> serde_json::Value {
    let cfg = &c.config;
    let mut a: BTreeMap<String, String> = cfg
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let json = |v: serde_json::Value| v.to_string();
    let mut put = |k: &str, v: String| {
        a.insert(k.to_owned(), v);
    };
    put("io.container.manager", "cri-o".into());
    put("io.kubernetes.cri-o.ContainerType", "container".into());
    put("io.kubernetes.cri-o.ContainerID", c.id.clone());
    put("io.kubernetes.cri-o.SandboxID", pod.id.clone());
    put(
        "io.kubernetes.cri-o.Metadata",
        json(serde_json::json!({ "name": cfg.name, "attempt": cfg.attempt })),
    );
    put("io.kubernetes.cri-o.Created", rfc3339_ns(c.created_at_ns));
    put("io.kubernetes.cri-o.Name", cfg.name.clone());
    put("io.kubernetes.cri-o.ImageName", cfg.image.clone());
    put("io.kubernetes.cri-o.ImageRef", c.image_id.clone());
    put("io.kubernetes.cri-o.LogPath", c.log_file.clone());
    put("io.kubernetes.cri-o.TTY", cfg.tty.to_string());
    put("io.kubernetes.cri-o.Stdin", cfg.stdin.to_string());
    put("io.kubernetes.cri-o.StdinOnce", cfg.stdin_once.to_string());
    put(
        "io.kubernetes.cri-o.Labels",
        json(serde_json::json!(cfg.labels)),
    );
    put(
        "io.kubernetes.cri-o.Annotations",
        json(serde_json::json!(cfg.annotations)),
    );
    for (i, ip) in pod.ips.iter().enumerate() {
        put(&format!("io.kubernetes.cri-o.IP.{i}"), ip.clone());
    }
    if pod.ips.is_empty() {
        put("io.kubernetes.cri-o.IP.0", String::new());
    }
    put("io.kubernetes.pod.name", pod.config.name.clone());
    put("io.kubernetes.pod.namespace", pod.config.namespace.clone());
    put("io.kubernetes.pod.uid", pod.config.uid.clone());
    put("io.kubernetes.container.name", cfg.name.clone());
    put("org.criu.checkpoint.engine.name", "pvecri".into());
    put(
        "org.criu.checkpoint.engine.version",
        crate::version::PACKAGE_VERSION.into(),
    );
    put(
        "org.criu.checkpoint.runtime.name",
        crate::version::RUNTIME_NAME.into(),
    );
    put(
        "org.criu.checkpoint.criu.version",
        node.criu_version.clone(),
    );
    put(
        "org.criu.checkpoint.host.arch",
        std::env::consts::ARCH.into(),
    );
    put("org.criu.checkpoint.host.kernel", node.kernel.clone());
    put(
        "org.criu.checkpoint.cgroup.version",
        node.cgroup_version.into(),
    );
    put("org.criu.checkpoint.container.name", cfg.name.clone());
    put("org.criu.checkpoint.pod.name", pod.config.name.clone());
    put("org.criu.checkpoint.pod.id", pod.id.clone());
    put(
        "org.criu.checkpoint.pod.namespace",
        pod.config.namespace.clone(),
    );
    put("org.criu.checkpoint.rootfsImageName", cfg.image.clone());
    put("org.criu.checkpoint.rootfsImageID", c.image_id.clone());

    let mounts: Vec<serde_json::Value> = mount_points
        .iter()
        .map(|dest| {
            let spec = cfg.mounts.iter().find(|m| &m.container_path == dest);
            // The pod's files are bound from its files dir under their own
            // names; anything else not in the request (device nodes, the
            // cgroup view) has no source to name.
            let pod_file = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"]
                .contains(&dest.as_str())
                .then(|| {
                    let name = dest.rsplit('/').next().unwrap_or_default();
                    format!("{}/{name}", pod.files_dir)
                });
            let source = match (spec, pod_file) {
                (Some(m), _) => m.host_path.clone(),
                (None, Some(f)) if !pod.files_dir.is_empty() => f,
                _ => String::new(),
            };
            serde_json::json!({
                "destination": dest,
                "type": "bind",
                "source": source,
                "options": if spec.is_some_and(|m| m.readonly) {
                    vec!["rbind", "ro"]
                } else {
                    vec!["rbind", "rw"]
                },
            })
        })
        .collect();
    let args: Vec<&String> = cfg.command.iter().chain(cfg.args.iter()).collect();
    let env: Vec<String> = cfg.envs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": cfg.tty,
            "args": args,
            "env": env,
            "cwd": if cfg.working_dir.is_empty() { "/" } else { cfg.working_dir.as_str() },
        },
        "root": { "path": "rootfs", "readonly": cfg.security.readonly_rootfs },
        "hostname": pod.config.hostname,
        "mounts": mounts,
        "annotations": a,
        "linux": {
            "cgroupsPath": c.cgroup,
            "maskedPaths": cfg.security.masked_paths,
            "readonlyPaths": cfg.security.readonly_paths,
        },
    })
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ArchiveError {
    #[error("location {path}: {message}")]
    Location { path: PathBuf, message: String },
    #[error("cannot write the archive {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where an archive goes: its directory, opened once (no symlink on the
/// way), and the name in it.
#[derive(Debug)]
pub(crate) struct Destination {
    path: PathBuf,
    dir: OwnedFd,
    name: String,
}

impl Destination {
    /// Checks `location` on the filesystem: its parent is an existing
    /// directory reached without symlinks, and the name is free or an
    /// existing regular file (replaced, as CRI-O does, but atomically).
    /// `location` is already absolute and normalised (`crate::cri::convert`).
    pub(crate) fn open(location: &Path) -> Result<Self, ArchiveError> {
        let bad = |message: &str| ArchiveError::Location {
            path: location.to_owned(),
            message: message.to_owned(),
        };
        let (Some(parent), Some(name)) = (location.parent(), location.file_name()) else {
            return Err(bad("has no parent directory and file name"));
        };
        match std::fs::canonicalize(parent) {
            Ok(real) if real == parent => {}
            Ok(_) => return Err(bad("its parent directory is reached through a symlink")),
            Err(_) => return Err(bad("its parent directory does not exist")),
        }
        let dir = nix::fcntl::open(
            parent,
            OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
            Mode::empty(),
        )
        .map_err(|_| bad("its parent is not a directory"))?;
        let name = name.to_string_lossy().into_owned();
        match nix::sys::stat::fstatat(&dir, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => {}
            Ok(_) => return Err(bad("exists and is not a regular file")),
            Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(bad(&format!("cannot be checked: {e}"))),
        }
        Ok(Destination {
            path: location.to_owned(),
            dir,
            name,
        })
    }

    /// Writes the tar of `work` (its `checkpoint/`, the images of
    /// `pre_copies` pre-dumps and the top-level files it holds) at the
    /// destination; returns the archive's size. CRIU's `parent` links
    /// between image directories are left out: a restore makes them
    /// again (`super::unpack`).
    pub(crate) fn write_from(&self, work: &Path, pre_copies: u32) -> Result<u64, ArchiveError> {
        let pre: Vec<String> = (1..=pre_copies).map(pre_dump_dir).collect();
        let dirs: Vec<&str> = std::iter::once(CHECKPOINT_DIR)
            .chain(pre.iter().map(String::as_str))
            .collect();
        self.write_tree(
            work,
            &dirs,
            &[
                CONFIG_DUMP,
                SPEC_DUMP,
                ROOTFS_DIFF,
                DELETED_FILES,
                DUMP_LOG,
                STATS_DUMP,
            ],
        )
    }

    /// Writes the tar of the directories `dirs` and the files `files` of
    /// `work` (those present) at the destination, 0600 and atomically;
    /// returns the archive's size.
    pub(crate) fn write_tree(
        &self,
        work: &Path,
        dirs: &[&str],
        files: &[&str],
    ) -> Result<u64, ArchiveError> {
        let werr = |source| ArchiveError::Write {
            path: self.path.clone(),
            source,
        };
        let tmp = format!(".{}.{}.tmp", self.name, crate::runtime::now_ns());
        let fd = nix::fcntl::openat(
            &self.dir,
            tmp.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| werr(e.into()))?;
        let file = File::from(fd);
        let mut guard = TempFile {
            dir: &self.dir,
            name: Some(tmp.clone()),
        };
        // The umask cannot widen it, but an inherited default ACL could.
        nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(0o600))
            .map_err(|e| werr(e.into()))?;
        let mut tar = tar::Builder::new(file);
        tar.follow_symlinks(false);
        for dir in dirs {
            append_flat_dir(&mut tar, work, dir).map_err(werr)?;
        }
        for name in files {
            let path = work.join(name);
            if path.exists() {
                tar.append_path_with_name(&path, name).map_err(werr)?;
            }
        }
        let mut file = tar.into_inner().map_err(werr)?;
        file.flush().map_err(werr)?;
        file.sync_all().map_err(werr)?;
        let size = file.metadata().map_err(werr)?.len();
        nix::fcntl::renameat(&self.dir, tmp.as_str(), &self.dir, self.name.as_str())
            .map_err(|e| werr(e.into()))?;
        guard.name = None;
        let _ = nix::unistd::fsync(&self.dir);
        Ok(size)
    }
}

/// Appends directory `name` of `work` and the regular files directly in
/// it (image directories are flat); symlinks and anything else are left
/// out.
fn append_flat_dir(tar: &mut tar::Builder<File>, work: &Path, name: &str) -> std::io::Result<()> {
    let dir = work.join(name);
    tar.append_dir(format!("{name}/"), &dir)?;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        if entry.file_type()?.is_file() {
            let inner = Path::new(name).join(entry.file_name());
            tar.append_path_with_name(entry.path(), inner)?;
        }
    }
    Ok(())
}

/// Removes a partly written archive unless disarmed.
struct TempFile<'a> {
    dir: &'a OwnedFd,
    name: Option<String>,
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            let _ = nix::unistd::unlinkat(
                self.dir,
                name.as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn record() -> (ContainerRecord, PodRecord) {
        let c: ContainerRecord = serde_json::from_value(serde_json::json!({
            "id": "c1", "pod_id": "p1",
            "config": serde_json::to_value(crate::container::ContainerConfig {
                name: "counter".into(),
                image: "sha256:abc".into(),
                user_specified_image: "busybox:1.29".into(),
                command: vec!["sh".into()],
                args: vec!["-c".into(), "true".into()],
                ..Default::default()
            }).unwrap(),
            "image_id": "sha256:abc", "image_ref": "r/busybox@sha256:def",
            "image_name": "r/busybox:1.29", "top_layer": null, "state": "Running",
            "created_at_ns": 1_700_000_000_000_000_000i64, "started_at_ns": 0,
            "finished_at_ns": 0, "exit_code": 0, "reason": "", "message": "",
            "log_file": "/var/log/pods/x/counter/0.log", "cgroup": "kubepods/c1",
            "init_pid": 42, "init_start_time": 1, "stop_signal": "",
        }))
        .unwrap();
        let pod: PodRecord = serde_json::from_value(serde_json::json!({
            "id": "p1",
            "config": serde_json::to_value(crate::pod::PodConfig {
                name: "web".into(), namespace: "default".into(), uid: "u1".into(),
                ..Default::default()
            }).unwrap(),
            "state": "Ready", "created_at_ns": 0, "ns_dir": "/run/pvecri/ns/p1",
            "net_ns": null, "ipc_ns": null, "uts_ns": null,
            "files_dir": "/run/pvecri/pods/p1", "ips": ["10.88.0.5"],
        }))
        .unwrap();
        (c, pod)
    }

    #[test]
    fn config_dump_uses_the_field_names_tools_read() {
        let (c, _) = record();
        let v = serde_json::to_value(ConfigDump::new(&c, 1_700_000_001_500_000_000)).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = [
            "id",
            "name",
            "rootfsImage",
            "rootfsImageRef",
            "rootfsImageName",
            "runtime",
            "createdTime",
            "checkpointedTime",
            "restoredTime",
            "restored",
        ];
        want.sort_unstable();
        let mut keys = keys;
        keys.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(v["name"], "counter");
        assert_eq!(v["rootfsImage"], "busybox:1.29");
        assert_eq!(v["rootfsImageName"], "r/busybox:1.29");
        assert_eq!(v["createdTime"], "2023-11-14T22:13:20Z");
        assert_eq!(v["checkpointedTime"], "2023-11-14T22:13:21.5Z");
        assert_eq!(v["restoredTime"], ZERO_TIME);
    }

    #[test]
    fn spec_dump_carries_what_checkpointctl_needs() {
        let (c, pod) = record();
        let v = spec_dump(&c, &pod, &["/etc/hostname".into()], &Provenance::default());
        let a = &v["annotations"];
        assert_eq!(a["io.container.manager"], "cri-o");
        let meta: serde_json::Value =
            serde_json::from_str(a["io.kubernetes.cri-o.Metadata"].as_str().unwrap()).unwrap();
        assert_eq!(meta["name"], "counter");
        assert_eq!(a["io.kubernetes.cri-o.IP.0"], "10.88.0.5");
        assert_eq!(a["io.kubernetes.pod.name"], "web");
        assert_eq!(a["io.kubernetes.pod.namespace"], "default");
        assert!(a["io.kubernetes.cri-o.Created"].is_string());
        assert_eq!(a["org.criu.checkpoint.engine.name"], "pvecri");
        assert_eq!(
            v["process"]["args"],
            serde_json::json!(["sh", "-c", "true"])
        );
        assert_eq!(v["mounts"][0]["destination"], "/etc/hostname");
        assert_eq!(v["mounts"][0]["source"], "/run/pvecri/pods/p1/hostname");
    }

    #[test]
    fn archives_are_private_complete_and_replace_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        std::fs::create_dir_all(work.join(CHECKPOINT_DIR)).unwrap();
        std::fs::write(work.join(CHECKPOINT_DIR).join("pstree.img"), "p").unwrap();
        std::fs::write(work.join(CONFIG_DUMP), "{}").unwrap();
        std::fs::write(work.join(SPEC_DUMP), "{}").unwrap();
        std::fs::write(work.join(DUMP_LOG), "log").unwrap();
        let out = tmp.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let location = out.join("c.tar");
        std::fs::write(&location, "old").unwrap();

        let dest = Destination::open(&location).unwrap();
        dest.write_from(&work, 0).unwrap();
        let meta = std::fs::metadata(&location).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let names: Vec<String> = tar::Archive::new(File::open(&location).unwrap())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "checkpoint/",
                "checkpoint/pstree.img",
                "config.dump",
                "spec.dump",
                "dump.log"
            ]
        );
        let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left");
    }

    #[test]
    fn bad_locations_are_refused_before_anything_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, tmp.path().join("link")).unwrap();
        let msg = |p: PathBuf| Destination::open(&p).unwrap_err().to_string();
        assert!(msg(tmp.path().join("link/c.tar")).contains("symlink"));
        assert!(msg(tmp.path().join("missing/c.tar")).contains("does not exist"));
        assert!(msg(tmp.path().join("real")).contains("not a regular file"));
        std::os::unix::fs::symlink("/etc/passwd", real.join("l.tar")).unwrap();
        assert!(msg(real.join("l.tar")).contains("not a regular file"));
        assert!(Destination::open(&real.join("new.tar")).is_ok());
    }
}
