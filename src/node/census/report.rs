//! The census report: one section per kind of thing pvecri leaves on a
//! node, with a count and the details, as text for people or JSON for
//! scripts.
//!
//! A section is *live* when its things exist only while pvecri runs pods
//! (processes, cgroups, mounts, pins, links, nftables state, per-container
//! directories): with the daemon stopped and everything removed, each must
//! be zero. The other sections (store records, image layers, blobs) are
//! kept state, reported for trend-watching only.

use std::fmt::Write as _;

use serde::Serialize;

/// Every kind the census counts, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// A daemon holding the state directory's lock.
    Daemon,
    /// Live processes in the cgroups of pvecri's containers and monitors.
    Processes,
    /// `pvecri monitor` and `pvecri exec-helper` processes.
    Helpers,
    /// Cgroups of pvecri's containers and monitors (any hierarchy).
    Cgroups,
    /// Mounts under the state and run dirs, pins excepted.
    Mounts,
    /// Namespace pins (nsfs bind mounts) of pods.
    Pins,
    /// Host ends of pod veths (`pvc…`).
    Veths,
    /// Ifb devices shaping pods' egress bandwidth (`pvb…`).
    Ifbs,
    /// Bridges pvecri created (alias `pvecri-managed`) with no port left.
    Bridges,
    /// pvecri's nftables tables.
    NftTables,
    /// Host-port elements in those tables' maps.
    NftElements,
    /// LXC container directories (`state_dir/lxc/<id>`).
    LxcDirs,
    /// Per-pod and per-container dirs (run/containers, run/staging, run/ns,
    /// state/sandboxes).
    RunDirs,
    /// Container root filesystems (`snapshots/<backend>/containers/<id>`).
    Snapshots,
    /// Pod and container records in the store.
    StoreRecords,
    /// Pod network allocations in the store (built-in IPAM and CNI).
    Ipam,
    /// Image records in the store.
    Images,
    /// Committed image layers.
    Layers,
    /// Blobs in the content store.
    Blobs,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Daemon => "daemon",
            Kind::Processes => "processes",
            Kind::Helpers => "helpers",
            Kind::Cgroups => "cgroups",
            Kind::Mounts => "mounts",
            Kind::Pins => "pins",
            Kind::Veths => "veths",
            Kind::Ifbs => "ifbs",
            Kind::Bridges => "bridges",
            Kind::NftTables => "nft_tables",
            Kind::NftElements => "nft_elements",
            Kind::LxcDirs => "lxc_dirs",
            Kind::RunDirs => "run_dirs",
            Kind::Snapshots => "snapshots",
            Kind::StoreRecords => "store_records",
            Kind::Ipam => "ipam",
            Kind::Images => "images",
            Kind::Layers => "layers",
            Kind::Blobs => "blobs",
        }
    }

    /// Whether a non-zero count means something is left behind once the
    /// daemon is stopped with every pod removed.
    pub(crate) fn live(self) -> bool {
        !matches!(
            self,
            Kind::StoreRecords | Kind::Ipam | Kind::Images | Kind::Layers | Kind::Blobs
        )
    }
}

/// One kind's findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Section {
    pub kind: Kind,
    pub live: bool,
    pub count: usize,
    /// One line per thing found.
    pub items: Vec<String>,
    /// Where the figures came from when that is not obvious.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Why the kind could not be counted (the count is then a lower bound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Section {
    /// A section counting `items`.
    pub(crate) fn of(kind: Kind, items: Vec<String>) -> Self {
        Self {
            kind,
            live: kind.live(),
            count: items.len(),
            items,
            note: None,
            error: None,
        }
    }

    /// Adds lines found by another reader to this section.
    pub(crate) fn extend(&mut self, items: impl IntoIterator<Item = String>) {
        self.items.extend(items);
        self.count = self.items.len();
    }

    /// A section with a count and no detail lines (image data).
    pub(crate) fn counted(kind: Kind, count: usize) -> Self {
        Self {
            count,
            ..Self::of(kind, Vec::new())
        }
    }

    /// A section for a kind that could not be read.
    pub(crate) fn failed(kind: Kind, error: impl Into<String>) -> Self {
        Self {
            error: Some(error.into()),
            ..Self::of(kind, Vec::new())
        }
    }

    pub(crate) fn with_note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// Live and non-zero, or live and unreadable: with the daemon stopped,
    /// either means the node cannot be called clean.
    pub(crate) fn is_leftover(&self) -> bool {
        self.live && (self.count > 0 || self.error.is_some())
    }
}

/// What the census covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ScopeInfo {
    pub state_dir: String,
    pub runtime_dir: String,
    pub bridge: String,
    /// Everything pvecri-shaped on the node, not only this state's.
    pub node: bool,
    /// Pod and container IDs the census looked for.
    pub ids: usize,
}

/// The whole census.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Report {
    pub scope: ScopeInfo,
    pub sections: Vec<Section>,
}

/// Detail lines shown per section in the text form.
const TEXT_ITEMS: usize = 20;

impl Report {
    #[cfg(test)]
    pub(crate) fn section(&self, kind: Kind) -> Option<&Section> {
        self.sections.iter().find(|s| s.kind == kind)
    }

    /// The count of `kind` (0 when not taken).
    #[cfg(test)]
    pub(crate) fn count(&self, kind: Kind) -> usize {
        self.section(kind).map_or(0, |s| s.count)
    }

    /// Sections that make a stopped node unclean.
    pub(crate) fn leftovers(&self) -> Vec<&Section> {
        self.sections.iter().filter(|s| s.is_leftover()).collect()
    }

    /// One line per kind with its count, then the details of non-zero ones.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        let s = &self.scope;
        let _ = writeln!(
            out,
            "census of {} (state {}, run {}, bridge {}; {} known ids)",
            if s.node { "the node" } else { "one state dir" },
            s.state_dir,
            s.runtime_dir,
            s.bridge,
            s.ids
        );
        for sec in &self.sections {
            let mark = match (sec.live, sec.error.is_some()) {
                (_, true) => "?",
                (true, false) => " ",
                (false, false) => "=",
            };
            let _ = write!(out, "{mark} {:<14} {:>6}", sec.kind.name(), sec.count);
            if let Some(err) = &sec.error {
                let _ = write!(out, "  error: {err}");
            }
            if let Some(note) = &sec.note {
                let _ = write!(out, "  ({note})");
            }
            out.push('\n');
            for item in sec.items.iter().take(TEXT_ITEMS) {
                let _ = writeln!(out, "      {item}");
            }
            if sec.items.len() > TEXT_ITEMS {
                let _ = writeln!(out, "      ... and {} more", sec.items.len() - TEXT_ITEMS);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(sections: Vec<Section>) -> Report {
        Report {
            scope: ScopeInfo {
                state_dir: "/s".into(),
                runtime_dir: "/r".into(),
                bridge: "pvecri0".into(),
                node: false,
                ids: 0,
            },
            sections,
        }
    }

    #[test]
    fn only_live_nonzero_or_unreadable_sections_are_leftovers() {
        let r = report(vec![
            Section::of(Kind::Processes, vec![]),
            Section::of(Kind::Cgroups, vec!["pvecri.monitor/x".into()]),
            Section::of(Kind::Images, vec!["busybox".into()]),
            Section::failed(Kind::NftTables, "nft failed"),
        ]);
        let kinds: Vec<Kind> = r.leftovers().iter().map(|s| s.kind).collect();
        assert_eq!(kinds, [Kind::Cgroups, Kind::NftTables]);
        assert_eq!(r.count(Kind::Cgroups), 1);
        assert_eq!(r.count(Kind::Mounts), 0);
    }

    #[test]
    fn text_has_a_line_per_kind_and_bounded_details() {
        let many: Vec<String> = (0..25).map(|i| format!("pid {i}")).collect();
        let r = report(vec![
            Section::of(Kind::Processes, many),
            Section::of(Kind::Mounts, vec![]).with_note("none"),
        ]);
        let text = r.text();
        assert!(text.contains("  processes          25\n"), "{text}");
        assert!(
            text.contains("      pid 19\n") && !text.contains("pid 20\n"),
            "{text}"
        );
        assert!(text.contains("... and 5 more"), "{text}");
        assert!(text.contains("  mounts              0  (none)"), "{text}");
    }

    #[test]
    fn json_names_kinds_in_snake_case() {
        let r = report(vec![Section::of(Kind::NftElements, vec!["x".into()])]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["sections"][0]["kind"], "nft_elements");
        assert_eq!(v["sections"][0]["count"], 1);
        assert_eq!(v["sections"][0]["live"], true);
        assert!(v["sections"][0].get("error").is_none());
    }
}
