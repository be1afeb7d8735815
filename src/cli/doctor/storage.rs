//! Disk space as the kubelet judges it, and the ZFS snapshotter.
//!
//! The kubelet evicts pods when a filesystem runs low; its defaults are
//! `nodefs.available<10%`, `nodefs.inodesFree<5%` and
//! `imagefs.available<15%`. pvecri's state dir holds the containers'
//! writable layers (the node filesystem the runtime fills) and its image
//! store the blobs and unpacked layers, so both are held to those
//! thresholds: a line fails under one and warns within half of it again
//! (under 15% for a 10% threshold), while there is time to act.

use std::path::{Path, PathBuf};

use super::{Check, Level};
use crate::config::Config;
use crate::node::kernel;

pub(super) fn checks(config: &Config) -> Vec<Check> {
    let image_store = config.state_dir.join("content");
    vec![
        filesystem(
            "nodefs",
            &config.state_dir,
            &[Threshold::NODEFS_AVAILABLE, Threshold::NODEFS_INODES_FREE],
        ),
        filesystem("imagefs", &image_store, &[Threshold::IMAGEFS_AVAILABLE]),
        zfs(config),
    ]
}

/// A kubelet eviction threshold: the signal and the percentage of the
/// filesystem that must stay free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Threshold {
    signal: &'static str,
    percent: u64,
    inodes: bool,
}

impl Threshold {
    const NODEFS_AVAILABLE: Threshold = Threshold {
        signal: "nodefs.available",
        percent: 10,
        inodes: false,
    };
    const NODEFS_INODES_FREE: Threshold = Threshold {
        signal: "nodefs.inodesFree",
        percent: 5,
        inodes: true,
    };
    const IMAGEFS_AVAILABLE: Threshold = Threshold {
        signal: "imagefs.available",
        percent: 15,
        inodes: false,
    };

    /// Fail under the threshold, warn under one and a half times it.
    /// A filesystem that reports no total (inodes on btrfs) passes.
    fn level(self, free: u64, total: u64) -> Level {
        let (free, total) = (u128::from(free), u128::from(total));
        let pct = u128::from(self.percent);
        if total == 0 {
            Level::Ok
        } else if free * 100 < total * pct {
            Level::Fail
        } else if free * 200 < total * pct * 3 {
            Level::Warn
        } else {
            Level::Ok
        }
    }
}

/// Free and total space and inodes of a filesystem (statvfs: space
/// available to unprivileged users, as the kubelet counts it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FsStats {
    bytes_free: u64,
    bytes_total: u64,
    inodes_free: u64,
    inodes_total: u64,
}

impl FsStats {
    fn of(path: &Path) -> nix::Result<Self> {
        let st = nix::sys::statvfs::statvfs(path)?;
        let frsize = st.fragment_size() as u64;
        Ok(Self {
            bytes_free: st.blocks_available() as u64 * frsize,
            bytes_total: st.blocks() as u64 * frsize,
            inodes_free: st.files_available() as u64,
            inodes_total: st.files() as u64,
        })
    }
}

/// `path`, or its nearest ancestor that exists (the daemon creates its
/// directories at its first start; the filesystem is what counts).
fn existing(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_owned()
}

fn filesystem(name: &'static str, path: &Path, thresholds: &[Threshold]) -> Check {
    let at = existing(path);
    match FsStats::of(&at) {
        Ok(stats) => space_verdict(name, path, &stats, thresholds),
        Err(errno) => Check::fail(
            name,
            format!("cannot statvfs {}: {errno}", at.display()),
            "check that the state dir's filesystem is mounted",
        ),
    }
}

fn percent(free: u64, total: u64) -> f64 {
    if total == 0 {
        100.0
    } else {
        free as f64 * 100.0 / total as f64
    }
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// The line for one filesystem: its free space (and inodes) against the
/// kubelet's `thresholds`; the worst of them decides.
fn space_verdict(
    name: &'static str,
    path: &Path,
    stats: &FsStats,
    thresholds: &[Threshold],
) -> Check {
    let mut detail = format!(
        "{}: {} of {} free ({:.0}%), {:.0}% of inodes free",
        path.display(),
        gib(stats.bytes_free),
        gib(stats.bytes_total),
        percent(stats.bytes_free, stats.bytes_total),
        percent(stats.inodes_free, stats.inodes_total),
    );
    let mut worst = Level::Ok;
    let mut low = Vec::new();
    for t in thresholds {
        let (free, total) = if t.inodes {
            (stats.inodes_free, stats.inodes_total)
        } else {
            (stats.bytes_free, stats.bytes_total)
        };
        let level = t.level(free, total);
        if level > Level::Ok {
            low.push(format!("{}<{}%", t.signal, t.percent));
        }
        worst = worst.max(level);
    }
    match worst {
        Level::Ok => Check::ok(name, detail),
        level => {
            let verb = if level == Level::Fail {
                "the kubelet evicts pods at"
            } else {
                "close to the kubelet's eviction threshold"
            };
            detail.push_str(&format!("; {verb} {}", low.join(", ")));
            Check::bad(
                name,
                level,
                detail,
                "free space on that filesystem (`crictl rmi --prune` removes unused images, \
                 `crictl rm` exited containers) or grow it",
            )
        }
    }
}

fn zfs(config: &Config) -> Check {
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
            (Some((id, ds)), true) => Check::warn(
                "zfs",
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
        return Check::fail(
            "zfs",
            "the zfs snapshotter is configured, but this pvecri was built without ZFS",
            "install a pvecri built with the `zfs` feature (the default)",
        );
    }
    let Some(zfs) = zfs.filter(|_| dev) else {
        return Check::fail(
            "zfs",
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
            Check::fail(
                "zfs",
                format!("neither {dataset} nor its parent {parent} exists"),
                format!("create it (`zfs create -o mountpoint=none {dataset}`) or set zfs_dataset to a dataset of an existing pool"),
            )
        };
    }
    for ds in [format!("{dataset}/layers"), format!("{dataset}/containers")] {
        match zfs.mountpoint(&ds) {
            Ok(mp) if mp != "legacy" => {
                return Check::fail(
                    "zfs",
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
        Ok(space) if space.available < ZFS_LOW_SPACE => Check::warn(
            "zfs",
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
        Err(e) => Check::fail(
            "zfs",
            format!("cannot read {dataset}: {}", crate::errors::chain(&e)),
            "check the pool with `zpool status`",
        ),
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

    #[test]
    fn thresholds_fail_under_and_warn_near_the_kubelet_defaults() {
        let t = Threshold::NODEFS_AVAILABLE;
        assert_eq!(t.level(50, 100), Level::Ok);
        assert_eq!(t.level(15, 100), Level::Ok);
        assert_eq!(t.level(14, 100), Level::Warn);
        assert_eq!(t.level(10, 100), Level::Warn);
        assert_eq!(t.level(9, 100), Level::Fail);
        assert_eq!(t.level(0, 100), Level::Fail);
        // imagefs is stricter: 15%, warning under 22.5%.
        let t = Threshold::IMAGEFS_AVAILABLE;
        assert_eq!(t.level(23, 100), Level::Ok);
        assert_eq!(t.level(22, 100), Level::Warn);
        assert_eq!(t.level(14, 100), Level::Fail);
        // No inode count (btrfs): nothing to judge.
        assert_eq!(Threshold::NODEFS_INODES_FREE.level(0, 0), Level::Ok);
        // Large filesystems do not overflow.
        assert_eq!(t.level(u64::MAX / 2, u64::MAX), Level::Ok);
    }

    #[test]
    fn a_filesystem_line_names_the_signal_it_is_low_on() {
        let nodefs = [Threshold::NODEFS_AVAILABLE, Threshold::NODEFS_INODES_FREE];
        let path = Path::new("/var/lib/pvecri");
        let roomy = FsStats {
            bytes_free: 60 << 30,
            bytes_total: 100 << 30,
            inodes_free: 900,
            inodes_total: 1000,
        };
        let c = space_verdict("nodefs", path, &roomy, &nodefs);
        assert_eq!(c.level, Level::Ok);
        assert_eq!(
            c.detail,
            "/var/lib/pvecri: 60.0 GiB of 100.0 GiB free (60%), 90% of inodes free"
        );
        // Plenty of space, but out of inodes.
        let c = space_verdict(
            "nodefs",
            path,
            &FsStats {
                inodes_free: 40,
                ..roomy
            },
            &nodefs,
        );
        assert_eq!(c.level, Level::Fail);
        assert!(
            c.detail.ends_with("evicts pods at nodefs.inodesFree<5%"),
            "{}",
            c.detail
        );
        assert!(c.fix.unwrap().contains("crictl rmi --prune"));
        let c = space_verdict(
            "imagefs",
            path,
            &FsStats {
                bytes_free: 20 << 30,
                ..roomy
            },
            &[Threshold::IMAGEFS_AVAILABLE],
        );
        assert_eq!(c.level, Level::Warn);
        assert!(c.detail.contains("imagefs.available<15%"), "{}", c.detail);
    }
}
