//! The host's kernel and libraries: liblxc and the config keys pvecri
//! writes, namespaces, cgroups, overlayfs, seccomp, AppArmor, and the
//! pvecri-init binary every container starts from.

use std::path::Path;

use super::{which, Check};
use crate::cgroups;
use crate::config::Config;
use crate::lxc;
use crate::node::kernel;
use crate::security::apparmor;

pub(super) fn checks(config: &Config, daemon_up: bool) -> Vec<Check> {
    let mut out = vec![
        liblxc(),
        lxc_features(),
        namespaces(),
        cgroup_layout(),
        cgroup_migrations(config),
        overlay(),
        seccomp(),
    ];
    let enabled = apparmor::enabled();
    let parser = if enabled {
        which("apparmor_parser")
    } else {
        None
    };
    let loaded = if enabled {
        apparmor::is_loaded(apparmor::DEFAULT_PROFILE)
    } else {
        None
    };
    out.extend(apparmor_checks(
        enabled,
        parser.as_deref(),
        loaded,
        daemon_up,
    ));
    out.push(init(config));
    out
}

fn liblxc() -> Check {
    let v = lxc::version();
    match lxc::parse_version(&v) {
        Some((major, _)) if major >= 5 => Check::ok("liblxc", format!("version {v}")),
        _ => Check::fail(
            "liblxc",
            format!("version {v} is older than 5.0"),
            "install liblxc1 >= 5.0 (Debian 12) or lxc-pve >= 5 (Proxmox VE)",
        ),
    }
}

fn lxc_features() -> Check {
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
        Check::fail(
            "lxc features",
            format!("liblxc lacks {}", missing.join(", ")),
            "upgrade liblxc to 5.0 or newer",
        )
    }
}

fn namespaces() -> Check {
    let missing = kernel::missing_namespaces();
    if missing.is_empty() {
        Check::ok("namespaces", kernel::NAMESPACES.join(", "))
    } else {
        Check::fail(
            "namespaces",
            format!("kernel lacks {}", missing.join(", ")),
            "boot a kernel built with these namespaces",
        )
    }
}

fn cgroup_layout() -> Check {
    match cgroups::detect() {
        Ok(cgroups::CgroupLayout::None) => Check::fail(
            "cgroups",
            "no cgroup filesystem is mounted",
            "mount cgroup2 at /sys/fs/cgroup",
        ),
        Ok(layout @ cgroups::CgroupLayout::Unified) => Check::ok("cgroups", layout.to_string()),
        Ok(layout) => Check::warn(
            "cgroups",
            layout.to_string(),
            "works; Proxmox VE 7+ and current kubelets prefer the unified hierarchy \
             (systemd.unified_cgroup_hierarchy=1)",
        ),
        Err(err) => Check::fail(
            "cgroups",
            format!("cannot read /proc/self/mountinfo: {err}"),
            "run on a Linux host with /proc mounted",
        ),
    }
}

/// Whether a container start waits for the kernel's grace period when
/// liblxc moves its monitor into a cgroup (`crate::cgroups::warm`).
fn cgroup_migrations(config: &Config) -> Check {
    const NAME: &str = "cgroup migrations";
    // Before 6.0 the kernel kept the lock's readers on the slow path
    // always: no move waited, and there was no option to set.
    if kernel::version().is_some_and(|v| v < (6, 0)) {
        return Check::ok(
            NAME,
            "kernel before 6.0: moves into a cgroup wait for no RCU grace period",
        );
    }
    let mounts = match cgroups::read_mounts() {
        Ok(mounts) => mounts,
        Err(e) => {
            return Check::warn(
                NAME,
                format!("cannot read the cgroup mounts: {e}"),
                "check /proc/self/mountinfo",
            )
        }
    };
    if cgroups::warm::favors_dynmods(&mounts) {
        return Check::ok(
            NAME,
            "favordynmods: moves into a cgroup wait for no RCU grace period",
        );
    }
    let early = if config.warm_migrations {
        "pvecri starts that wait early (warm_migrations)"
    } else {
        "warm_migrations is off"
    };
    let fix = match mounts.iter().find(|m| m.v2) {
        Some(v2) => format!(
            "mount -o remount,favordynmods {} (or boot with cgroup_favordynmods=true, Linux 6.7+); \
             docs/proxmox.md",
            v2.mount_point.display()
        ),
        // v1 hierarchies cannot change it by remount.
        None => "boot with cgroup_favordynmods=true (Linux 6.7+); docs/proxmox.md".to_owned(),
    };
    Check::warn(
        NAME,
        format!(
            "favordynmods is off: each container start waits for one RCU grace period \
             (several ms) when liblxc moves its monitor; {early}"
        ),
        fix,
    )
}

fn overlay() -> Check {
    if kernel::has_filesystem("overlay") {
        Check::ok("overlayfs", "available")
    } else {
        Check::warn(
            "overlayfs",
            "not in /proc/filesystems",
            "load the module (`modprobe overlay`); until then images unpack with the slower directory-copy backend",
        )
    }
}

fn seccomp() -> Check {
    if kernel::has_seccomp() {
        Check::ok("seccomp", "available")
    } else {
        Check::fail(
            "seccomp",
            "kernel built without seccomp",
            "boot a kernel with CONFIG_SECCOMP_FILTER",
        )
    }
}

/// AppArmor: whether the kernel enforces it and, when it does, whether the
/// daemon can load its RuntimeDefault profile (`apparmor_parser`) and has
/// (`loaded`: `None` when the kernel's profile list cannot be read).
/// Without the profile every non-privileged container that asks for no
/// profile is refused, so a running daemon without it fails the check; a
/// daemon not started yet loads it when it starts.
fn apparmor_checks(
    enabled: bool,
    parser: Option<&Path>,
    loaded: Option<bool>,
    daemon_up: bool,
) -> Vec<Check> {
    if !enabled {
        return vec![Check::warn(
            "apparmor",
            "not enabled in the kernel: containers run without an AppArmor profile",
            "pods asking for an AppArmor profile other than unconfined will be refused; \
             boot with apparmor=1 security=apparmor to enable it",
        )];
    }
    let mut out = vec![Check::ok("apparmor", "enabled")];
    out.push(match parser {
        Some(p) => Check::ok("apparmor_parser", p.display().to_string()),
        None => Check::fail(
            "apparmor_parser",
            format!(
                "AppArmor is enabled but apparmor_parser is not on PATH: the daemon cannot load {}",
                apparmor::DEFAULT_PROFILE
            ),
            "install the apparmor package (`apt install apparmor`) and restart pvecri",
        ),
    });
    let profile = apparmor::DEFAULT_PROFILE;
    out.push(match (loaded, daemon_up) {
        (Some(true), _) => Check::ok("apparmor profile", format!("{profile} is loaded")),
        (Some(false), true) => Check::fail(
            "apparmor profile",
            format!("{profile} is not loaded: containers that ask for no profile cannot start"),
            "restart the daemon, which loads it (`systemctl restart pvecri`); its log says why it could not",
        ),
        (Some(false), false) => Check::warn(
            "apparmor profile",
            format!("{profile} is not loaded yet"),
            "start the daemon, which loads it (`systemctl start pvecri`)",
        ),
        (None, _) => Check::warn(
            "apparmor profile",
            "cannot read /sys/kernel/security/apparmor/profiles",
            "mount securityfs (`mount -t securityfs securityfs /sys/kernel/security`)",
        ),
    });
    out
}

fn init(config: &Config) -> Check {
    if config.init_path.is_file() {
        Check::ok("pvecri-init", config.init_path.display().to_string())
    } else {
        Check::fail(
            "pvecri-init",
            format!("{} is missing (init_path)", config.init_path.display()),
            "install the pvecri package, or build it with scripts/build-init.sh and set init_path",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::Level;
    use super::*;

    fn levels(checks: &[Check]) -> Vec<(&str, Level)> {
        checks.iter().map(|c| (c.name, c.level)).collect()
    }

    #[test]
    fn apparmor_needs_its_parser_and_the_default_profile() {
        // Off: one warning, nothing else to ask.
        let off = apparmor_checks(false, None, None, true);
        assert_eq!(levels(&off), [("apparmor", Level::Warn)]);

        let parser = Path::new("/usr/sbin/apparmor_parser");
        let good = apparmor_checks(true, Some(parser), Some(true), true);
        assert!(good.iter().all(|c| c.level == Level::Ok), "{good:?}");

        let no_parser = apparmor_checks(true, None, Some(false), false);
        assert_eq!(no_parser[1].level, Level::Fail);
        assert!(no_parser[1]
            .fix
            .as_deref()
            .unwrap()
            .contains("apparmor package"));
        // Not loaded: the daemon loads it when it starts...
        assert_eq!(no_parser[2].level, Level::Warn);
        // ...but a running daemon without it refuses containers.
        let running = apparmor_checks(true, Some(parser), Some(false), true);
        assert_eq!(running[2].level, Level::Fail);
        assert!(running[2].detail.contains("pvecri-default"));
        // securityfs missing: cannot tell.
        assert_eq!(
            apparmor_checks(true, Some(parser), None, true)[2].level,
            Level::Warn
        );
    }
}
