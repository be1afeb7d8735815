//! The archive of a whole pod (CheckpointPod, RestorePod): one container
//! archive per checkpointed container ([`super::archive`]'s layout) and a
//! `pod.json` naming them.
//!
//! | entry | content |
//! |---|---|
//! | `pod.json` | [`PodDump`]: the pod's name, and per container its name, the archive and the container's config as it was created |
//! | `containers/<name>.tar` | the container's checkpoint archive |
//!
//! It is read back like a container archive: untrusted, only these
//! entries, plain files, created 0600 in a private directory.

use std::fs::File;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::unpack::UnpackError;

pub(crate) const POD_JSON: &str = "pod.json";
pub(crate) const CONTAINERS_DIR: &str = "containers";

/// `pod.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PodDump {
    pub id: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// The pod's RunPodSandbox request (protobuf, base64): RestorePod
    /// without a config validates and runs it again.
    #[serde(default)]
    pub pod_request: String,
    pub runtime: String,
    pub checkpointed_time: String,
    pub containers: Vec<PodDumpContainer>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PodDumpContainer {
    pub name: String,
    pub id: String,
    /// `containers/<name>.tar`.
    pub archive: String,
    /// Its CreateContainer request (protobuf, base64): a restore without
    /// a config for it from the caller validates and uses it again.
    #[serde(default)]
    pub request: String,
    /// How long its final dump kept it frozen.
    #[serde(default)]
    pub frozen_ms: u64,
    /// Memory pre-dumps made before the final dump.
    #[serde(default)]
    pub pre_copies: u32,
    /// When its final freeze began, ns since the epoch.
    #[serde(default)]
    pub frozen_at_ns: i64,
}

/// The archive entry of a container's checkpoint.
pub(crate) fn container_entry(name: &str) -> String {
    format!("{CONTAINERS_DIR}/{name}.tar")
}

/// A container name usable as a file name: a DNS label, as Kubernetes
/// requires.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name != "."
        && name != ".."
}

/// A pod archive unpacked into its directory, which goes on drop.
#[derive(Debug)]
pub(crate) struct PodUnpacked {
    pub dir: PathBuf,
    pub dump: PodDump,
}

impl Drop for PodUnpacked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl PodUnpacked {
    pub(crate) fn archive_of(&self, c: &PodDumpContainer) -> PathBuf {
        self.dir.join(&c.archive)
    }
}

/// Unpacks a pod archive into `dir` (which must not exist yet).
pub(crate) fn unpack(archive: &Path, dir: &Path) -> Result<PodUnpacked, UnpackError> {
    let file = super::unpack::open_source(archive)?;
    let io = |source| UnpackError::Io {
        path: archive.to_owned(),
        source,
    };
    let layout = |message: String| UnpackError::Layout {
        path: archive.to_owned(),
        what: "pod",
        message,
    };
    super::unpack::private_dirs(dir, CONTAINERS_DIR).map_err(io)?;
    let mut tar = tar::Archive::new(file);
    for entry in tar.entries().map_err(io)? {
        let mut entry = entry.map_err(|e| layout(format!("not a tar archive: {e}")))?;
        let path = entry.path().map_err(io)?.into_owned();
        let kind = entry.header().entry_type();
        let parts: Vec<&str> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(p) => Some(p.to_str().unwrap_or("\0")),
                Component::CurDir => None,
                _ => Some("\0"),
            })
            .collect();
        let rel = match (parts.as_slice(), kind) {
            ([CONTAINERS_DIR], tar::EntryType::Directory) => continue,
            ([POD_JSON], tar::EntryType::Regular) => PathBuf::from(POD_JSON),
            ([CONTAINERS_DIR, file], tar::EntryType::Regular)
                if file.strip_suffix(".tar").is_some_and(valid_name) =>
            {
                Path::new(CONTAINERS_DIR).join(file)
            }
            _ => {
                return Err(layout(format!(
                    "unexpected entry {} ({kind:?})",
                    path.display()
                )))
            }
        };
        super::unpack::extract_entry(&mut entry, dir, &rel).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                layout(format!("entry {} appears twice", rel.display()))
            }
            _ => io(e),
        })?;
    }
    let bytes =
        std::fs::read(dir.join(POD_JSON)).map_err(|_| layout(format!("{POD_JSON} is missing")))?;
    let dump: PodDump =
        serde_json::from_slice(&bytes).map_err(|e| layout(format!("{POD_JSON}: {e}")))?;
    if dump.containers.is_empty() {
        return Err(layout(format!("{POD_JSON} names no container")));
    }
    for c in &dump.containers {
        if !valid_name(&c.name) || c.archive != container_entry(&c.name) {
            return Err(layout(format!(
                "{POD_JSON}: bad container entry {:?} ({:?})",
                c.name, c.archive
            )));
        }
        if File::open(dir.join(&c.archive)).is_err() {
            return Err(layout(format!("{} is missing", c.archive)));
        }
    }
    Ok(PodUnpacked {
        dir: dir.to_owned(),
        dump,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(names: &[&str]) -> Vec<u8> {
        serde_json::to_vec(&PodDump {
            id: "p1".into(),
            name: "web".into(),
            namespace: "default".into(),
            uid: "u1".into(),
            pod_request: String::new(),
            runtime: "pvecri".into(),
            checkpointed_time: "t".into(),
            containers: names
                .iter()
                .map(|n| PodDumpContainer {
                    name: (*n).into(),
                    id: "c".into(),
                    archive: container_entry(n),
                    request: String::new(),
                    frozen_ms: 0,
                    pre_copies: 0,
                    frozen_at_ns: 0,
                })
                .collect(),
        })
        .unwrap()
    }

    fn archive(entries: &[(&str, &[u8])]) -> (tempfile::TempDir, Result<PodUnpacked, UnpackError>) {
        let tmp = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(tmp.path()).unwrap();
        let mut t = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            let name = h.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            t.append(&h, *data).unwrap();
        }
        std::fs::write(real.join("pod.tar"), t.into_inner().unwrap()).unwrap();
        let out = unpack(&real.join("pod.tar"), &real.join("out"));
        (tmp, out)
    }

    #[test]
    fn a_pod_archive_is_read_back() {
        let (_tmp, out) = archive(&[
            ("pod.json", &dump(&["app", "side-car"])),
            ("containers/app.tar", b"a"),
            ("containers/side-car.tar", b"b"),
        ]);
        let u = out.unwrap();
        assert_eq!(u.dump.containers.len(), 2);
        assert!(u
            .archive_of(&u.dump.containers[1])
            .ends_with("containers/side-car.tar"));
    }

    #[test]
    fn hostile_or_incomplete_pod_archives_are_refused() {
        let cases: Vec<Vec<(&str, Vec<u8>)>> = vec![
            vec![("pod.json", dump(&["app"]))],
            vec![
                ("pod.json", dump(&["../x"])),
                ("containers/app.tar", b"a".to_vec()),
            ],
            vec![
                ("pod.json", dump(&["app"])),
                ("containers/../app.tar", b"a".to_vec()),
            ],
            vec![("pod.json", dump(&["app"])), ("etc/passwd", b"a".to_vec())],
            vec![("containers/app.tar", b"a".to_vec())],
            vec![("pod.json", dump(&[]))],
        ];
        for case in cases {
            let entries: Vec<(&str, &[u8])> =
                case.iter().map(|(p, d)| (*p, d.as_slice())).collect();
            let (_tmp, out) = archive(&entries);
            assert!(
                matches!(out, Err(UnpackError::Layout { .. })),
                "{:?}: {out:?}",
                case.iter().map(|(p, _)| *p).collect::<Vec<_>>()
            );
        }
    }
}
