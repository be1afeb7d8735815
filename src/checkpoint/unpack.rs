//! Reading a checkpoint archive back for a restore: the archive's entries
//! are checked against the layout [`super::archive`] writes and copied into
//! a private directory, nothing else.
//!
//! An archive may come from another node, so it is read as untrusted
//! input: the file is reached without a symlink, only the known top-level
//! names and plain files directly under `checkpoint/` are accepted (no
//! links, devices, nested directories or `..`), each is created with
//! `O_EXCL` at mode 0600, and `config.dump` and `spec.dump` must parse.
//! CRIU's images themselves are CRIU's to judge.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::archive::{
    ConfigDump, CHECKPOINT_DIR, CONFIG_DUMP, DELETED_FILES, DESCRIPTORS, DUMP_LOG, ROOTFS_DIFF,
    SPEC_DUMP, STATS_DUMP,
};

#[derive(Debug, thiserror::Error)]
pub(crate) enum UnpackError {
    /// The archive is not there, not a regular file or reached through a
    /// symlink (the caller's InvalidArgument).
    #[error("checkpoint archive {path}: {message}")]
    Source { path: PathBuf, message: String },
    /// The archive is not one pvecri or CRI-O wrote (InvalidArgument).
    #[error("checkpoint archive {path} is not a {what} checkpoint: {message}")]
    Layout {
        path: PathBuf,
        /// `container` or `pod`.
        what: &'static str,
        message: String,
    },
    #[error("cannot unpack the checkpoint archive {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One mount of `spec.dump`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct SpecMount {
    pub destination: String,
}

#[derive(Debug, Deserialize)]
struct SpecDump {
    #[serde(default)]
    mounts: Vec<SpecMount>,
}

/// An archive unpacked into its directory.
#[derive(Debug, Clone)]
pub(crate) struct Unpacked {
    /// Where it was unpacked (holds `checkpoint/` and the top-level files).
    pub dir: PathBuf,
    pub config: ConfigDump,
    /// The mount points the dump declared external: each needs a source
    /// at restore.
    pub external_mounts: Vec<String>,
    /// The restore keys of init's fds 0-2 (`pipe:[ino]`, `file[mnt:ino]`).
    pub descriptors: Vec<String>,
    /// `rootfs-diff.tar` is present.
    pub has_rootfs_diff: bool,
    /// `deleted.files`, absolute paths inside the container.
    pub deleted: Vec<String>,
    /// `checkpoint/container.json`: what the container was confined by
    /// (`None`: an archive without it).
    pub confinement: Option<super::confinement::Confinement>,
}

impl Unpacked {
    pub(crate) fn images_dir(&self) -> PathBuf {
        self.dir.join(CHECKPOINT_DIR)
    }

    pub(crate) fn rootfs_diff(&self) -> PathBuf {
        self.dir.join(ROOTFS_DIFF)
    }
}

/// The most pre-dumps an archive may carry.
const MAX_PRE_DUMPS: u32 = 8;

/// `n` of a pre-dump directory `pre-<n>` (1 to [`MAX_PRE_DUMPS`]).
fn pre_dump_number(dir: &str) -> Option<u32> {
    let n: u32 = dir.strip_prefix("pre-")?.parse().ok()?;
    (1..=MAX_PRE_DUMPS)
        .contains(&n)
        .then_some(n)
        .filter(|n| super::archive::pre_dump_dir(*n) == dir)
}

/// Links each image directory to the pre-dump before it (`parent`, as
/// CRIU names it): the archive carries no links, so these are the only
/// ones, with fixed targets. The pre-dumps must be `pre-1` to `pre-<n>`.
fn link_parents(dir: &Path, found: &[u32]) -> Result<(), String> {
    let mut found = found.to_vec();
    found.sort_unstable();
    found.dedup();
    if found.iter().enumerate().any(|(i, n)| *n != i as u32 + 1) {
        return Err(format!(
            "pre-dump directories {found:?} are not pre-1 to pre-{}",
            found.len()
        ));
    }
    let Some(last) = found.last() else {
        return Ok(());
    };
    let link = |from: &str, to: u32| {
        std::os::unix::fs::symlink(
            format!("../{}", super::archive::pre_dump_dir(to)),
            dir.join(from).join("parent"),
        )
        .map_err(|e| format!("cannot link {from} to its parent: {e}"))
    };
    link(CHECKPOINT_DIR, *last)?;
    for n in 2..=*last {
        link(&super::archive::pre_dump_dir(n), n - 1)?;
    }
    Ok(())
}

/// Where an entry of the archive goes, or why it is refused.
fn destination(entry: &Path, kind: tar::EntryType) -> Result<Option<PathBuf>, String> {
    let parts: Vec<&str> = entry
        .components()
        .map(|c| match c {
            Component::Normal(p) => p.to_str().ok_or("a non-UTF-8 name"),
            Component::CurDir => Ok("."),
            _ => Err("an absolute path or a .. component"),
        })
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", entry.display()))?;
    let parts: Vec<&str> = parts.into_iter().filter(|p| *p != ".").collect();
    match (parts.as_slice(), kind) {
        ([CHECKPOINT_DIR], tar::EntryType::Directory) => Ok(None),
        ([dir], tar::EntryType::Directory) if pre_dump_number(dir).is_some() => Ok(None),
        ([CHECKPOINT_DIR, _name], tar::EntryType::Regular) => Ok(Some(parts.iter().collect())),
        ([dir, _name], tar::EntryType::Regular) if pre_dump_number(dir).is_some() => {
            Ok(Some(parts.iter().collect()))
        }
        ([name], tar::EntryType::Regular)
            if [
                CONFIG_DUMP,
                SPEC_DUMP,
                ROOTFS_DIFF,
                DELETED_FILES,
                DUMP_LOG,
                STATS_DUMP,
            ]
            .contains(name) =>
        {
            Ok(Some(PathBuf::from(name)))
        }
        _ => Err(format!("unexpected entry {} ({kind:?})", entry.display())),
    }
}

/// Opens `archive` (absolute and normalised, `crate::cri::convert`) only
/// if every component is a real directory and the file a regular one.
pub(crate) fn open_source(archive: &Path) -> Result<File, UnpackError> {
    let bad = |message: &str| UnpackError::Source {
        path: archive.to_owned(),
        message: message.to_owned(),
    };
    match std::fs::canonicalize(archive) {
        Ok(real) if real == archive => {}
        Ok(_) => return Err(bad("is reached through a symlink")),
        Err(_) => return Err(bad("does not exist")),
    }
    // The check above names the problem; the open is what guarantees it:
    // no symlink anywhere on the way, whatever changed since.
    let how = nix::fcntl::OpenHow::new()
        .flags(nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC)
        .resolve(
            nix::fcntl::ResolveFlag::RESOLVE_NO_SYMLINKS
                | nix::fcntl::ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
    let file = nix::fcntl::openat2(nix::fcntl::AT_FDCWD, archive, how)
        .map(File::from)
        .map_err(|e| match e {
            nix::errno::Errno::ELOOP => bad("is reached through a symlink"),
            e => bad(&format!("cannot be opened: {e}")),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| bad(&format!("cannot be read: {e}")))?;
    if !meta.is_file() {
        return Err(bad("is not a regular file"));
    }
    Ok(file)
}

/// Makes `dir` (which must not exist yet) and `dir/sub`, both 0700.
pub(crate) fn private_dirs(dir: &Path, sub: &str) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(dir)?;
    std::fs::DirBuilder::new().mode(0o700).create(dir.join(sub))
}

/// Writes an archive entry's content as `dir/rel`: a new file (an
/// existing one is `AlreadyExists`, a duplicate entry), 0600, never
/// through a link.
pub(crate) fn extract_entry(
    entry: &mut impl std::io::Read,
    dir: &Path,
    rel: &Path,
) -> std::io::Result<()> {
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir.join(rel))?;
    std::io::copy(entry, &mut out)?;
    Ok(())
}

/// Unpacks `archive` into `dir`, which must not exist yet (made 0700).
pub(crate) fn unpack(archive: &Path, dir: &Path) -> Result<Unpacked, UnpackError> {
    let file = open_source(archive)?;
    let io = |source| UnpackError::Io {
        path: archive.to_owned(),
        source,
    };
    let layout = |message: String| UnpackError::Layout {
        path: archive.to_owned(),
        what: "container",
        message,
    };
    private_dirs(dir, CHECKPOINT_DIR).map_err(io)?;
    let mut tar = tar::Archive::new(file);
    let mut pre_dumps: Vec<u32> = Vec::new();
    for entry in tar.entries().map_err(io)? {
        let mut entry = entry.map_err(|e| layout(format!("not a tar archive: {e}")))?;
        let path = entry.path().map_err(io)?.into_owned();
        let Some(rel) = destination(&path, entry.header().entry_type()).map_err(layout)? else {
            continue;
        };
        if let Some(n) = rel
            .parent()
            .and_then(|p| p.to_str())
            .and_then(pre_dump_number)
        {
            if !pre_dumps.contains(&n) {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(dir.join(super::archive::pre_dump_dir(n)))
                    .map_err(io)?;
                pre_dumps.push(n);
            }
        }
        extract_entry(&mut entry, dir, &rel).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                layout(format!("entry {} appears twice", rel.display()))
            }
            _ => io(e),
        })?;
    }
    link_parents(dir, &pre_dumps).map_err(layout)?;
    let read_json = |name: &str| -> Result<Option<Vec<u8>>, UnpackError> {
        match std::fs::read(dir.join(name)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    };
    let config: ConfigDump = serde_json::from_slice(
        &read_json(CONFIG_DUMP)?.ok_or_else(|| layout(format!("{CONFIG_DUMP} is missing")))?,
    )
    .map_err(|e| layout(format!("{CONFIG_DUMP}: {e}")))?;
    let spec: SpecDump = serde_json::from_slice(
        &read_json(SPEC_DUMP)?.ok_or_else(|| layout(format!("{SPEC_DUMP} is missing")))?,
    )
    .map_err(|e| layout(format!("{SPEC_DUMP}: {e}")))?;
    let descriptors: Vec<String> = match read_json(&format!("{CHECKPOINT_DIR}/{DESCRIPTORS}"))? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| layout(format!("{CHECKPOINT_DIR}/{DESCRIPTORS}: {e}")))?,
        None => {
            return Err(layout(format!(
                "{CHECKPOINT_DIR}/{DESCRIPTORS} is missing (not written by pvecri)"
            )))
        }
    };
    if descriptors.len() != 3 {
        return Err(layout(format!(
            "{DESCRIPTORS} names {} descriptors, not 3",
            descriptors.len()
        )));
    }
    let confinement = match read_json(&format!("{CHECKPOINT_DIR}/{}", super::confinement::FILE))? {
        Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
            layout(format!(
                "{CHECKPOINT_DIR}/{}: {e}",
                super::confinement::FILE
            ))
        })?),
        None => None,
    };
    let deleted: Vec<String> = match read_json(DELETED_FILES)? {
        Some(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| layout(format!("{DELETED_FILES}: {e}")))?
        }
        None => Vec::new(),
    };
    let mut inventory = std::fs::read_dir(dir.join(CHECKPOINT_DIR)).map_err(io)?;
    if inventory.next().is_none() {
        return Err(layout(format!("{CHECKPOINT_DIR}/ is empty")));
    }
    let mut probe = [0u8; 1];
    let has_rootfs_diff = File::open(dir.join(ROOTFS_DIFF))
        .and_then(|mut f| f.read(&mut probe))
        .is_ok();
    Ok(Unpacked {
        dir: dir.to_owned(),
        config,
        external_mounts: spec.mounts.into_iter().map(|m| m.destination).collect(),
        descriptors,
        has_rootfs_diff,
        deleted,
        confinement,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(tar: &mut tar::Builder<Vec<u8>>, path: &str, kind: tar::EntryType, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        // set_path refuses `..`; a hostile archive is written raw.
        let name = h.as_old_mut().name.as_mut();
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        tar.append(&h, data).unwrap();
    }

    fn config() -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": "c1", "name": "counter", "rootfsImage": "busybox",
            "rootfsImageRef": "sha256:abc", "rootfsImageName": "r/busybox:1",
            "runtime": "pvecri", "createdTime": "x", "checkpointedTime": "y",
            "restoredTime": "z", "restored": false
        }))
        .unwrap()
    }

    fn good(extra: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut t = tar::Builder::new(Vec::new());
        add(&mut t, "checkpoint/", tar::EntryType::Directory, b"");
        add(
            &mut t,
            "checkpoint/core-1.img",
            tar::EntryType::Regular,
            b"img",
        );
        add(
            &mut t,
            "checkpoint/descriptors.json",
            tar::EntryType::Regular,
            br#"["file[18:3]","pipe:[5]","pipe:[6]"]"#,
        );
        add(&mut t, "config.dump", tar::EntryType::Regular, &config());
        add(
            &mut t,
            "spec.dump",
            tar::EntryType::Regular,
            br#"{"mounts":[{"destination":"/etc/hostname","source":"/x"}]}"#,
        );
        add(
            &mut t,
            "deleted.files",
            tar::EntryType::Regular,
            br#"["/etc/motd"]"#,
        );
        for (p, k, d) in extra {
            add(&mut t, p, *k, d);
        }
        t.into_inner().unwrap()
    }

    fn unpack_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<Unpacked, UnpackError>) {
        let tmp = tempfile::tempdir().unwrap();
        let archive = std::fs::canonicalize(tmp.path()).unwrap().join("a.tar");
        std::fs::write(&archive, bytes).unwrap();
        let out = unpack(&archive, &tmp.path().join("out"));
        (tmp, out)
    }

    #[test]
    fn a_checkpoint_archive_is_read_back() {
        let (tmp, out) = unpack_bytes(&good(&[]));
        let u = out.unwrap();
        assert_eq!(u.config.rootfs_image_ref, "sha256:abc");
        assert_eq!(u.external_mounts, ["/etc/hostname"]);
        assert_eq!(u.descriptors[1], "pipe:[5]");
        assert_eq!(u.deleted, ["/etc/motd"]);
        assert!(!u.has_rootfs_diff);
        let img = tmp.path().join("out/checkpoint/core-1.img");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&img).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn pre_dump_images_come_back_linked_to_their_parents() {
        let (tmp, out) = unpack_bytes(&good(&[
            ("pre-1/pages-1.img", tar::EntryType::Regular, b"p1"),
            ("pre-2/pages-1.img", tar::EntryType::Regular, b"p2"),
        ]));
        out.unwrap();
        let out = tmp.path().join("out");
        assert_eq!(
            std::fs::read_link(out.join("checkpoint/parent")).unwrap(),
            Path::new("../pre-2")
        );
        assert_eq!(
            std::fs::read_link(out.join("pre-2/parent")).unwrap(),
            Path::new("../pre-1")
        );
        assert!(!out.join("pre-1/parent").exists());
        assert_eq!(
            std::fs::read(out.join("checkpoint/parent/parent/pages-1.img")).unwrap(),
            b"p1"
        );
        // A gap in the chain, or a number out of range, is refused.
        let (_t, gap) = unpack_bytes(&good(&[("pre-2/x.img", tar::EntryType::Regular, b"x")]));
        assert!(gap.unwrap_err().to_string().contains("pre-1 to pre-1"));
        let (_t, big) = unpack_bytes(&good(&[("pre-99/x.img", tar::EntryType::Regular, b"x")]));
        assert!(matches!(big.unwrap_err(), UnpackError::Layout { .. }));
        let (_t, odd) = unpack_bytes(&good(&[("pre-01/x.img", tar::EntryType::Regular, b"x")]));
        assert!(matches!(odd.unwrap_err(), UnpackError::Layout { .. }));
    }

    #[test]
    fn hostile_entries_are_refused_and_nothing_escapes() {
        for (path, kind) in [
            ("../escape", tar::EntryType::Regular),
            ("checkpoint/../../escape", tar::EntryType::Regular),
            ("checkpoint/sub/x", tar::EntryType::Regular),
            ("checkpoint/link", tar::EntryType::Symlink),
            ("checkpoint/dev", tar::EntryType::Char),
            ("etc/passwd", tar::EntryType::Regular),
            ("config.dump", tar::EntryType::Regular),
        ] {
            let (tmp, out) = unpack_bytes(&good(&[(path, kind, b"x")]));
            let err = out.unwrap_err();
            assert!(matches!(err, UnpackError::Layout { .. }), "{path}: {err}");
            assert!(!tmp.path().join("escape").exists());
            assert!(!tmp.path().parent().unwrap().join("escape").exists());
        }
    }

    #[test]
    fn archives_without_the_metadata_are_not_checkpoints() {
        let mut t = tar::Builder::new(Vec::new());
        add(&mut t, "config.dump", tar::EntryType::Regular, &config());
        let (_tmp, out) = unpack_bytes(&t.into_inner().unwrap());
        assert!(out
            .unwrap_err()
            .to_string()
            .contains("spec.dump is missing"));
        let (_tmp, out) = unpack_bytes(b"not a tar at all, just some bytes");
        assert!(matches!(out.unwrap_err(), UnpackError::Layout { .. }));
    }

    #[test]
    fn the_archive_is_reached_without_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::write(real.join("a.tar"), good(&[])).unwrap();
        std::os::unix::fs::symlink(real.join("a.tar"), real.join("l.tar")).unwrap();
        let err = unpack(&real.join("l.tar"), &real.join("out")).unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        let err = unpack(&real.join("none.tar"), &real.join("out2")).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        std::fs::create_dir(real.join("d.tar")).unwrap();
        let err = unpack(&real.join("d.tar"), &real.join("out3")).unwrap_err();
        assert!(err.to_string().contains("regular"), "{err}");
    }
}
