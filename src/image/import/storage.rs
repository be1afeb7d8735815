//! Where a Proxmox VE storage keeps its container templates.
//!
//! Directory-like storages (dir, nfs, cifs, cephfs, ...) have a `path` in
//! `/etc/pve/storage.cfg` and keep templates in `<path>/template/cache`;
//! storages without a path (lvm, zfspool, rbd, pbs) cannot hold templates.
//! `local` exists on every node even when the config is unreadable or the
//! node is not (yet) a PVE node, so it falls back to `/var/lib/vz`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::{Ctx, ImportError};

/// The cluster-wide storage config PVE keeps on its cluster filesystem.
pub(super) const STORAGE_CFG: &str = "/etc/pve/storage.cfg";
/// Root of the `local` storage on every PVE node.
pub(super) const LOCAL_ROOT: &str = "/var/lib/vz";
const LOCAL: &str = "local";
const TEMPLATE_SUBDIR: &str = "template/cache";

/// Storage ID to storage root directory, the node's `zfspool` storages
/// (ID to dataset), and the type of every storage in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PveStorages {
    roots: BTreeMap<String, PathBuf>,
    zfs_pools: BTreeMap<String, String>,
    kinds: BTreeMap<String, String>,
}

impl Default for PveStorages {
    /// Only `local`, at its standard place.
    fn default() -> Self {
        Self::from_cfg_text("", LOCAL_ROOT)
    }
}

impl PveStorages {
    /// Reads this node's storage config.
    pub(crate) fn load() -> Result<Self, ImportError> {
        Self::load_from(Path::new(STORAGE_CFG), Path::new(LOCAL_ROOT))
    }

    /// Reads `cfg`; a missing file means a node with only `local`, at
    /// `local_root`.
    pub(crate) fn load_from(cfg: &Path, local_root: &Path) -> Result<Self, ImportError> {
        match std::fs::read_to_string(cfg) {
            Ok(text) => Ok(Self::from_cfg_text(&text, local_root)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Self::from_cfg_text("", local_root))
            }
            Err(source) => Err(ImportError::StorageConfig {
                path: cfg.to_owned(),
                source,
            }),
        }
    }

    /// Parses storage.cfg text: a section starts with an unindented
    /// `<type>: <id>` line and its properties follow indented as
    /// `<key> <value>`. Unknown lines are skipped rather than refused, since
    /// PVE may add syntax this parser need not understand.
    pub(crate) fn from_cfg_text(text: &str, local_root: impl Into<PathBuf>) -> Self {
        let mut roots = BTreeMap::new();
        roots.insert(LOCAL.to_owned(), local_root.into());
        let mut zfs_pools = BTreeMap::new();
        let mut kinds = BTreeMap::new();
        let mut current: Option<&str> = None;
        let mut kind = "";
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if !line.starts_with(char::is_whitespace) {
                let header = trimmed.split_once(':');
                kind = header.map_or("", |(k, _)| k.trim());
                current = header.map(|(_, id)| id.trim()).filter(|id| !id.is_empty());
                if let Some(id) = current {
                    kinds.insert(id.to_owned(), kind.to_owned());
                }
                continue;
            }
            let Some(id) = current else { continue };
            match trimmed
                .split_once(char::is_whitespace)
                .map(|(k, v)| (k, v.trim()))
            {
                Some(("path", value)) if value.starts_with('/') => {
                    roots.insert(id.to_owned(), PathBuf::from(value));
                }
                Some(("pool", value)) if kind == "zfspool" && !value.is_empty() => {
                    zfs_pools.insert(id.to_owned(), value.to_owned());
                }
                _ => {}
            }
        }
        PveStorages {
            roots,
            zfs_pools,
            kinds,
        }
    }

    /// Every storage the config defines: its ID and type (`dir`,
    /// `zfspool`, `lvmthin`, ...), by ID.
    pub(crate) fn storages(&self) -> impl Iterator<Item = (&str, &str)> {
        self.kinds.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The root directory of a directory-like storage.
    pub(crate) fn root(&self, storage: &str) -> Option<&Path> {
        self.roots.get(storage).map(PathBuf::as_path)
    }

    /// The `zfspool` storages: storage ID and its dataset.
    pub(crate) fn zfs_pools(&self) -> impl Iterator<Item = (&str, &str)> {
        self.zfs_pools.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The template directory of `storage`, if it has one.
    pub(crate) fn template_dir(&self, storage: &str) -> Option<PathBuf> {
        self.roots
            .get(storage)
            .map(|root| root.join(TEMPLATE_SUBDIR))
    }

    /// [`PveStorages::template_dir`], or an error naming the known storages.
    pub(super) fn require_template_dir(
        &self,
        ctx: Ctx<'_>,
        storage: &str,
    ) -> Result<PathBuf, ImportError> {
        match self.template_dir(storage) {
            Some(dir) => Ok(dir),
            None => Err(ImportError::UnknownStorage {
                input: ctx.0.to_owned(),
                storage: storage.to_owned(),
                known: self.roots.keys().cloned().collect::<Vec<_>>().join(", "),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "\
dir: local
\tpath /var/lib/vz
\tcontent iso,vztmpl,backup

lvmthin: local-lvm
\tthinpool data
\tvgname pve
\tcontent rootdir,images

# templates shared over NFS
nfs: nas-templates
\texport /export/pve
\tpath /mnt/pve/nas-templates
\tserver 192.0.2.10
\tcontent vztmpl

zfspool: tank
        pool tank/ct
        content rootdir
        path-less storages are ignored

dir: scratch
    path   /srv/scratch  
";

    #[test]
    fn directory_storages_come_from_storage_cfg() {
        let s = PveStorages::from_cfg_text(CFG, "/test/vz");
        let dir = |id| s.template_dir(id).unwrap();
        // The config's own entry for local wins over the fallback.
        assert_eq!(dir("local"), Path::new("/var/lib/vz/template/cache"));
        assert_eq!(
            dir("nas-templates"),
            Path::new("/mnt/pve/nas-templates/template/cache")
        );
        assert_eq!(dir("scratch"), Path::new("/srv/scratch/template/cache"));
        assert_eq!(s.zfs_pools().collect::<Vec<_>>(), [("tank", "tank/ct")]);
        assert_eq!(
            s.storages().collect::<Vec<_>>(),
            [
                ("local", "dir"),
                ("local-lvm", "lvmthin"),
                ("nas-templates", "nfs"),
                ("scratch", "dir"),
                ("tank", "zfspool")
            ]
        );
        assert_eq!(s.root("scratch"), Some(Path::new("/srv/scratch")));
        for id in ["local-lvm", "tank", "nope"] {
            let err = s
                .require_template_dir(Ctx("pve-template.local/x/y:1"), id)
                .unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(id), "{msg}");
            assert!(
                msg.contains("known: local, nas-templates, scratch"),
                "{msg}"
            );
        }
    }

    #[test]
    fn local_works_without_a_config() {
        let dir = tempfile::tempdir().unwrap();
        let s =
            PveStorages::load_from(&dir.path().join("storage.cfg"), Path::new("/test/vz")).unwrap();
        assert_eq!(
            s.template_dir("local").unwrap(),
            Path::new("/test/vz/template/cache")
        );
        assert_eq!(
            PveStorages::default().template_dir("local").unwrap(),
            Path::new("/var/lib/vz/template/cache")
        );

        let cfg = dir.path().join("storage.cfg");
        std::fs::write(&cfg, "dir: extra\n\tpath /data\n").unwrap();
        let s = PveStorages::load_from(&cfg, Path::new("/test/vz")).unwrap();
        assert_eq!(
            s.template_dir("extra").unwrap(),
            Path::new("/data/template/cache")
        );
        // A config that exists but cannot be read is an error, not "no storages".
        let err = PveStorages::load_from(dir.path(), Path::new("/test/vz")).unwrap_err();
        assert!(matches!(err, ImportError::StorageConfig { .. }), "{err:?}");
    }
}
