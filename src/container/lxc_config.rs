//! The LXC config pvecri writes for one CRI container: complete, with no
//! `lxc.include` (on Proxmox VE the common includes pull in PVE's hooks).
//! Pure text generation from a [`LxcPlan`], so every line is unit-tested.
//!
//! The writer is the last line of defence against config injection: liblxc
//! reads one `key = value` per line and runs `lxc.hook.*` commands as root
//! on the host, so a value that could end its line (any control character)
//! is refused here even though requests were checked where they entered
//! (`security::input`). Mount paths escape space, tab and backslash as
//! fstab does.

use std::fmt::Write;
use std::path::PathBuf;

pub(crate) use super::record::Propagation;

/// Which of the pod's namespaces a container joins, by nsfs path; `None`
/// means the host's (hostNetwork/hostIPC pods).
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedNamespaces {
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
pub(crate) struct UserNs {
    pub path: PathBuf,
    pub uids: crate::sandbox::userns::IdMapping,
    pub gids: crate::sandbox::userns::IdMapping,
}

/// A bind mount into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BindMount {
    pub source: PathBuf,
    /// Path inside the container; once placed (`container::mountpoints`),
    /// relative and free of symlinks.
    pub target: String,
    pub readonly: bool,
    /// nosuid, nodev, noexec (liblxc remounts the bind with them).
    pub flags: crate::container::MountFlags,
    pub propagation: Propagation,
    /// The source is a file (the target is a file, not a directory).
    pub file: bool,
    /// liblxc creates the target (only inside the fresh autodev `/dev`).
    pub create: bool,
    /// A missing source is skipped instead of failing the start.
    pub optional: bool,
}

/// A value the config cannot hold.
#[derive(Debug, thiserror::Error)]
#[error("refusing to write {key} = {value:?} into the LXC config: {reason}")]
pub(crate) struct ConfigError {
    pub key: String,
    pub value: String,
    pub reason: String,
}

/// Everything the config needs.
#[derive(Debug, Clone)]
pub(crate) struct LxcPlan {
    pub rootfs: PathBuf,
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

/// Renders the config file text, or refuses a value that would not stay
/// on its line.
pub(crate) fn render(plan: &LxcPlan) -> Result<String, ConfigError> {
    let mut out = String::new();
    let mut line = |k: &str, v: &dyn std::fmt::Display| -> Result<(), ConfigError> {
        let value = v.to_string();
        let bad = |reason: String| ConfigError {
            key: k.to_owned(),
            value: value.clone(),
            reason,
        };
        crate::security::input::check_text(k).map_err(|e| bad(e.to_string()))?;
        crate::security::input::check_text(&value).map_err(|e| bad(e.to_string()))?;
        if value.trim() != value {
            return Err(bad("liblxc trims leading and trailing spaces".to_owned()));
        }
        if value.is_empty() {
            // An empty value resets a list key in liblxc: `lxc.cgroup2.x =`
            // drops every cgroup2 setting before it (the device rules too),
            // `lxc.mount.entry =` every mount.
            return Err(bad(
                "an empty value clears what liblxc has read so far".to_owned()
            ));
        }
        let _ = writeln!(out, "{k} = {value}");
        Ok(())
    };
    // No lxc.uts.name: the UTS namespace is the pod's (hostname already
    // set when it was pinned) or the host's, which must never be renamed.
    line("lxc.rootfs.path", &format!("dir:{}", plan.rootfs.display()))?;
    line("lxc.rootfs.managed", &0)?;
    // pvecri-init holds the container until StartContainer, then execs the workload.
    line("lxc.init.cmd", &"/.pvecri-init")?;
    line("lxc.init.cwd", &"/")?;
    // Init inherits the monitor's stdout/stderr pipes: no console, no ttys.
    line("lxc.console.path", &"none")?;
    line("lxc.tty.max", &0)?;
    line("lxc.pty.max", &1024)?;
    line("lxc.autodev", &1)?;
    // `:force`: liblxc skips the cgroup mount when the container has its
    // own cgroup namespace and (as far as the LXC config says) CAP_SYS_ADMIN,
    // expecting a systemd inside to mount it; pvecri drops capabilities in
    // pvecri-init, so without it a workload on a v1/hybrid host found an
    // empty /sys/fs/cgroup and could not read its own limits. The mount is
    // of the container's cgroup namespace: its own subtree only.
    line(
        "lxc.mount.auto",
        &if plan.privileged {
            "proc:rw sys:rw cgroup:rw:force"
        } else {
            "proc:mixed sys:ro cgroup:ro:force"
        },
    )?;
    line("lxc.apparmor.profile", &"unconfined")?;
    if let Some(label) = &plan.selinux_label {
        line("lxc.selinux.context", label)?;
    }
    line("lxc.log.file", &plan.log_file.display())?;
    line("lxc.log.level", &"WARN")?;
    let mut keep = Vec::new();
    for (kind, path) in [
        ("net", &plan.namespaces.net),
        ("ipc", &plan.namespaces.ipc),
        ("uts", &plan.namespaces.uts),
    ] {
        match path {
            Some(p) => line(&format!("lxc.namespace.share.{kind}"), &p.display())?,
            None => keep.push(kind),
        }
    }
    if let Some(user) = &plan.namespaces.user {
        line("lxc.namespace.share.user", &user.path.display())?;
        for (kind, m) in [("u", user.uids), ("g", user.gids)] {
            line(
                "lxc.idmap",
                &format!("{kind} {} {} {}", m.container_id, m.host_id, m.length),
            )?;
        }
    }
    if plan.namespaces.host_pid {
        keep.push("pid");
    } else if let Some(p) = &plan.namespaces.pid {
        line("lxc.namespace.share.pid", &p.display())?;
    }
    if !keep.is_empty() {
        // The host's namespace: do not create a new one. With
        // `lxc.namespace.keep` set, liblxc clones every namespace not in the
        // list, the user namespace included; an unmapped user namespace
        // makes every file creation fail (EOVERFLOW in mount_autodev), so
        // the host's user namespace is kept too.
        keep.push("user");
        line("lxc.namespace.keep", &keep.join(" "))?;
    }
    line("lxc.cgroup.dir.container", &plan.cgroup_container)?;
    line("lxc.cgroup.dir.monitor", &plan.cgroup_monitor)?;
    for (key, value) in &plan.cgroup_settings {
        if !(key.starts_with("lxc.cgroup.") || key.starts_with("lxc.cgroup2.")) {
            return Err(ConfigError {
                key: key.clone(),
                value: value.clone(),
                reason: "not a cgroup setting".to_owned(),
            });
        }
        line(key, value)?;
    }
    if let Some(adj) = plan.oom_score_adj {
        line("lxc.proc.oom_score_adj", &adj)?;
    }
    for m in &plan.mounts {
        line("lxc.mount.entry", &mount_entry(m))?;
    }
    Ok(out)
}

/// One `lxc.mount.entry` value (fstab syntax; the target is relative to the
/// rootfs, spaces escaped as `\040`).
fn mount_entry(m: &BindMount) -> String {
    let mut opts = vec!["rbind"];
    if m.create {
        opts.push(if m.file { "create=file" } else { "create=dir" });
    }
    if m.optional {
        opts.push("optional");
    }
    if m.readonly {
        opts.push("ro");
    }
    for (set, flag) in [
        (m.flags.nosuid, "nosuid"),
        (m.flags.nodev, "nodev"),
        (m.flags.noexec, "noexec"),
    ] {
        if set {
            opts.push(flag);
        }
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

/// fstab's octal escapes for the characters that separate its fields.
/// Control characters are not escaped but refused by `render`.
fn escape(s: &str) -> String {
    s.replace('\\', "\\134")
        .replace(' ', "\\040")
        .replace('\t', "\\011")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn plan() -> LxcPlan {
        LxcPlan {
            rootfs: "/var/lib/pvecri/snapshots/overlay/containers/c1/rootfs".into(),
            namespaces: SharedNamespaces {
                net: Some("/run/pvecri/ns/p1/net".into()),
                ipc: None,
                uts: Some("/run/pvecri/ns/p1/uts".into()),
                host_pid: false,
                pid: Some("/run/pvecri/ns/p1/pid".into()),
                user: None,
            },
            mounts: vec![
                BindMount {
                    source: "/usr/lib/pvecri/pvecri-init".into(),
                    target: ".pvecri-init".into(),
                    readonly: true,
                    flags: Default::default(),
                    propagation: Propagation::Private,
                    file: true,
                    create: false,
                    optional: false,
                },
                BindMount {
                    source: "/data dir".into(),
                    target: "mnt/data".into(),
                    readonly: true,
                    flags: crate::container::MountFlags {
                        nosuid: true,
                        nodev: true,
                        noexec: false,
                    },
                    propagation: Propagation::Slave,
                    file: false,
                    create: false,
                    optional: false,
                },
                BindMount {
                    source: "/dev/fuse".into(),
                    target: "dev/fuse".into(),
                    readonly: false,
                    flags: Default::default(),
                    propagation: Propagation::Private,
                    file: true,
                    create: true,
                    optional: true,
                },
            ],
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
        let text = render(&plan()).unwrap();
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
            "lxc.mount.entry = /usr/lib/pvecri/pvecri-init .pvecri-init none rbind,ro,rprivate 0 0\n",
            "lxc.mount.entry = /data\\040dir mnt/data none rbind,ro,nosuid,nodev,rslave 0 0\n",
            "lxc.mount.entry = /dev/fuse dev/fuse none rbind,create=file,optional,rprivate 0 0\n",
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
        let text = render(&p).unwrap();
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
        assert!(render(&p)
            .unwrap()
            .contains("lxc.mount.auto = proc:rw sys:rw cgroup:rw:force\n"));
    }

    /// What liblxc holds after loading `text`: every known key with a
    /// non-empty value.
    /// liblxc creates `lxc.log.file` as it loads a config, so the file is
    /// put in the temp dir (tests leave nothing in /run/pvecri) and the
    /// configured value is reported as written.
    pub(crate) fn loaded(text: &str) -> std::collections::BTreeMap<String, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("c")).unwrap();
        let log = dir.path().join("lxc.log");
        let mut configured_log = None;
        let text: String = text
            .split_inclusive('\n')
            .map(|l| match l.strip_prefix("lxc.log.file = ") {
                Some(v) => {
                    configured_log = Some(v.trim_end_matches('\n').to_owned());
                    format!("lxc.log.file = {}\n", log.display())
                }
                None => l.to_owned(),
            })
            .collect();
        std::fs::write(dir.path().join("c/config"), text).unwrap();
        let c = crate::lxc::Container::open("c", dir.path().to_str().unwrap()).unwrap();
        let keys = c.known_config_keys();
        assert!(keys.len() > 50, "liblxc listed its keys: {keys:?}");
        let mut out: std::collections::BTreeMap<String, String> = keys
            .into_iter()
            .filter_map(|k| {
                let v = c.config_item(&k)?;
                (!v.is_empty()).then_some((k, v))
            })
            .collect();
        if let Some(v) = configured_log {
            out.insert("lxc.log.file".into(), v);
        }
        out
    }

    const INJECTED: &str = "\nlxc.hook.pre-start = /usr/bin/touch /pvecri-injected";

    #[test]
    fn a_value_that_would_start_a_second_line_is_refused() {
        type Edit = Box<dyn Fn(&mut LxcPlan)>;
        let edits: Vec<(&str, Edit)> = vec![
            (
                "mount target",
                Box::new(|p| p.mounts[1].target = format!("/x{INJECTED}")),
            ),
            (
                "mount source",
                Box::new(|p| p.mounts[1].source = format!("/x{INJECTED}").into()),
            ),
            (
                "selinux label",
                Box::new(|p| p.selinux_label = Some(format!("a:b:c:s0{INJECTED}"))),
            ),
            (
                "cgroup dir",
                Box::new(|p| p.cgroup_container = format!("kubepods{INJECTED}")),
            ),
            (
                "cgroup value",
                Box::new(|p| p.cgroup_settings[0].1 = format!("512{INJECTED}")),
            ),
            (
                "cgroup key",
                Box::new(|p| p.cgroup_settings[0].0 = "lxc.hook.pre-start".into()),
            ),
            (
                "namespace path",
                Box::new(|p| p.namespaces.net = Some(format!("/ns{INJECTED}").into())),
            ),
            (
                "carriage return",
                Box::new(|p| p.mounts[1].target = "/x\rlxc.hook.start=/bin/x".into()),
            ),
            (
                "leading space",
                Box::new(|p| p.cgroup_settings[0].1 = " 512".into()),
            ),
            (
                // liblxc would drop every cgroup setting read before it.
                "empty cgroup value",
                Box::new(|p| p.cgroup_settings[0].1 = String::new()),
            ),
        ];
        for (what, edit) in edits {
            let mut p = plan();
            edit(&mut p);
            let err = render(&p).expect_err(what);
            assert!(
                err.to_string().contains("refusing to write"),
                "{what}: {err}"
            );
        }
    }

    #[test]
    fn odd_but_legal_paths_load_back_as_exactly_the_planned_keys() {
        let benign = loaded(&render(&plan()).unwrap());
        let mut odd = plan();
        odd.mounts[1].source = "/data dir\\with#hash = and\tspace ".into();
        odd.mounts[1].target = "mnt/a b#c=d".into();
        let text = render(&odd).unwrap();
        let got = loaded(&text);
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            benign.keys().collect::<Vec<_>>(),
            "{text}"
        );
        assert_eq!(
            got["lxc.mount.entry"].lines().count(),
            benign["lxc.mount.entry"].lines().count()
        );
        assert!(
            got["lxc.mount.entry"].contains(
                "/data\\040dir\\134with#hash\\040=\\040and\\011space\\040 mnt/a\\040b#c=d "
            ),
            "{}",
            got["lxc.mount.entry"]
        );
        let hooks: Vec<_> = got
            .iter()
            .filter(|(k, _)| k.starts_with("lxc.hook.") && *k != "lxc.hook.version")
            .collect();
        assert!(hooks.is_empty(), "{hooks:?}");
    }
}
