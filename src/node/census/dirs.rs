//! Directories pvecri keeps per pod and per container under its state and
//! run dirs, which are the census's record of the IDs this state dir has
//! seen, and the image data (layers, blobs) it keeps between pods.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::container::run_dir::RunDir;

/// Per-container and per-pod dirs found (full paths) and image counts.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Dirs {
    pub lxc: Vec<String>,
    pub run: Vec<String>,
    pub snapshots: Vec<String>,
    pub layers: usize,
    pub blobs: usize,
    /// Pod and container IDs named by the dirs.
    pub ids: BTreeSet<String>,
    /// Spare network namespaces' dirs (`R/ns/.spare-net-<n>`): the
    /// daemon's own, counted with it.
    pub spares: Vec<String>,
}

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    out.sort();
    out
}

/// The ID a directory name stands for: `<id>`, or `<id>-iv<n>` for an
/// image volume's root filesystem.
fn id_of(name: &str) -> Option<&str> {
    let id = name.split_once("-iv").map_or(name, |(id, _)| id);
    super::is_id(id).then_some(id)
}

/// The snapshot backends' roots present under the state dir.
fn backends(state_dir: &Path) -> Vec<PathBuf> {
    names(&state_dir.join("snapshots"))
        .into_iter()
        .map(|n| state_dir.join("snapshots").join(n))
        .collect()
}

pub(super) fn find(config: &Config) -> Dirs {
    let mut out = Dirs::default();
    // Each dir's entries: spares (under `R/ns`) to their own list, the
    // rest to `into` and their IDs to `ids`.
    let take = |dir: PathBuf,
                into: &mut Vec<String>,
                ids: &mut BTreeSet<String>,
                spares: &mut Vec<String>| {
        for name in names(&dir) {
            let path = dir.join(&name);
            if crate::runtime::is_spare_netns_dir(&path) {
                spares.push(path.display().to_string());
                continue;
            }
            if let Some(id) = id_of(&name) {
                ids.insert(id.to_owned());
            }
            into.push(path.display().to_string());
        }
    };
    let mut ids = BTreeSet::new();
    take(config.lxc_path(), &mut out.lxc, &mut ids, &mut out.spares);
    for dir in [
        RunDir::all(&config.runtime_dir),
        config.runtime_dir.join("staging"),
        config.runtime_dir.join("ns"),
        config.state_dir.join("sandboxes"),
    ] {
        take(dir, &mut out.run, &mut ids, &mut out.spares);
    }
    for backend in backends(&config.state_dir) {
        take(
            backend.join("containers"),
            &mut out.snapshots,
            &mut ids,
            &mut out.spares,
        );
        out.layers += names(&backend.join("layers")).len();
    }
    out.blobs = names(&config.state_dir.join("content/blobs/sha256")).len();
    out.ids = ids;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_container_dirs_and_their_ids_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::from_toml(&format!(
            "state_dir = \"{d}/state\"\nruntime_dir = \"{d}/run\"\n",
            d = dir.path().display()
        ))
        .unwrap();
        let (c, p) = ("c".repeat(64), "d".repeat(64));
        for sub in [
            format!("state/lxc/{c}"),
            format!("run/containers/{c}"),
            format!("run/ns/{p}"),
            format!("state/sandboxes/{p}"),
            format!("state/snapshots/overlay/containers/{c}-iv0"),
            "state/snapshots/overlay/layers/l1".to_owned(),
            "state/snapshots/overlay/layers/l2".to_owned(),
            "state/snapshots/dir/layers/l3".to_owned(),
            "state/content/blobs/sha256/b1".to_owned(),
            "run/staging/not-an-id".to_owned(),
        ] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let d = find(&config);
        let s = dir.path().display();
        assert_eq!(d.lxc, [format!("{s}/state/lxc/{c}")]);
        assert_eq!(
            d.run,
            [
                format!("{s}/run/containers/{c}"),
                format!("{s}/run/staging/not-an-id"),
                format!("{s}/run/ns/{p}"),
                format!("{s}/state/sandboxes/{p}"),
            ]
        );
        assert_eq!(
            d.snapshots,
            [format!("{s}/state/snapshots/overlay/containers/{c}-iv0")]
        );
        assert_eq!((d.layers, d.blobs), (3, 1));
        assert_eq!(d.ids, [c, p].into_iter().collect());
    }

    #[test]
    fn a_missing_state_dir_is_empty() {
        let config = Config::from_toml(
            "state_dir = \"/nonexistent/pvecri-census\"\nruntime_dir = \"/nonexistent/run\"\n",
        )
        .unwrap();
        assert_eq!(find(&config), Dirs::default());
    }
}
