//! Mounts pvecri made: anything mounted under the state and run dirs
//! (container root filesystems, staged volumes), with the pods' namespace
//! pins (`run/ns/<pod>/<kind>`) told apart. The private bind of `run/ns`
//! onto itself is not counted: the daemon keeps it across restarts by
//! design (`crate::sandbox::ns::prepare_ns_root`), and it holds nothing
//! once the pins under it are gone. A node census also takes mounts anywhere that have the shape of
//! pvecri's layout (a pin or a container root filesystem), which finds
//! those of a state dir that has since been deleted (a test's temporary
//! directory, for one).

use std::path::{Component, Path};

use crate::node::mountinfo;

/// Mounts found, split into pins and the rest (one line each: the mount
/// point).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Mounts {
    pub pins: Vec<String>,
    pub other: Vec<String>,
    /// Pins of spare network namespaces: the daemon's own.
    pub spares: Vec<String>,
}

/// Names after `dir` in `path`, if `path` is below it.
fn below<'a>(path: &'a Path, dir: &Path) -> Option<Vec<&'a str>> {
    let rest = path.strip_prefix(dir).ok()?;
    rest.components()
        .map(|c| match c {
            Component::Normal(n) => n.to_str(),
            _ => None,
        })
        .collect()
}

/// `…/ns/<id>/<kind>`: a namespace pin wherever its run dir is.
fn pin_shaped(path: &Path) -> bool {
    let names: Vec<&str> = path.iter().filter_map(|c| c.to_str()).collect();
    matches!(names.as_slice(), [.., "ns", id, _] if super::is_id(id))
}

/// `…/snapshots/<backend>/containers/<id>/…`: a container root filesystem.
fn rootfs_shaped(path: &Path) -> bool {
    let names: Vec<&str> = path.iter().filter_map(|c| c.to_str()).collect();
    names.windows(4).any(|w| {
        w[0] == "snapshots" && w[2] == "containers" && w[3].get(..64).is_some_and(super::is_id)
    })
}

pub(super) fn find(
    mountinfo_text: &str,
    state_dir: &Path,
    runtime_dir: &Path,
    node: bool,
) -> Mounts {
    let ns_root = runtime_dir.join("ns");
    let mut out = Mounts::default();
    for m in mountinfo::parse(mountinfo_text) {
        let point = m.mount_point.as_path();
        if point == ns_root {
            continue;
        }
        let line = point.display().to_string();
        let is_pin =
            below(point, &ns_root).is_some_and(|n| n.len() >= 2) || (node && pin_shaped(point));
        let spare = point
            .parent()
            .is_some_and(crate::runtime::is_spare_netns_dir);
        if spare && (below(point, &ns_root).is_some() || node) {
            out.spares.push(line);
        } else if is_pin {
            out.pins.push(line);
        } else if below(point, state_dir).is_some()
            || below(point, runtime_dir).is_some()
            || (node && rootfs_shaped(point))
        {
            out.other.push(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_under_the_dirs_are_split_into_pins_and_the_rest() {
        let id = "a".repeat(64);
        let other = "b".repeat(64);
        let text = format!(
            "\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 27 0:40 / /run/pvecri/ns rw - tmpfs tmpfs rw
41 40 0:4 net:[4026532] /run/pvecri/ns/{id}/net rw - nsfs nsfs rw
42 40 0:4 uts:[4026533] /run/pvecri/ns/{id}/uts rw - nsfs nsfs rw
43 27 0:50 / /var/lib/pvecri/snapshots/overlay/containers/{id}/rootfs rw - overlay overlay rw
44 27 0:51 / /var/lib/pvecri-other/x rw - tmpfs tmpfs rw
45 27 0:4 net:[4026534] /tmp/pvecri-it-x/run/ns/{other}/net rw - nsfs nsfs rw
46 27 0:52 / /tmp/pvecri-it-x/state/snapshots/overlay/containers/{other}/rootfs rw - overlay overlay rw
47 27 0:4 net:[4026535] /run/netns/blue rw - nsfs nsfs rw
48 27 0:53 / /run/pvecri\\040two/x rw - tmpfs tmpfs rw
"
        );
        let state = Path::new("/var/lib/pvecri");
        let run = Path::new("/run/pvecri");
        let m = find(&text, state, run, false);
        assert_eq!(
            m.pins,
            [
                format!("/run/pvecri/ns/{id}/net"),
                format!("/run/pvecri/ns/{id}/uts")
            ]
        );
        assert_eq!(
            m.other,
            [format!(
                "/var/lib/pvecri/snapshots/overlay/containers/{id}/rootfs"
            )]
        );
        let n = find(&text, state, run, true);
        assert_eq!(n.pins.len(), 3, "{n:?}");
        assert!(n.pins[2].starts_with("/tmp/pvecri-it-x/run/ns/"));
        assert_eq!(n.other.len(), 2, "{n:?}");
        assert!(n.other[1].starts_with("/tmp/pvecri-it-x/state/snapshots/"));
        let spaced = find(&text, state, Path::new("/run/pvecri two"), false);
        assert!(
            spaced.other.contains(&"/run/pvecri two/x".to_owned()),
            "{spaced:?}"
        );
    }
}
