//! The LXC config pvecri writes for one CRI container: complete, with no
//! `lxc.include` (on Proxmox VE the common includes pull in PVE's hooks).
//! Pure text generation from a [`LxcPlan`], so every line is unit-tested.

use std::fmt::Write;
use std::path::PathBuf;

/// Which of the pod's namespaces a container joins, by nsfs path; `None`
/// means the host's (hostNetwork/hostIPC pods).
#[derive(Debug, Clone, Default)]
pub struct SharedNamespaces {
    pub net: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    /// Run in the host's PID namespace (hostPID).
    pub host_pid: bool,
    /// Join this PID namespace (the pod's shared one, or a target
    /// container's) instead of getting a new one.
    pub pid: Option<PathBuf>,
    /// The pod's user namespace (`hostUsers: false`) and its maps.
    pub user: Option<UserNs>,
}

/// A pinned user namespace to join, with the maps it was made with:
/// liblxc needs them to become the namespace's root and to set the
/// container up as an unprivileged one (it does not write them again for
/// a shared namespace).
#[derive(Debug, Clone)]
pub struct UserNs {
    pub path: PathBuf,
    pub uids: crate::sandbox::userns::IdMapping,
    pub gids: crate::sandbox::userns::IdMapping,
}

/// A bind mount into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: String,
    pub readonly: bool,
    pub propagation: Propagation,
    /// Create a file (not a directory) at the target when missing.
    pub file: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    #[default]
    Private,
    Slave,
    Shared,
}

/// Everything the config needs.
#[derive(Debug, Clone)]
pub struct LxcPlan {
    pub hostname: String,
    pub rootfs: PathBuf,
    pub init_binary: PathBuf,
    pub run_dir: PathBuf,
    pub namespaces: SharedNamespaces,
    pub mounts: Vec<BindMount>,
    /// cgroup paths relative to the cgroup root.
    pub cgroup_container: String,
    pub cgroup_monitor: String,
    /// `lxc.cgroup.*` / `lxc.cgroup2.*` lines (key without the prefix, value).
    pub cgroup_settings: Vec<(String, String)>,
    pub oom_score_adj: Option<i64>,
    pub log_file: PathBuf,
    pub privileged: bool,
    /// SELinux process label (`lxc.selinux.context`); only set where the
    /// node enforces SELinux.
    pub selinux_label: Option<String>,
}

/// Renders the config file text.
pub fn render(plan: &LxcPlan) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{k} = {v}");
    };
    // No lxc.uts.name: the UTS namespace is the pod's (hostname already
    // set when it was pinned) or the host's, which must never be renamed.
    line("lxc.rootfs.path", &format!("dir:{}", plan.rootfs.display()));
    line("lxc.rootfs.managed", &0);
    // pvecri-init holds the container until StartContainer, then execs the workload.
    line("lxc.init.cmd", &"/.pvecri-init");
    line("lxc.init.cwd", &"/");
    // Init inherits the monitor's stdout/stderr pipes: no console, no ttys.
    line("lxc.console.path", &"none");
    line("lxc.tty.max", &0);
    line("lxc.pty.max", &1024);
    line("lxc.autodev", &1);
    line(
        "lxc.mount.auto",
        &if plan.privileged {
            "proc:rw sys:rw cgroup:rw"
        } else {
            "proc:mixed sys:ro cgroup:ro"
        },
    );
    line("lxc.apparmor.profile", &"unconfined");
    if let Some(label) = &plan.selinux_label {
        line("lxc.selinux.context", label);
    }
    line("lxc.log.file", &plan.log_file.display());
    line("lxc.log.level", &"WARN");
    let mut keep = Vec::new();
    for (kind, path) in [
        ("net", &plan.namespaces.net),
        ("ipc", &plan.namespaces.ipc),
        ("uts", &plan.namespaces.uts),
    ] {
        match path {
            Some(p) => line(&format!("lxc.namespace.share.{kind}"), &p.display()),
            None => keep.push(kind),
        }
    }
    if let Some(user) = &plan.namespaces.user {
        line("lxc.namespace.share.user", &user.path.display());
        for (kind, m) in [("u", user.uids), ("g", user.gids)] {
            line(
                "lxc.idmap",
                &format!("{kind} {} {} {}", m.container_id, m.host_id, m.length),
            );
        }
    }
    if plan.namespaces.host_pid {
        keep.push("pid");
    } else if let Some(p) = &plan.namespaces.pid {
        line("lxc.namespace.share.pid", &p.display());
    }
    if !keep.is_empty() {
        // The host's namespace: do not create a new one. With
        // `lxc.namespace.keep` set, liblxc clones every namespace not in the
        // list, the user namespace included; an unmapped user namespace
        // makes every file creation fail (EOVERFLOW in mount_autodev), so
        // the host's user namespace is kept too.
        keep.push("user");
        line("lxc.namespace.keep", &keep.join(" "));
    }
    line("lxc.cgroup.dir.container", &plan.cgroup_container);
    line("lxc.cgroup.dir.monitor", &plan.cgroup_monitor);
    for (key, value) in &plan.cgroup_settings {
        line(key, value);
    }
    if let Some(adj) = plan.oom_score_adj {
        line("lxc.proc.oom_score_adj", &adj);
    }
    line(
        "lxc.mount.entry",
        &format!(
            "{} .pvecri-init none bind,ro,create=file 0 0",
            plan.init_binary.display()
        ),
    );
    line(
        "lxc.mount.entry",
        &format!(
            "{} .pvecri none bind,create=dir 0 0",
            plan.run_dir.display()
        ),
    );
    for m in &plan.mounts {
        line("lxc.mount.entry", &mount_entry(m));
    }
    out
}

/// One `lxc.mount.entry` value (fstab syntax; the target is relative to the
/// rootfs, spaces escaped as `\040`).
fn mount_entry(m: &BindMount) -> String {
    let mut opts = vec!["rbind"];
    opts.push(if m.file { "create=file" } else { "create=dir" });
    if m.readonly {
        opts.push("ro");
    }
    opts.push(match m.propagation {
        Propagation::Private => "rprivate",
        Propagation::Slave => "rslave",
        Propagation::Shared => "rshared",
    });
    format!(
        "{} {} none {} 0 0",
        escape(&m.source.display().to_string()),
        escape(m.target.trim_start_matches('/')),
        opts.join(",")
    )
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> LxcPlan {
        LxcPlan {
            hostname: "pod-a".into(),
            rootfs: "/var/lib/pvecri/snapshots/overlay/containers/c1/rootfs".into(),
            init_binary: "/usr/lib/pvecri/pvecri-init".into(),
            run_dir: "/run/pvecri/containers/c1".into(),
            namespaces: SharedNamespaces {
                net: Some("/run/pvecri/ns/p1/net".into()),
                ipc: None,
                uts: Some("/run/pvecri/ns/p1/uts".into()),
                host_pid: false,
                pid: Some("/run/pvecri/ns/p1/pid".into()),
                user: None,
            },
            mounts: vec![BindMount {
                source: "/data dir".into(),
                target: "/mnt/data".into(),
                readonly: true,
                propagation: Propagation::Slave,
                file: false,
            }],
            cgroup_container: "kubepods/pod1/c1".into(),
            cgroup_monitor: "pvecri.monitor/c1".into(),
            cgroup_settings: vec![("lxc.cgroup.cpu.shares".into(), "512".into())],
            oom_score_adj: Some(-998),
            log_file: "/run/pvecri/containers/c1/lxc.log".into(),
            privileged: false,
            selinux_label: Some("system_u:system_r:container_t:s0:c1,c2".into()),
        }
    }

    #[test]
    fn renders_a_complete_config() {
        let text = render(&plan());
        for expected in [
            "lxc.rootfs.path = dir:/var/lib/pvecri/snapshots/overlay/containers/c1/rootfs\n",
            "lxc.init.cmd = /.pvecri-init\n",
            "lxc.console.path = none\n",
            "lxc.namespace.share.net = /run/pvecri/ns/p1/net\n",
            "lxc.namespace.keep = ipc user\n",
            "lxc.namespace.share.uts = /run/pvecri/ns/p1/uts\n",
            "lxc.namespace.share.pid = /run/pvecri/ns/p1/pid\n",
            "lxc.cgroup.dir.container = kubepods/pod1/c1\n",
            "lxc.cgroup.dir.monitor = pvecri.monitor/c1\n",
            "lxc.cgroup.cpu.shares = 512\n",
            "lxc.proc.oom_score_adj = -998\n",
            "lxc.selinux.context = system_u:system_r:container_t:s0:c1,c2\n",
            "lxc.mount.entry = /usr/lib/pvecri/pvecri-init .pvecri-init none bind,ro,create=file 0 0\n",
            "lxc.mount.entry = /data\\040dir mnt/data none rbind,create=dir,ro,rslave 0 0\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(!text.contains("lxc.include"));
        assert!(!text.contains("lxc.uts.name"));
        assert!(!text.contains("lxc.net."));
    }

    #[test]
    fn user_namespace_pods_join_and_map() {
        let mut p = plan();
        p.namespaces.ipc = Some("/run/pvecri/ns/p1/ipc".into());
        let m = |host_id| crate::sandbox::userns::IdMapping {
            container_id: 0,
            host_id,
            length: 65536,
        };
        p.namespaces.user = Some(UserNs {
            path: "/run/pvecri/ns/p1/user".into(),
            uids: m(131072),
            gids: m(196608),
        });
        let text = render(&p);
        for expected in [
            "lxc.namespace.share.user = /run/pvecri/ns/p1/user\n",
            "lxc.idmap = u 0 131072 65536\n",
            "lxc.idmap = g 0 196608 65536\n",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        // Nothing of the host's is kept, so liblxc creates no other user
        // namespace.
        assert!(!text.contains("lxc.namespace.keep"), "{text}");
    }

    #[test]
    fn privileged_gets_writable_proc_and_sys() {
        let mut p = plan();
        p.privileged = true;
        assert!(render(&p).contains("lxc.mount.auto = proc:rw sys:rw cgroup:rw\n"));
    }
}
