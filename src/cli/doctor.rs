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
        zfs_check(),
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

fn zfs_check() -> Check {
    if kernel::zfs_available() {
        Check::ok("zfs", "/dev/zfs present")
    } else {
        Check::bad(
            "zfs",
            Level::Warn,
            "not available (/dev/zfs missing)",
            "only needed for the zfs snapshot backend; install zfsutils-linux (Proxmox VE ships it)",
        )
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
