//! Proxmox VE: which release the node runs (pve-manager's version, from
//! dpkg's status file: no subprocess), its storages, and that pvecri's
//! containers stay out of Proxmox's own LXC path.

use std::path::Path;

use super::Check;
use crate::config::Config;
use crate::image::import::PveStorages;

const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// The oldest release pvecri is built for: Proxmox VE 8 (Debian 12, liblxc 5).
const MIN_MAJOR: u32 = 8;

pub(super) fn checks(config: &Config) -> Vec<Check> {
    let status = std::fs::read_to_string(DPKG_STATUS).unwrap_or_default();
    let version = installed_version(&status, "pve-manager");
    let etc_pve = Path::new("/etc/pve").is_dir();
    let mut out = vec![node_verdict(
        etc_pve,
        version.as_deref(),
        &config.lxc_path(),
    )];
    if etc_pve || version.is_some() {
        out.push(match PveStorages::load() {
            Ok(s) => Check::ok("pve storage", storage_summary(&s)),
            Err(e) => Check::warn(
                "pve storage",
                crate::errors::chain(&e),
                "/etc/pve is pve-cluster's filesystem: check it (`systemctl status pve-cluster`)",
            ),
        });
    }
    out
}

/// The version of `package` if dpkg has it installed. The status file is
/// paragraphs of `Field: value` lines separated by blank lines; a package
/// removed but not purged keeps a paragraph whose `Status` is not
/// `... installed`.
fn installed_version(status: &str, package: &str) -> Option<String> {
    status.split("\n\n").find_map(|para| {
        let field = |name: &str| {
            para.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        let installed = field("Status")?.split_whitespace().nth(2) == Some("installed");
        if field("Package")? != package || !installed {
            return None;
        }
        field("Version").map(str::to_owned)
    })
}

/// The major release in a Debian version such as `8.3.2` or `1:5.0.2-4`.
fn major(version: &str) -> Option<u32> {
    let upstream = version.split_once(':').map_or(version, |(_, v)| v);
    upstream.split(['.', '-', '~']).next()?.parse().ok()
}

fn node_verdict(etc_pve: bool, version: Option<&str>, lxc_path: &Path) -> Check {
    if lxc_path == Path::new("/var/lib/lxc") {
        return Check::fail(
            "proxmox",
            "pvecri's lxc path is /var/lib/lxc, shared with Proxmox VE's own containers",
            "set state_dir so that pvecri keeps its containers apart",
        );
    }
    let apart = format!("pvecri containers live apart in {}", lxc_path.display());
    match (etc_pve, version) {
        (false, None) => Check::ok(
            "proxmox",
            format!("not a Proxmox VE node (no /etc/pve, no pve-manager); {apart}"),
        ),
        (_, Some(v)) if major(v).is_some_and(|m| m < MIN_MAJOR) => Check::warn(
            "proxmox",
            format!("Proxmox VE {v}: older than {MIN_MAJOR}, the release pvecri is built for"),
            format!("upgrade the node to Proxmox VE {MIN_MAJOR} or later (pve7to8)"),
        ),
        (_, Some(v)) => Check::ok("proxmox", format!("Proxmox VE {v} (pve-manager); {apart}")),
        (true, None) => Check::ok(
            "proxmox",
            format!("Proxmox VE node (/etc/pve), pve-manager not installed per dpkg; {apart}"),
        ),
    }
}

/// `id (type[, path])` for every storage in storage.cfg.
fn storage_summary(s: &PveStorages) -> String {
    let list: Vec<String> = s
        .storages()
        .map(|(id, kind)| {
            let place = s
                .zfs_pools()
                .find(|(z, _)| *z == id)
                .map(|(_, ds)| ds.to_owned())
                .or_else(|| s.root(id).map(|r| r.display().to_string()));
            match place {
                Some(place) => format!("{id} ({kind}, {place})"),
                None => format!("{id} ({kind})"),
            }
        })
        .collect();
    if list.is_empty() {
        "/etc/pve/storage.cfg lists no storage".to_owned()
    } else {
        format!("/etc/pve/storage.cfg: {}", list.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::super::Level;
    use super::*;

    const STATUS: &str = "\
Package: pve-manager
Status: install ok installed
Priority: optional
Architecture: amd64
Version: 8.3.2
Description: Proxmox Virtual Environment Management Tools
 This package contains the Proxmox Virtual Environment management tools.

Package: lxc-pve
Status: deinstall ok config-files
Version: 6.0.0-1

Package: liblxc1
Status: install ok installed
Version: 1:5.0.2-2+deb12u2
";

    #[test]
    fn dpkg_status_gives_installed_versions_only() {
        assert_eq!(
            installed_version(STATUS, "pve-manager").as_deref(),
            Some("8.3.2")
        );
        assert_eq!(
            installed_version(STATUS, "liblxc1").as_deref(),
            Some("1:5.0.2-2+deb12u2")
        );
        assert_eq!(installed_version(STATUS, "lxc-pve"), None, "removed");
        assert_eq!(installed_version(STATUS, "pve"), None, "not a prefix match");
        assert_eq!(installed_version("", "pve-manager"), None);
        assert_eq!(major("8.3.2"), Some(8));
        assert_eq!(major("1:5.0.2-2"), Some(5));
        assert_eq!(major("7~rc1"), Some(7));
    }

    #[test]
    fn the_node_line_names_the_release_and_refuses_a_shared_lxc_path() {
        let ours = Path::new("/var/lib/pvecri/lxc");
        let c = node_verdict(true, Some("8.3.2"), ours);
        assert_eq!(c.level, Level::Ok);
        assert!(c.detail.starts_with("Proxmox VE 8.3.2"), "{}", c.detail);
        assert_eq!(node_verdict(true, Some("7.4-3"), ours).level, Level::Warn);
        let c = node_verdict(false, None, ours);
        assert_eq!(c.level, Level::Ok);
        assert!(
            c.detail.starts_with("not a Proxmox VE node"),
            "{}",
            c.detail
        );
        assert_eq!(
            node_verdict(false, None, Path::new("/var/lib/lxc")).level,
            Level::Fail
        );
    }

    #[test]
    fn storages_are_summarised_with_their_place() {
        let cfg = "dir: local\n\tpath /var/lib/vz\n\nlvmthin: local-lvm\n\tthinpool data\n\nzfspool: local-zfs\n\tpool rpool/data\n";
        let s = PveStorages::from_cfg_text(cfg, "/var/lib/vz");
        assert_eq!(
            storage_summary(&s),
            "/etc/pve/storage.cfg: local (dir, /var/lib/vz), local-lvm (lvmthin), local-zfs (zfspool, rpool/data)"
        );
        assert_eq!(
            storage_summary(&PveStorages::from_cfg_text("", "/var/lib/vz")),
            "/etc/pve/storage.cfg lists no storage"
        );
    }
}
