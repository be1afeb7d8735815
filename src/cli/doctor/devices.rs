//! The host's `/dev` as containers depend on it. liblxc's autodev `/dev`
//! of a user-namespace pod cannot `mknod`, so it bind-mounts the host's
//! pseudo devices: a `/dev/null` that became a regular file, or lost its
//! mode, breaks every such container. Also the host's devpts (through
//! which `/dev/ptmx` may lead) and the `/dev/shm` tmpfs.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::Check;
use crate::node::mountinfo::{self, Mount};

/// A pseudo device pvecri's containers get: its name under `/dev` and the
/// numbers every Linux kernel gives it (Documentation/admin-guide/devices.txt).
struct PseudoDevice {
    name: &'static str,
    major: u32,
    minor: u32,
}

const fn dev(name: &'static str, major: u32, minor: u32) -> PseudoDevice {
    PseudoDevice { name, major, minor }
}

const PSEUDO_DEVICES: [PseudoDevice; 7] = [
    dev("null", 1, 3),
    dev("zero", 1, 5),
    dev("full", 1, 7),
    dev("random", 1, 8),
    dev("urandom", 1, 9),
    dev("tty", 5, 0),
    dev("ptmx", 5, 2),
];

/// The mode they all have: anyone reads and writes them.
const MODE: u32 = 0o666;

/// What is at `/dev/<name>`: where it links to, if a symlink (`/dev/ptmx`
/// may be one, to `pts/ptmx`), and what it resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    symlink_to: Option<PathBuf>,
    node: Option<Node>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Node {
    char_device: bool,
    major: u32,
    minor: u32,
    mode: u32,
}

pub(super) fn checks() -> Vec<Check> {
    let observed: Vec<Observed> = PSEUDO_DEVICES
        .iter()
        .map(|d| observe(&Path::new("/dev").join(d.name)))
        .collect();
    let mounts = mountinfo::read_self().unwrap_or_default();
    let ptmx_link = observed.last().and_then(|o| o.symlink_to.clone()).is_some();
    vec![
        pseudo_devices(&observed),
        devpts(&mounts, ptmx_link),
        shm(&mounts, observe_mode(Path::new("/dev/shm"))),
    ]
}

fn observe(path: &Path) -> Observed {
    let symlink_to = std::fs::read_link(path).ok();
    let node = std::fs::metadata(path).ok().map(|m| Node {
        char_device: m.file_type().is_char_device(),
        major: nix::sys::stat::major(m.rdev()) as u32,
        minor: nix::sys::stat::minor(m.rdev()) as u32,
        mode: m.mode() & 0o7777,
    });
    Observed { symlink_to, node }
}

fn observe_mode(path: &Path) -> Option<u32> {
    std::fs::metadata(path).ok().map(|m| m.mode() & 0o7777)
}

/// The problem with one device, and its fix; `None` when it is sound.
fn device_problem(d: &PseudoDevice, o: &Observed) -> Option<(String, String)> {
    let path = format!("/dev/{}", d.name);
    let (major, minor) = (d.major, d.minor);
    let remake = format!("rm -f {path} && mknod -m 666 {path} c {major} {minor}");
    let Some(node) = o.node else {
        return Some((format!("{path} is missing"), remake));
    };
    if !node.char_device {
        return Some((format!("{path} is not a character device"), remake));
    }
    if (node.major, node.minor) != (major, minor) {
        return Some((
            format!(
                "{path} is c {}:{}, not c {major}:{minor}",
                node.major, node.minor
            ),
            remake,
        ));
    }
    if node.mode & MODE != MODE {
        let fix = if o.symlink_to.is_some() && d.name == "ptmx" {
            "mount -o remount,ptmxmode=666 /dev/pts".to_owned()
        } else {
            format!("chmod 666 {path}")
        };
        return Some((
            format!("{path} has mode {:o}, not {MODE:o}", node.mode),
            fix,
        ));
    }
    None
}

/// One line for all pseudo devices (`observed` in the order of
/// [`PSEUDO_DEVICES`]): each is needed, so any problem fails.
fn pseudo_devices(observed: &[Observed]) -> Check {
    let (problems, fixes): (Vec<String>, Vec<String>) = PSEUDO_DEVICES
        .iter()
        .zip(observed)
        .filter_map(|(d, o)| device_problem(d, o))
        .unzip();
    if problems.is_empty() {
        let names: Vec<&str> = PSEUDO_DEVICES.iter().map(|d| d.name).collect();
        Check::ok(
            "devices",
            format!(
                "/dev/{{{}}}: character devices with the standard numbers, mode {MODE:o}",
                names.join(",")
            ),
        )
    } else {
        Check::fail(
            "devices",
            format!(
                "{}: user-namespace pods bind-mount these from the host",
                problems.join("; ")
            ),
            fixes.join("; "),
        )
    }
}

/// The mount on top at `target` (the last in mountinfo order).
fn top_mount<'a>(mounts: &'a [Mount], target: &str) -> Option<&'a Mount> {
    mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == Path::new(target))
}

/// The host's devpts at `/dev/pts`. Containers get their own instance, so
/// pvecri needs it only where `/dev/ptmx` leads into it (`ptmx_link`): then
/// its `ptmxmode` must let everyone open it.
fn devpts(mounts: &[Mount], ptmx_link: bool) -> Check {
    let Some(m) = top_mount(mounts, "/dev/pts").filter(|m| m.fs_type == "devpts") else {
        return Check::warn(
            "devpts",
            "no devpts mounted at /dev/pts: host terminals (ssh, pct enter) do not work",
            "mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts",
        );
    };
    let ptmxmode = m
        .super_options
        .iter()
        .find_map(|o| o.strip_prefix("ptmxmode="))
        .unwrap_or("000");
    let usable = u32::from_str_radix(ptmxmode, 8).is_ok_and(|mode| mode & MODE == MODE);
    match (ptmx_link, usable) {
        (true, false) => Check::fail(
            "devpts",
            format!("/dev/ptmx leads to /dev/pts/ptmx, whose ptmxmode={ptmxmode} lets only root open it"),
            "mount -o remount,ptmxmode=666 /dev/pts (and ptmxmode=666 in /etc/fstab)",
        ),
        (true, true) => Check::ok(
            "devpts",
            format!("/dev/pts mounted, ptmxmode={ptmxmode} (/dev/ptmx links to it)"),
        ),
        (false, _) => Check::ok(
            "devpts",
            format!("/dev/pts mounted, ptmxmode={ptmxmode} (/dev/ptmx is its own node)"),
        ),
    }
}

/// `/dev/shm`: a tmpfs everyone can write to, with the sticky bit.
fn shm(mounts: &[Mount], mode: Option<u32>) -> Check {
    let fix = "mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm";
    match top_mount(mounts, "/dev/shm") {
        None => Check::warn("/dev/shm", "not a mount point", fix),
        Some(m) if m.fs_type != "tmpfs" => Check::warn(
            "/dev/shm",
            format!("is a {} mount, not tmpfs", m.fs_type),
            fix,
        ),
        Some(_) => match mode {
            Some(0o1777) => Check::ok("/dev/shm", "tmpfs, mode 1777"),
            other => Check::warn(
                "/dev/shm",
                format!(
                    "tmpfs with mode {}",
                    other.map_or("unknown".to_owned(), |m| format!("{m:o}"))
                ),
                "chmod 1777 /dev/shm",
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::Level;
    use super::*;

    fn char_dev(major: u32, minor: u32, mode: u32) -> Observed {
        Observed {
            symlink_to: None,
            node: Some(Node {
                char_device: true,
                major,
                minor,
                mode,
            }),
        }
    }

    fn sound() -> Vec<Observed> {
        PSEUDO_DEVICES
            .iter()
            .map(|d| char_dev(d.major, d.minor, 0o666))
            .collect()
    }

    #[test]
    fn pseudo_devices_need_their_numbers_type_and_mode() {
        assert_eq!(pseudo_devices(&sound()).level, Level::Ok);

        let mut bad = sound();
        // /dev/null replaced by a file (`cmd > /dev/null` after an rm).
        bad[0] = Observed {
            symlink_to: None,
            node: Some(Node {
                char_device: false,
                major: 0,
                minor: 0,
                mode: 0o644,
            }),
        };
        bad[1] = char_dev(1, 3, 0o666); // zero with null's numbers
        bad[4] = char_dev(1, 9, 0o600); // urandom only for root
        bad[5] = Observed {
            symlink_to: None,
            node: None,
        };
        let c = pseudo_devices(&bad);
        assert_eq!(c.level, Level::Fail);
        for want in [
            "/dev/null is not a character device",
            "/dev/zero is c 1:3, not c 1:5",
            "/dev/urandom has mode 600",
            "/dev/tty is missing",
        ] {
            assert!(c.detail.contains(want), "{want}: {}", c.detail);
        }
        let fix = c.fix.unwrap();
        assert!(fix.contains("mknod -m 666 /dev/null c 1 3"), "{fix}");
        assert!(fix.contains("chmod 666 /dev/urandom"), "{fix}");
        assert!(fix.contains("mknod -m 666 /dev/tty c 5 0"), "{fix}");
    }

    #[test]
    fn a_ptmx_link_into_devpts_needs_a_usable_ptmxmode() {
        let mut devs = sound();
        devs[6] = Observed {
            symlink_to: Some("pts/ptmx".into()),
            node: Some(Node {
                char_device: true,
                major: 5,
                minor: 2,
                mode: 0,
            }),
        };
        let c = pseudo_devices(&devs);
        assert_eq!(c.level, Level::Fail);
        assert!(c.fix.unwrap().contains("ptmxmode=666"));

        let mounts = |opts: &str| {
            mountinfo::parse(&format!(
                "26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,{opts}\n"
            ))
        };
        // This host's layout: /dev/ptmx its own node, ptmxmode=000.
        assert_eq!(
            devpts(&mounts("mode=600,ptmxmode=000"), false).level,
            Level::Ok
        );
        assert_eq!(
            devpts(&mounts("mode=600,ptmxmode=000"), true).level,
            Level::Fail
        );
        assert_eq!(
            devpts(&mounts("gid=5,mode=620,ptmxmode=666"), true).level,
            Level::Ok
        );
        assert_eq!(devpts(&[], false).level, Level::Warn);
    }

    #[test]
    fn dev_shm_is_a_world_writable_tmpfs() {
        let tmpfs = mountinfo::parse(
            "25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw\n\
             30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=1k\n",
        );
        assert_eq!(shm(&tmpfs, Some(0o1777)).level, Level::Ok);
        assert_eq!(shm(&tmpfs, Some(0o755)).level, Level::Warn);
        let dir = mountinfo::parse("25 24 0:23 / /dev rw - devtmpfs udev rw\n");
        assert_eq!(shm(&dir, Some(0o1777)).level, Level::Warn);
        // The mount on top decides.
        let covered = mountinfo::parse(
            "25 24 0:23 / /dev/shm rw - tmpfs tmpfs rw\n\
             31 25 0:5 / /dev/shm rw - ext4 /dev/vda rw\n",
        );
        let c = shm(&covered, Some(0o1777));
        assert_eq!(c.level, Level::Warn);
        assert!(c.detail.contains("ext4"), "{}", c.detail);
    }
}
