//! The node census: everything pvecri owns on a node, counted by kind,
//! read-only. It answers "what is left?" after a daemon stops (tests, CI,
//! an operator before removing pvecri) and "what grows?" during a soak.
//!
//! Scope: a census of one state dir (the default) counts what that
//! daemon's config and directories name (its state and run dirs, its
//! bridge) and the pod and container IDs it knows (from the store, its
//! per-container directories, its helper processes, and the caller); with
//! `node` it also takes everything on the node shaped like pvecri's
//! (`pvecri/*` and `pvecri.monitor/*` cgroups, `pvc*` veths, every managed
//! bridge and `pvecri-*` table, every helper process, pins and root
//! filesystems under any directory), which is what a CI run ends with.
//!
//! Each kind is its own module over the [`Host`] seam; [`take`] puts them
//! into a [`Report`].

mod cgroups;
mod dirs;
mod helpers;
pub(crate) mod host;
mod links;
mod mounts;
mod nft;
pub(crate) mod report;
pub(crate) mod store;

use std::collections::BTreeSet;

pub(crate) use host::{Host, RealHost};
pub(crate) use report::{Kind, Report, ScopeInfo, Section};
pub(crate) use store::{StoreKeys, StoreView};

use crate::config::Config;

/// IDs pvecri generates: 64 lowercase hex digits.
pub(crate) fn is_id(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What to count beyond the config's own dirs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    /// Everything pvecri-shaped on the node.
    pub node: bool,
    /// Pod and container IDs to look for that the state may no longer name
    /// (a caller that created them and removed them since).
    pub ids: BTreeSet<String>,
}

/// Counts what the daemon of `config` (or, with `node`, any pvecri) left
/// on the node.
pub(crate) fn take(
    config: &Config,
    options: &Options,
    host: &dyn Host,
    store: &StoreView,
) -> Report {
    let node = options.node;
    let dirs = dirs::find(config);
    let mut ids: BTreeSet<String> = options.ids.clone();
    ids.extend(dirs.ids.iter().cloned());
    if let StoreView::Read(keys) | StoreView::FromDaemon(keys) = store {
        ids.extend(keys.ids().cloned());
    }

    let processes = host.processes();
    let mut daemon = daemon_section(config);
    if let Ok(procs) = &processes {
        // Spares live and end with their daemon: a stopped daemon's section
        // must be empty, so one left behind shows there.
        daemon.extend(helpers::spares(procs, &config.lxc_path(), node));
    }
    daemon.extend(dirs.spares.iter().cloned());
    let mut sections = vec![daemon];

    let helpers = match &processes {
        Ok(procs) => {
            let found = helpers::find(procs, &config.lxc_path(), &ids, node);
            // A helper of this lxcpath names a container of this state.
            ids.extend(found.iter().map(|h| h.id.clone()));
            Section::of(Kind::Helpers, found.iter().map(|h| h.line()).collect())
        }
        Err(e) => Section::failed(Kind::Helpers, crate::errors::chain(e)),
    };

    match host.hierarchies() {
        Ok(h) => {
            let found = cgroups::find(&h, &ids, node);
            sections.push(Section::of(Kind::Processes, cgroups::processes(&h, &found)));
            sections.push(helpers);
            sections.push(Section::of(Kind::Cgroups, cgroups::items(&found, h.len())));
        }
        Err(e) => {
            let msg = crate::errors::chain(&e);
            sections.push(Section::failed(Kind::Processes, msg.clone()));
            sections.push(helpers);
            sections.push(Section::failed(Kind::Cgroups, msg));
        }
    }

    match host.mountinfo() {
        Ok(text) => {
            let m = mounts::find(&text, &config.state_dir, &config.runtime_dir, node);
            // Spare network namespaces live and go with their daemon too.
            sections[0].extend(m.spares);
            sections.push(Section::of(Kind::Mounts, m.other));
            sections.push(Section::of(Kind::Pins, m.pins));
        }
        Err(e) => {
            let msg = crate::errors::chain(&e);
            sections.push(Section::failed(Kind::Mounts, msg.clone()));
            sections.push(Section::failed(Kind::Pins, msg));
        }
    }

    let bridge = &config.network.bridge;
    match links::find(&host.net_dir(), &ids, bridge, node) {
        Ok(l) => {
            sections.push(Section::of(Kind::Veths, l.veths));
            sections.push(Section::of(Kind::Ifbs, l.ifbs));
            sections.push(Section::of(Kind::Bridges, l.bridges));
        }
        Err(e) => {
            let msg = format!("cannot list {}: {e}", host.net_dir().display());
            sections.push(Section::failed(Kind::Veths, msg.clone()));
            sections.push(Section::failed(Kind::Ifbs, msg.clone()));
            sections.push(Section::failed(Kind::Bridges, msg));
        }
    }

    let tables = host
        .nft_ruleset()
        .map_err(|e| crate::errors::chain(&e))
        .and_then(|r| match r {
            Some(text) => nft::find(&text, bridge, node)
                .map(Some)
                .map_err(|e| crate::errors::chain(&e)),
            None => Ok(None),
        });
    match tables {
        Ok(Some(n)) => {
            sections.push(Section::of(Kind::NftTables, n.tables));
            sections.push(Section::of(Kind::NftElements, n.elements));
        }
        Ok(None) => {
            let note = "nft is not installed";
            sections.push(Section::of(Kind::NftTables, Vec::new()).with_note(note));
            sections.push(Section::of(Kind::NftElements, Vec::new()).with_note(note));
        }
        Err(msg) => {
            sections.push(Section::failed(Kind::NftTables, msg.clone()));
            sections.push(Section::failed(Kind::NftElements, msg));
        }
    }

    sections.push(Section::of(Kind::LxcDirs, dirs.lxc));
    sections.push(Section::of(Kind::RunDirs, dirs.run));
    sections.push(Section::of(Kind::Snapshots, dirs.snapshots));
    sections.extend(store_sections(store));
    sections.push(Section::counted(Kind::Layers, dirs.layers));
    sections.push(Section::counted(Kind::Blobs, dirs.blobs));

    Report {
        scope: ScopeInfo {
            state_dir: config.state_dir.display().to_string(),
            runtime_dir: config.runtime_dir.display().to_string(),
            bridge: bridge.clone(),
            node,
            ids: ids.len(),
        },
        sections,
    }
}

fn daemon_section(config: &Config) -> Section {
    match crate::daemon::lock_holder(&config.lock_path()) {
        Ok(None) => Section::of(Kind::Daemon, Vec::new()),
        Ok(Some(pid)) => Section::of(
            Kind::Daemon,
            vec![format!(
                "pid {} holds {}",
                if pid.is_empty() { "?" } else { &pid },
                config.lock_path().display()
            )],
        ),
        Err(e) => Section::failed(Kind::Daemon, crate::errors::chain(&e)),
    }
}

fn store_sections(store: &StoreView) -> Vec<Section> {
    let kinds = [Kind::StoreRecords, Kind::Ipam, Kind::Images];
    let (keys, note) = match store {
        StoreView::Read(keys) => (keys, None),
        StoreView::FromDaemon(keys) => (keys, Some("from the running daemon")),
        StoreView::Absent => {
            return kinds
                .map(|k| Section::of(k, Vec::new()).with_note("no store"))
                .to_vec()
        }
        StoreView::InUse => {
            return kinds
                .map(|k| Section::failed(k, "the store is in use by a running daemon"))
                .to_vec()
        }
        StoreView::Unreadable(msg) => {
            return kinds.map(|k| Section::failed(k, msg.clone())).to_vec()
        }
    };
    let records: Vec<String> = keys
        .pods
        .iter()
        .map(|k| format!("pod {k}"))
        .chain(keys.containers.iter().map(|k| format!("container {k}")))
        .collect();
    let ipam = match &keys.networks {
        Some(n) => Section::of(Kind::Ipam, n.iter().map(|k| format!("pod {k}")).collect()),
        None => Section::of(Kind::Ipam, Vec::new()).with_note("not known while the daemon runs"),
    };
    let mut out = vec![
        Section::of(Kind::StoreRecords, records),
        ipam,
        Section::of(Kind::Images, keys.images.clone()),
    ];
    if let Some(note) = note {
        for s in &mut out {
            s.note.get_or_insert_with(|| note.to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::host::{HostError, Process};
    use super::*;
    use crate::cgroups::tree::Hierarchy;

    /// A node made of fixture files under one temp dir.
    struct FakeHost {
        root: PathBuf,
        mountinfo: String,
        processes: Vec<Process>,
        ruleset: Option<String>,
    }

    impl Host for FakeHost {
        fn hierarchies(&self) -> Result<Vec<Hierarchy>, HostError> {
            Ok(vec![Hierarchy {
                mount_point: self.root.join("cgroup"),
                v2: true,
                freezer: false,
            }])
        }
        fn mountinfo(&self) -> Result<String, HostError> {
            Ok(self.mountinfo.clone())
        }
        fn processes(&self) -> Result<Vec<Process>, HostError> {
            Ok(self.processes.clone())
        }
        fn net_dir(&self) -> PathBuf {
            self.root.join("net")
        }
        fn nft_ruleset(&self) -> Result<Option<String>, HostError> {
            Ok(self.ruleset.clone())
        }
    }

    fn mkdir(p: &Path) {
        std::fs::create_dir_all(p).unwrap();
    }

    #[test]
    fn a_state_census_counts_what_its_ids_left_and_a_clean_one_is_zero() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let config = Config::from_toml(&format!(
            "state_dir = \"{d}/state\"\nruntime_dir = \"{d}/run\"\n",
            d = d.display()
        ))
        .unwrap();
        let (pod, ctr, gone) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        mkdir(&d.join("net/lo"));
        mkdir(&d.join("cgroup"));
        let clean = FakeHost {
            root: d.to_owned(),
            mountinfo: "27 1 254:0 / / rw - ext4 /dev/vda rw\n".into(),
            processes: vec![],
            ruleset: None,
        };
        let report = take(&config, &Options::default(), &clean, &StoreView::Absent);
        assert!(report.leftovers().is_empty(), "{}", report.text());

        // The container is known from its LXC dir; the removed one only
        // from the caller.
        mkdir(&d.join(format!("state/lxc/{ctr}")));
        mkdir(&d.join(format!("cgroup/kubepods/{ctr}")));
        mkdir(&d.join(format!("cgroup/pvecri.monitor/{gone}")));
        mkdir(&d.join(format!("cgroup/pvecri.monitor/{}", "e".repeat(64))));
        mkdir(&d.join(format!("net/{}", crate::network::host_veth_name(&pod))));
        let host = FakeHost {
            mountinfo: format!(
                "27 1 254:0 / / rw - ext4 /dev/vda rw\n41 27 0:4 net:[1] {d}/run/ns/{pod}/net rw - nsfs nsfs rw\n",
                d = d.display()
            ),
            processes: vec![Process {
                pid: 7,
                argv: format!(
                    "pvecri monitor --id {ctr} --lxcpath {}/state/lxc --run-dir /r",
                    d.display()
                )
                .split(' ')
                .map(str::to_owned)
                .collect(),
            }],
            ..clean
        };
        let store = StoreView::Read(StoreKeys {
            pods: vec![pod.clone()],
            networks: Some(vec![pod.clone()]),
            ..Default::default()
        });
        let options = Options {
            node: false,
            ids: [gone.clone()].into_iter().collect(),
        };
        let report = take(&config, &options, &host, &store);
        let counts: Vec<(&str, usize)> = report
            .sections
            .iter()
            .filter(|s| s.count > 0)
            .map(|s| (s.kind.name(), s.count))
            .collect();
        assert_eq!(
            counts,
            [
                ("helpers", 1),
                ("cgroups", 2),
                ("pins", 1),
                ("veths", 1),
                ("lxc_dirs", 1),
                ("store_records", 1),
                ("ipam", 1),
            ],
            "{}",
            report.text()
        );
        assert_eq!(report.scope.ids, 3);
        let node = take(
            &config,
            &Options {
                node: true,
                ..Default::default()
            },
            &host,
            &store,
        );
        assert_eq!(node.count(Kind::Cgroups), 3, "{}", node.text());
    }
}
