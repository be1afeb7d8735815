//! Cgroups of pvecri's containers and monitors, and the processes still in
//! them, on every hierarchy.
//!
//! A container's cgroup is `<pod cgroup parent>/<id>` (cgroupfs driver,
//! `pvecri/<id>` without a parent) or `…/pvecri-<id>.scope` (systemd
//! driver); its monitor's is `pvecri.monitor/<id>` (see
//! `crate::cgroups::paths`). Cgroups are node-wide, so a census of one
//! state dir looks only for the IDs it knows; a node census also takes
//! every child of `pvecri` and `pvecri.monitor` and every
//! `pvecri-<64 hex>.scope`. The shared parents themselves are not counted:
//! no daemon removes them and they hold nothing.

use std::collections::{BTreeMap, BTreeSet};

use crate::cgroups::tree::{self, Hierarchy};

/// The top-level cgroups pvecri creates children in.
const PARENTS: [&str; 2] = ["pvecri", "pvecri.monitor"];

/// `pvecri-<id>.scope`, the systemd driver's container cgroup.
fn scope_id(name: &str) -> Option<&str> {
    let id = name.strip_prefix("pvecri-")?.strip_suffix(".scope")?;
    super::is_id(id).then_some(id)
}

/// Cgroups of the census: each relative path with how many hierarchies it
/// is on.
pub(super) fn find(
    hierarchies: &[Hierarchy],
    ids: &BTreeSet<String>,
    node: bool,
) -> BTreeMap<String, usize> {
    let matches = |rel: &str, name: &str| {
        let ours = ids.contains(name) || scope_id(name).is_some_and(|id| ids.contains(id));
        let shaped = node
            && (scope_id(name).is_some()
                || rel
                    .split_once('/')
                    .is_some_and(|(top, rest)| PARENTS.contains(&top) && !rest.contains('/')));
        ours || shaped
    };
    let mut out: BTreeMap<String, usize> = BTreeMap::new();
    for (_, rel) in tree::walk(hierarchies, matches) {
        *out.entry(rel).or_default() += 1;
    }
    // A match below another match (a container ID nested in a container's
    // cgroup) is part of the outer one.
    let all: Vec<String> = out.keys().cloned().collect();
    out.retain(|rel, _| {
        !all.iter()
            .any(|other| rel.len() > other.len() && rel.starts_with(&format!("{other}/")))
    });
    out
}

/// One detail line per cgroup.
pub(super) fn items(found: &BTreeMap<String, usize>, total: usize) -> Vec<String> {
    found
        .iter()
        .map(|(rel, n)| format!("{rel} (on {n} of {total} hierarchies)"))
        .collect()
}

/// The live processes in the cgroups (and below them): one line each.
pub(super) fn processes(hierarchies: &[Hierarchy], found: &BTreeMap<String, usize>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for rel in found.keys() {
        for pid in tree::members(hierarchies, rel) {
            if seen.insert(pid) {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                out.push(format!("pid {pid} ({}) in {rel}", comm.trim()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(c: char) -> String {
        c.to_string().repeat(64)
    }

    /// Two hierarchies in a temp dir with the given cgroup dirs on both.
    fn tree(dirs: &[String]) -> (tempfile::TempDir, Vec<Hierarchy>) {
        let root = tempfile::tempdir().unwrap();
        let h: Vec<Hierarchy> = ["memory", "unified"]
            .iter()
            .map(|m| Hierarchy {
                mount_point: root.path().join(m),
                v2: *m == "unified",
                freezer: false,
            })
            .collect();
        for hier in &h {
            for d in dirs {
                std::fs::create_dir_all(hier.mount_point.join(d)).unwrap();
            }
        }
        (root, h)
    }

    #[test]
    fn a_state_census_finds_its_ids_anywhere_and_nothing_else() {
        let (a, b, other) = (id('a'), id('b'), id('c'));
        let (_root, h) = tree(&[
            format!("kubepods/pod1/{a}"),
            format!("pvecri.monitor/{a}"),
            format!("system.slice/kubepods.slice/pvecri-{b}.scope"),
            format!("pvecri.monitor/{other}"),
            format!("pvecri/{other}"),
            "user.slice/session-1.scope".into(),
        ]);
        let ids: BTreeSet<String> = [a.clone(), b.clone()].into_iter().collect();
        let found = find(&h, &ids, false);
        let rels: Vec<&String> = found.keys().collect();
        assert_eq!(
            rels,
            [
                &format!("kubepods/pod1/{a}"),
                &format!("pvecri.monitor/{a}"),
                &format!("system.slice/kubepods.slice/pvecri-{b}.scope"),
            ]
        );
        assert!(found.values().all(|n| *n == 2));
        assert_eq!(
            items(&found, 2)[1],
            format!("pvecri.monitor/{a} (on 2 of 2 hierarchies)")
        );
    }

    #[test]
    fn a_node_census_takes_every_child_of_pvecris_parents() {
        let (a, other) = (id('a'), id('c'));
        let (_root, h) = tree(&[
            format!("pvecri/{other}/lxc.payload"),
            format!("pvecri.monitor/{other}"),
            "pvecri.monitor/not-an-id-but-ours".into(),
            format!("machine.slice/pvecri-{a}.scope"),
            "pvecri-notes.scope".into(),
            "kubepods/pod1/deadbeef".into(),
        ]);
        let found = find(&h, &BTreeSet::new(), true);
        let rels: Vec<&String> = found.keys().collect();
        assert_eq!(
            rels,
            [
                &format!("machine.slice/pvecri-{a}.scope"),
                &format!("pvecri.monitor/{other}"),
                &"pvecri.monitor/not-an-id-but-ours".to_owned(),
                &format!("pvecri/{other}"),
            ]
        );
    }

    #[test]
    fn members_of_found_cgroups_are_listed_once() {
        let a = id('a');
        let (_root, h) = tree(&[format!("pvecri/{a}/sub")]);
        let me = std::process::id().to_string();
        for hier in &h {
            std::fs::write(
                hier.mount_point
                    .join(format!("pvecri/{a}/sub/cgroup.procs")),
                &me,
            )
            .unwrap();
        }
        let ids: BTreeSet<String> = [a.clone()].into_iter().collect();
        let found = find(&h, &ids, false);
        let procs = processes(&h, &found);
        assert_eq!(procs.len(), 1, "{procs:?}");
        assert!(procs[0].starts_with(&format!("pid {me} (")), "{procs:?}");
        assert!(procs[0].ends_with(&format!("in pvecri/{a}")), "{procs:?}");
    }
}
