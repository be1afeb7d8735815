//! `pvecri doctor`: one line per node check, with the fix when not ok.
//! Exits 1 when any check fails (warnings are features pvecri can do
//! without, at a cost the line names).

use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::process::ExitCode;

use crate::cgroups;
use crate::config::Config;
use crate::lxc;
use crate::node::kernel;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Warn,
    Fail,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        })
    }
}

struct Check {
    name: &'static str,
    level: Level,
    detail: String,
    fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            level: Level::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn bad(
        name: &'static str,
        level: Level,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name,
            level,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

pub(super) fn run(config: &Config) -> anyhow::Result<ExitCode> {
    let checks = checks(config);
    for c in &checks {
        println!("{}  {:<14} {}", c.level, c.name, c.detail);
        if let Some(fix) = &c.fix {
            println!("      {:<14} fix: {fix}", "");
        }
    }
    let worst = checks.iter().map(|c| c.level).max().unwrap_or(Level::Ok);
    Ok(if worst == Level::Fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn checks(config: &Config) -> Vec<Check> {
    vec![
        liblxc_check(),
        lxc_features_check(),
        namespaces_check(),
        cgroup_check(),
        overlay_check(),
        seccomp_check(),
        apparmor_check(),
        zfs_check(config),
        init_check(config),
        socket_check(config),
        proxmox_check(config),
    ]
}

fn liblxc_check() -> Check {
    let v = lxc::version();
    match lxc::parse_version(&v) {
        Some((major, _)) if major >= 5 => Check::ok("liblxc", format!("version {v}")),
        _ => Check::bad(
            "liblxc",
            Level::Fail,
            format!("version {v} is older than 5.0"),
            "install liblxc1 >= 5.0 (Debian 12) or lxc-pve >= 5 (Proxmox VE)",
        ),
    }
}

fn lxc_features_check() -> Check {
    let missing: Vec<&str> = [
        "lxc.namespace.share.",
        "lxc.cgroup.dir.container",
        "lxc.cgroup.dir.monitor",
        "lxc.init.cmd",
    ]
    .into_iter()
    .filter(|k| !lxc::config_item_supported(k))
    .collect();
    if missing.is_empty() {
        Check::ok(
            "lxc features",
            "namespace sharing, cgroup dirs, init.cmd supported",
        )
    } else {
        Check::bad(
            "lxc features",
            Level::Fail,
            format!("liblxc lacks {}", missing.join(", ")),
            "upgrade liblxc to 5.0 or newer",
        )
    }
}

fn namespaces_check() -> Check {
    let missing = kernel::missing_namespaces();
    if missing.is_empty() {
        Check::ok("namespaces", kernel::NAMESPACES.join(", "))
    } else {
        Check::bad(
            "namespaces",
            Level::Fail,
            format!("kernel lacks {}", missing.join(", ")),
            "boot a kernel built with these namespaces",
        )
    }
}

fn cgroup_check() -> Check {
    match cgroups::detect() {
        Ok(cgroups::CgroupLayout::None) => Check::bad(
            "cgroups",
            Level::Fail,
            "no cgroup filesystem is mounted",
            "mount cgroup2 at /sys/fs/cgroup",
        ),
        Ok(layout @ cgroups::CgroupLayout::Unified) => Check::ok("cgroups", layout.to_string()),
        Ok(layout) => Check::bad(
            "cgroups",
            Level::Warn,
            layout.to_string(),
            "works; Proxmox VE 7+ and current kubelets prefer the unified hierarchy \
             (systemd.unified_cgroup_hierarchy=1)",
        ),
        Err(err) => Check::bad(
            "cgroups",
            Level::Fail,
            format!("cannot read /proc/self/mountinfo: {err}"),
            "run on a Linux host with /proc mounted",
        ),
    }
}

fn overlay_check() -> Check {
    if kernel::has_filesystem("overlay") {
        Check::ok("overlayfs", "available")
    } else {
        Check::bad(
            "overlayfs",
            Level::Warn,
            "not in /proc/filesystems",
            "load the module (`modprobe overlay`); until then images unpack with the slower directory-copy backend",
        )
    }
}

fn seccomp_check() -> Check {
    if kernel::has_seccomp() {
        Check::ok("seccomp", "available")
    } else {
        Check::bad(
            "seccomp",
            Level::Fail,
            "kernel built without seccomp",
            "boot a kernel with CONFIG_SECCOMP_FILTER",
        )
    }
}

fn apparmor_check() -> Check {
    if kernel::apparmor_enabled() {
        Check::ok("apparmor", "enabled")
    } else {
        Check::bad(
            "apparmor",
            Level::Warn,
            "not enabled in the kernel",
            "pods asking for an AppArmor profile other than unconfined will be refused; \
             boot with apparmor=1 security=apparmor to enable it",
        )
    }
}

fn zfs_check(config: &Config) -> Check {
    let dev = kernel::zfs_available();
    // libzfs_core needs /dev/zfs; without it there is nothing to ask.
    let zfs = if dev { crate::zfs::open().ok() } else { None };
    let pools: Vec<(String, String)> = if kernel::is_proxmox() {
        crate::image::import::PveStorages::load()
            .map(|s| {
                s.zfs_pools()
                    .map(|(id, ds)| (id.to_owned(), ds.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    zfs_verdict(&config.images, dev, zfs.as_deref(), &pools)
}

/// Below this much free space in the parent dataset, doctor warns.
const ZFS_LOW_SPACE: u64 = 2 << 30;

/// The ZFS line: with the zfs snapshotter configured, whether its dataset
/// is usable; otherwise, on a Proxmox node with `zfspool` storages, the
/// configuration that would keep images and containers on ZFS.
fn zfs_verdict(
    images: &crate::config::ImagesConfig,
    dev: bool,
    zfs: Option<&dyn crate::zfs::ZfsOps>,
    pools: &[(String, String)],
) -> Check {
    use crate::snapshot::BackendKind;
    let Some(dataset) = images
        .zfs_dataset
        .as_deref()
        .filter(|_| images.snapshotter == BackendKind::Zfs)
    else {
        let proposal = pools
            .iter()
            .find(|(id, _)| id == "local-zfs")
            .or(pools.first());
        return match (proposal, dev) {
            (Some((id, ds)), true) => Check::bad(
                "zfs",
                Level::Warn,
                format!(
                    "images use the {} snapshotter; this Proxmox node keeps guests on ZFS (storage {id}: {ds})",
                    images.snapshotter.as_str()
                ),
                format!(
                    "to keep pods on ZFS too, set in [images]: snapshotter = \"zfs\" and zfs_dataset = \"{ds}/pvecri\""
                ),
            ),
            (_, true) => Check::ok("zfs", "/dev/zfs present (the zfs snapshotter is not configured)"),
            (_, false) => Check::ok("zfs", "not in use (/dev/zfs missing)"),
        };
    };
    if !crate::zfs::built_in() {
        return Check::bad(
            "zfs",
            Level::Fail,
            "the zfs snapshotter is configured, but this pvecri was built without ZFS",
            "install a pvecri built with the `zfs` feature (the default)",
        );
    }
    let Some(zfs) = zfs.filter(|_| dev) else {
        return Check::bad(
            "zfs",
            Level::Fail,
            "the zfs snapshotter is configured, but /dev/zfs cannot be opened",
            "install zfsutils-linux (and zfs-dkms or Proxmox's kernel) and load the zfs module",
        );
    };
    if !zfs.exists(dataset) {
        let parent = dataset.rsplit_once('/').map_or(dataset, |(p, _)| p);
        return if zfs.exists(parent) {
            Check::ok(
                "zfs",
                format!("{dataset} will be created in {parent} at the daemon's start"),
            )
        } else {
            Check::bad(
                "zfs",
                Level::Fail,
                format!("neither {dataset} nor its parent {parent} exists"),
                format!("create it (`zfs create -o mountpoint=none {dataset}`) or set zfs_dataset to a dataset of an existing pool"),
            )
        };
    }
    for ds in [format!("{dataset}/layers"), format!("{dataset}/containers")] {
        match zfs.mountpoint(&ds) {
            Ok(mp) if mp != "legacy" => {
                return Check::bad(
                    "zfs",
                    Level::Fail,
                    format!(
                        "{ds} has mountpoint={mp}: the ZFS services would mount pvecri's datasets"
                    ),
                    format!("zfs set mountpoint=legacy {ds}"),
                )
            }
            _ => {}
        }
    }
    match zfs.space(dataset) {
        Ok(space) if space.available < ZFS_LOW_SPACE => Check::bad(
            "zfs",
            Level::Warn,
            format!("{dataset}: only {} MiB free", space.available >> 20),
            "free space in the pool or raise the dataset's quota",
        ),
        Ok(space) => Check::ok(
            "zfs",
            format!(
                "{dataset}: {} MiB used, {} MiB free",
                space.used >> 20,
                space.available >> 20
            ),
        ),
        Err(e) => Check::bad(
            "zfs",
            Level::Fail,
            format!("cannot read {dataset}: {}", crate::errors::chain(&e)),
            "check the pool with `zpool status`",
        ),
    }
}

fn init_check(config: &Config) -> Check {
    if config.init_path.is_file() {
        Check::ok("pvecri-init", config.init_path.display().to_string())
    } else {
        Check::bad(
            "pvecri-init",
            Level::Fail,
            format!("{} is missing (init_path)", config.init_path.display()),
            "install the pvecri package, or build it with scripts/build-init.sh and set init_path",
        )
    }
}

fn socket_check(config: &Config) -> Check {
    let path = &config.socket;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(_) => {
            return Check::bad(
                "socket",
                Level::Warn,
                format!("{} does not exist", path.display()),
                "start the daemon: `systemctl start pvecri` (or `pvecri daemon`)",
            )
        }
    };
    let mode = meta.mode() & 0o777;
    let expected = if config.socket_group.is_some() {
        0o660
    } else {
        0o600
    };
    if !meta.file_type().is_socket() {
        Check::bad(
            "socket",
            Level::Fail,
            format!("{} is not a socket", path.display()),
            "remove it and restart the daemon",
        )
    } else if meta.uid() != 0 || mode & !expected != 0 {
        Check::bad(
            "socket",
            Level::Fail,
            format!(
                "{} is owned by uid {} with mode {mode:o}; expected root and {expected:o}",
                path.display(),
                meta.uid()
            ),
            "restart the daemon, which recreates the socket with the right mode",
        )
    } else {
        Check::ok("socket", format!("{} mode {mode:o} uid 0", path.display()))
    }
}

fn proxmox_check(config: &Config) -> Check {
    let lxc_path = config.lxc_path();
    if lxc_path == std::path::Path::new("/var/lib/lxc") {
        return Check::bad(
            "proxmox",
            Level::Fail,
            "pvecri's lxc path is /var/lib/lxc, shared with Proxmox VE's own containers",
            "set state_dir so that pvecri keeps its containers apart",
        );
    }
    if kernel::is_proxmox() {
        Check::ok(
            "proxmox",
            format!(
                "Proxmox VE node; pvecri containers live apart in {}",
                lxc_path.display()
            ),
        )
    } else {
        Check::ok("proxmox", "not a Proxmox VE node (plain Debian)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ImagesConfig;
    use crate::snapshot::BackendKind;
    use crate::zfs::fake::FakeZfs;
    use crate::zfs::ZfsOps;

    fn zfs_images(ds: &str) -> ImagesConfig {
        ImagesConfig {
            snapshotter: BackendKind::Zfs,
            zfs_dataset: Some(ds.to_owned()),
            ..Default::default()
        }
    }

    #[test]
    fn a_proxmox_node_with_zfs_storage_gets_a_proposal() {
        let pools = [
            ("tank".to_owned(), "tank/ct".to_owned()),
            ("local-zfs".to_owned(), "rpool/data".to_owned()),
        ];
        let c = zfs_verdict(&ImagesConfig::default(), true, None, &pools);
        assert_eq!(c.level, Level::Warn);
        assert!(c.detail.contains("local-zfs: rpool/data"), "{}", c.detail);
        let fix = c.fix.unwrap();
        assert!(fix.contains("snapshotter = \"zfs\""), "{fix}");
        assert!(fix.contains("zfs_dataset = \"rpool/data/pvecri\""), "{fix}");
        // No ZFS storage, or no ZFS at all: nothing to propose.
        assert_eq!(
            zfs_verdict(&ImagesConfig::default(), true, None, &[]).level,
            Level::Ok
        );
        assert_eq!(
            zfs_verdict(&ImagesConfig::default(), false, None, &pools).level,
            Level::Ok
        );
    }

    #[test]
    fn the_configured_dataset_is_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let fake = FakeZfs::new(tmp.path(), "rpool");
        fake.create("rpool/data").unwrap();
        let images = zfs_images("rpool/data/pvecri");
        if !crate::zfs::built_in() {
            assert_eq!(
                zfs_verdict(&images, true, Some(&fake), &[]).level,
                Level::Fail
            );
            return;
        }
        // Missing /dev/zfs fails; a missing dataset with a parent will be made.
        assert_eq!(zfs_verdict(&images, false, None, &[]).level, Level::Fail);
        let c = zfs_verdict(&images, true, Some(&fake), &[]);
        assert_eq!(c.level, Level::Ok, "{}", c.detail);
        assert!(c.detail.contains("will be created"), "{}", c.detail);
        let c = zfs_verdict(&zfs_images("nopool/x/pvecri"), true, Some(&fake), &[]);
        assert_eq!(c.level, Level::Fail, "{}", c.detail);
        assert!(c.fix.unwrap().contains("zfs create"));
        // Existing: its space is reported.
        fake.create("rpool/data/pvecri").unwrap();
        let c = zfs_verdict(&images, true, Some(&fake), &[]);
        assert_eq!(
            c.level,
            Level::Warn,
            "the fake pool has 1 GiB free: {}",
            c.detail
        );
        assert!(c.detail.contains("MiB free"), "{}", c.detail);
    }
}
