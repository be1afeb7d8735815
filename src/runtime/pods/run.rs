//! RunPodSandbox: the pod's files and pinned namespaces (inside its user
//! namespace for `hostUsers: false`), the shared PID namespace's holder,
//! the network, then the record.
//!
//! A failure undoes what the steps before it made: the blocking namespace
//! step with an `Undo` guard (its own failures unwind inside it), the rest
//! with the async `Rollback` its undo is handed to, which also frees the
//! name (`crate::runtime::rollback`).

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::pod::{NsMode, PodConfig, PodRecord, PodState};
use crate::runtime::error::RuntimeError;
use crate::runtime::names::new_id;
use crate::runtime::netns_spares::TakenNetns;
use crate::runtime::rollback::{Rollback, Undo};
use crate::runtime::{now_ns, Runtime};
use crate::sandbox::files::{write_pod_files, DnsConfig, FilesError};
use crate::sandbox::ns::{self, NsKind, PinRequest};

/// What can fail while making a pod's namespaces.
#[derive(Debug, thiserror::Error)]
enum PodNsError {
    #[error(transparent)]
    Pin(#[from] ns::NsError),
    #[error(transparent)]
    Userns(#[from] crate::sandbox::userns::UsernsError),
    #[error(transparent)]
    Infra(#[from] crate::sandbox::infra::InfraError),
}

fn pin_error(id: &str, e: PodNsError) -> RuntimeError {
    match e {
        PodNsError::Pin(
            ns::NsError::Sysctl(_) | ns::NsError::SysctlWrite { .. } | ns::NsError::Hostname(_),
        ) => RuntimeError::Invalid {
            field: "config.linux.sysctls",
            message: crate::errors::chain(&e),
        },
        other => RuntimeError::os("pinning pod namespaces", id, crate::errors::chain(&other)),
    }
}

/// The namespaces of a `hostUsers: false` pod: the helper makes the user
/// namespace and the others inside it, then they are pinned (configured as
/// usual from a thread that joins them). Returns the shared PID
/// namespace's PID 1, or 0. Blocking.
fn userns_namespaces(
    init: &Path,
    ids: &crate::sandbox::userns::UserNamespace,
    pin: &PinRequest,
    shared_pid: bool,
) -> Result<i32, PodNsError> {
    let mut args: Vec<&str> = pin.kinds.iter().map(|k| k.name()).collect();
    if shared_pid {
        args.push("pid");
    }
    let holder = crate::sandbox::userns::Holder::start(init, ids, &args)?;
    let pid1 = holder.pid1.unwrap_or(0);
    let pinned = (|| -> Result<(), PodNsError> {
        ns::pin(&PinRequest {
            join: Some(holder.pid()),
            ..*pin
        })?;
        holder.pin_user(pin.dir)?;
        if pid1 > 0 {
            crate::sandbox::infra::pin(pin.dir, pid1)?;
        }
        Ok(())
    })();
    holder.finish();
    if let Err(e) = pinned {
        crate::sandbox::infra::kill(pid1, None);
        return Err(e);
    }
    Ok(pid1)
}

/// What RunPodSandbox makes for a pod, where, and how, decided before
/// any of it is made.
#[derive(Clone)]
struct PodPlan {
    id: String,
    ns_dir: PathBuf,
    files_dir: PathBuf,
    hostname: String,
    /// The namespaces pinned for the pod (the PID namespace aside).
    kinds: Vec<NsKind>,
    sysctls: Vec<(String, String)>,
    dns: Option<DnsConfig>,
    log_dir: String,
    shared_pid: bool,
    userns: Option<crate::sandbox::userns::UserNamespace>,
    init: PathBuf,
}

/// The spare network namespace a pod joins, if it got one.
type Spare = Option<TakenNetns>;

impl PodPlan {
    /// The path of the pinned namespace `kind`, if the pod has its own.
    fn ns_path(&self, kind: NsKind, name: &str) -> Option<String> {
        self.kinds
            .contains(&kind)
            .then(|| self.ns_dir.join(name).display().to_string())
    }
}

impl Runtime {
    pub(crate) async fn run_pod(&self, config: PodConfig) -> Result<String, RuntimeError> {
        // The pod's first container start follows.
        self.warm_migrations();
        if config.name.is_empty() {
            return Err(RuntimeError::Invalid {
                field: "config.metadata.name",
                message: "a pod name is required".into(),
            });
        }
        // A pod on the node's network gets no veth, so nothing is shaped
        // and its annotations are not looked at (as with the kubelet's CNI
        // plugins).
        if config.network != NsMode::Node {
            self.check_network(&config)?;
        }
        let id = new_id();
        let key = config.name_key();
        self.names
            .reserve(&key, &id)
            .map_err(
                |crate::runtime::names::Taken { holder }| RuntimeError::NameTaken {
                    what: "pod",
                    key: key.clone(),
                    holder,
                },
            )?;
        // Undone last: the name, once whatever the steps made is gone.
        let mut rollback = Rollback::new();
        rollback.push(async { self.names.release(&key, &id) });
        match self.run_pod_reserved(&id, config, &mut rollback).await {
            Ok(()) => {
                rollback.disarm();
                Ok(id)
            }
            Err(e) => {
                rollback.run().await;
                Err(e)
            }
        }
    }

    /// The steps of RunPodSandbox once its name is reserved; each registers
    /// its undo in `rollback`, which the caller runs on failure.
    async fn run_pod_reserved<'a>(
        &'a self,
        id: &'a str,
        config: PodConfig,
        rollback: &mut Rollback<'a>,
    ) -> Result<(), RuntimeError> {
        let plan = self.pod_plan(id, &config);
        self.require_userns_support(&config)?;
        // A pod whose namespaces live in a user namespace of its own makes
        // its network namespace there.
        let spare = if plan.userns.is_none() && plan.kinds.contains(&NsKind::Net) {
            self.netns_spares.refill_when_quiet();
            self.netns_spares.take()
        } else {
            None
        };
        let infra_pid = make_namespaces_blocking(plan.clone(), spare, rollback).await?;
        let net_ns = plan.ns_path(NsKind::Net, "net");
        let network_started = std::time::Instant::now();
        crate::failpoint::hit("run_pod.after_namespaces")?;
        let ips = match &net_ns {
            Some(netns) => {
                let ips = self.attach_network(id, Path::new(netns), &config).await?;
                rollback.push(async move {
                    if let Err(e) = self.detach_network(id).await {
                        warn!(pod_id = %id, error = %crate::errors::chain(&e), "cannot release the pod network");
                    }
                });
                ips
            }
            None => Vec::new(),
        };
        let network_us = network_started.elapsed().as_micros() as u64;
        let record = PodRecord {
            id: id.to_owned(),
            state: PodState::Ready,
            created_at_ns: now_ns(),
            ns_dir: plan.ns_dir.display().to_string(),
            net_ns,
            ipc_ns: plan.ns_path(NsKind::Ipc, "ipc"),
            uts_ns: plan.ns_path(NsKind::Uts, "uts"),
            files_dir: plan.files_dir.display().to_string(),
            ips,
            pid_ns: (infra_pid > 0).then(|| plan.ns_dir.join("pid").display().to_string()),
            infra_pid,
            infra_start_time: crate::sandbox::infra::proc_start_time(infra_pid).unwrap_or_default(),
            user_ns: plan
                .userns
                .map(|_| plan.ns_dir.join("user").display().to_string()),
            config,
            resources: None,
        };
        crate::failpoint::hit("run_pod.after_network")?;
        crate::failpoint::hit("run_pod.before_record")?;
        // Synced off the request path: a crash before that loses the pod,
        // and the restart releases what it had, as for a crash just before.
        self.store.put_soon(&record)?;
        info!(pod_id = id, name = %record.config.name, namespace = %record.config.namespace, ips = ?record.ips, network_us, "pod sandbox ready");
        self.emit_pod_ready(&record);
        Ok(())
    }

    fn pod_plan(&self, id: &str, config: &PodConfig) -> PodPlan {
        // No hostname asked for: the node's, as containerd does.
        let hostname = if config.hostname.is_empty() {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".to_owned())
        } else {
            config.hostname.clone()
        };
        let kinds = own_namespaces(config);
        PodPlan {
            id: id.to_owned(),
            ns_dir: self.config.runtime_dir.join("ns").join(id),
            files_dir: self.config.state_dir.join("sandboxes").join(id),
            hostname,
            kinds,
            sysctls: config.sysctls.clone().into_iter().collect(),
            dns: config.dns.as_ref().map(|d| DnsConfig {
                servers: d.servers.clone(),
                searches: d.searches.clone(),
                options: d.options.clone(),
            }),
            log_dir: config.log_directory.clone(),
            shared_pid: config.pid == NsMode::Pod,
            userns: config.userns,
            init: self.config.init_path.clone(),
        }
    }

    /// A `hostUsers: false` pod needs user namespaces on this node.
    fn require_userns_support(&self, config: &PodConfig) -> Result<(), RuntimeError> {
        if config.userns.is_some() {
            if let Err(why) = &self.userns_support {
                return Err(RuntimeError::WrongState {
                    what: "node",
                    id: "user namespaces".into(),
                    state: "unavailable".into(),
                    message: format!(
                        "hostUsers: false pods cannot run here: {}",
                        crate::errors::chain(why)
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The namespaces a pod gets of its own (its PID namespace aside): the
/// network with the UTS one unless it is on the node's network, and IPC
/// unless it shares the node's.
fn own_namespaces(config: &PodConfig) -> Vec<NsKind> {
    let mut kinds = Vec::new();
    if config.network != NsMode::Node {
        kinds.push(NsKind::Net);
        kinds.push(NsKind::Uts);
    }
    if config.ipc != NsMode::Node {
        kinds.push(NsKind::Ipc);
    }
    kinds
}

/// The pod's files and namespaces, made off the async threads. What they
/// made is registered in `rollback` as one blocking undo.
async fn make_namespaces_blocking(
    plan: PodPlan,
    spare: Spare,
    rollback: &mut Rollback<'_>,
) -> Result<i32, RuntimeError> {
    let id = plan.id.clone();
    let (made, spare) =
        tokio::task::spawn_blocking(move || (make_namespaces(&plan, spare.as_ref()), spare))
            .await
            .map_err(|e| RuntimeError::os("run pod", &id, e))?;
    // The spare's own pin is dropped off the request path once the pod's
    // are made (or failed); one a crash leaves is swept at the next start.
    if let Some(spare) = spare {
        tokio::task::spawn_blocking(move || drop(spare));
    }
    let (infra_pid, undo) = made?;
    rollback.push_blocking(undo.into_action());
    Ok(infra_pid)
}

/// Writes the pod's files, pins its namespaces and starts the shared PID
/// namespace's holder; returns the holder's PID (or 0) and the undo of it
/// all. A failing step drops the `Undo`, undoing the steps before it:
/// the pod files are removed once pinning starts (a failure writing them
/// leaves them, as ever), the pins once there are any. Blocking.
fn make_namespaces(
    plan: &PodPlan,
    spare: Option<&TakenNetns>,
) -> Result<(i32, Undo), RuntimeError> {
    write_files(plan)?;
    let mut undo = Undo::new();
    let files_dir = plan.files_dir.clone();
    undo.push(move || {
        let _ = std::fs::remove_dir_all(&files_dir);
    });
    let ns_dir = plan.ns_dir.clone();
    let unpin = move || {
        let _ = ns::unpin(&ns_dir);
    };
    let infra_pid = if let Some(ids) = &plan.userns {
        // The helper may have pinned some before failing.
        undo.push(unpin);
        userns_namespaces(
            &plan.init,
            ids,
            &PinRequest {
                dir: &plan.ns_dir,
                kinds: &plan.kinds,
                hostname: Some(plan.hostname.as_str()),
                sysctls: &plan.sysctls,
                join: None,
                net_from: None,
            },
            plan.shared_pid,
        )
        .map_err(|e| pin_error(&plan.id, e))?
    } else {
        if !plan.kinds.is_empty() {
            let uts_hostname = plan
                .kinds
                .contains(&NsKind::Uts)
                .then_some(plan.hostname.as_str());
            let spare_net = spare.map(|s| s.net());
            ns::pin(&PinRequest {
                dir: &plan.ns_dir,
                kinds: &plan.kinds,
                hostname: uts_hostname,
                sysctls: &plan.sysctls,
                join: None,
                net_from: spare_net.as_deref(),
            })
            .map_err(|e| pin_error(&plan.id, PodNsError::Pin(e)))?;
        }
        undo.push(unpin);
        if plan.shared_pid {
            crate::sandbox::infra::start(&plan.init, &plan.ns_dir).map_err(|e| {
                RuntimeError::os(
                    "starting the pod's PID namespace holder",
                    &plan.id,
                    crate::errors::chain(&e),
                )
            })?
        } else {
            0
        }
    };
    // The shared PID namespace's holder, if any, goes first; its start time,
    // taken now, keeps the undo from killing a reused PID.
    let infra_start = crate::sandbox::infra::proc_start_time(infra_pid);
    undo.push(move || crate::sandbox::infra::kill(infra_pid, infra_start));
    Ok((infra_pid, undo))
}

/// The pod's hostname, hosts and resolv.conf files and its log directory.
/// Blocking.
fn write_files(plan: &PodPlan) -> Result<(), RuntimeError> {
    let id = plan.id.as_str();
    write_pod_files(
        &plan.files_dir,
        &plan.hostname,
        plan.dns.as_ref(),
        Path::new("/etc/resolv.conf"),
    )
    .map_err(|e| match e {
        FilesError::Hostname(_) => RuntimeError::Invalid {
            field: "config.hostname",
            message: crate::errors::chain(&e),
        },
        FilesError::InvalidDns { .. } => RuntimeError::Invalid {
            field: "config.dns_config",
            message: crate::errors::chain(&e),
        },
        other => RuntimeError::os("writing pod files", id, crate::errors::chain(&other)),
    })?;
    if !plan.log_dir.is_empty() {
        std::fs::create_dir_all(&plan.log_dir)
            .map_err(|e| RuntimeError::os("creating the log directory", id, e))?;
    }
    if plan.userns.is_some() {
        // The pod's files are bound into its containers by liblxc acting
        // as the pod's (unprivileged) root.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&plan.files_dir, std::fs::Permissions::from_mode(0o711))
            .map_err(|e| RuntimeError::os("opening the pod files dir", id, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A plan under `dir`, whose `ns` dir exists as the runtime's does.
    fn plan(dir: &Path, kinds: Vec<NsKind>) -> PodPlan {
        std::fs::create_dir_all(dir.join("ns")).unwrap();
        PodPlan {
            id: "p1".to_owned(),
            ns_dir: dir.join("ns/p1"),
            files_dir: dir.join("sandboxes/p1"),
            hostname: "web-0".to_owned(),
            kinds,
            sysctls: Vec::new(),
            dns: None,
            log_dir: String::new(),
            shared_pid: false,
            userns: None,
            init: PathBuf::from("/nonexistent/pvecri-init"),
        }
    }

    /// False, with a loud line, when a test that pins namespaces cannot
    /// run here; in CI (`CI=true`), where tests run as root, it fails.
    fn is_root(test: &str) -> bool {
        if nix::unistd::geteuid().is_root() {
            return true;
        }
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test} needs root, and CI runs tests as root");
        }
        eprintln!("skipping {test}: needs root");
        false
    }

    fn invalid_field(result: Result<impl std::fmt::Debug, RuntimeError>) -> &'static str {
        match result {
            Err(RuntimeError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pods_on_the_node_network_share_its_uts_namespace_too() {
        let config = |network, ipc| PodConfig {
            network,
            ipc,
            ..Default::default()
        };
        assert_eq!(
            own_namespaces(&config(NsMode::Pod, NsMode::Pod)),
            [NsKind::Net, NsKind::Uts, NsKind::Ipc]
        );
        assert_eq!(
            own_namespaces(&config(NsMode::Node, NsMode::Pod)),
            [NsKind::Ipc]
        );
        assert_eq!(
            own_namespaces(&config(NsMode::Pod, NsMode::Node)),
            [NsKind::Net, NsKind::Uts]
        );
        assert!(own_namespaces(&config(NsMode::Node, NsMode::Node)).is_empty());
    }

    #[test]
    fn only_own_namespaces_get_a_path() {
        let tmp = tempfile::tempdir().unwrap();
        let p = plan(tmp.path(), vec![NsKind::Net, NsKind::Uts]);
        assert_eq!(
            p.ns_path(NsKind::Net, "net"),
            Some(tmp.path().join("ns/p1/net").display().to_string())
        );
        assert_eq!(p.ns_path(NsKind::Ipc, "ipc"), None);
    }

    #[test]
    fn bad_sysctls_and_hostnames_are_the_callers_fault() {
        let hostname = crate::sandbox::hostname::InvalidHostname {
            hostname: "-".into(),
            reason: "test",
        };
        let err = pin_error("p1", PodNsError::Pin(ns::NsError::Hostname(hostname)));
        assert_eq!(invalid_field(Err::<(), _>(err)), "config.linux.sysctls");
        let other = ns::NsError::DirExists {
            dir: PathBuf::from("/run/pvecri/ns/p1"),
        };
        match pin_error("p1", PodNsError::Pin(other)) {
            RuntimeError::Os { op, id, .. } => {
                assert_eq!((op, id.as_str()), ("pinning pod namespaces", "p1"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pod_files_and_log_directory_are_written() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = plan(tmp.path(), Vec::new());
        p.log_dir = tmp.path().join("logs/p1").display().to_string();
        p.dns = Some(DnsConfig {
            servers: vec!["10.0.0.10".into()],
            searches: vec!["svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        });
        write_files(&p).unwrap();
        let read = |name: &str| std::fs::read_to_string(p.files_dir.join(name)).unwrap();
        assert_eq!(read("hostname"), "web-0\n");
        assert!(read("hosts").contains("web-0"));
        assert!(read("resolv.conf").contains("nameserver 10.0.0.10"));
        assert!(Path::new(&p.log_dir).is_dir());
    }

    #[test]
    fn bad_pod_files_are_invalid_requests() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = plan(tmp.path(), Vec::new());
        p.hostname = "not a hostname".into();
        assert_eq!(invalid_field(write_files(&p)), "config.hostname");
        let mut p = plan(tmp.path(), Vec::new());
        p.dns = Some(DnsConfig {
            servers: vec!["10.0.0.10\nnameserver 6.6.6.6".into()],
            searches: Vec::new(),
            options: Vec::new(),
        });
        assert_eq!(invalid_field(write_files(&p)), "config.dns_config");
        assert!(!p.files_dir.join("resolv.conf").exists());
    }

    #[test]
    fn a_user_namespaced_pod_files_dir_is_traversable() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = plan(tmp.path(), Vec::new());
        let map = crate::sandbox::userns::IdMapping {
            container_id: 0,
            host_id: 100_000,
            length: 65536,
        };
        p.userns = Some(crate::sandbox::userns::UserNamespace {
            uids: map,
            gids: map,
        });
        write_files(&p).unwrap();
        let mode = std::fs::metadata(&p.files_dir)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o711);
    }

    #[test]
    fn a_pod_on_the_node_namespaces_pins_nothing_and_undoes_its_files() {
        let tmp = tempfile::tempdir().unwrap();
        let p = plan(tmp.path(), Vec::new());
        let (infra_pid, undo) = make_namespaces(&p, None).unwrap();
        assert_eq!(infra_pid, 0);
        assert!(p.files_dir.join("hostname").is_file());
        assert!(!p.ns_dir.exists());
        drop(undo);
        assert!(!p.files_dir.exists());
    }

    #[test]
    fn pinned_namespaces_are_the_pods_own_and_undone_together() {
        if !is_root("pinned_namespaces_are_the_pods_own_and_undone_together") {
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let p = plan(tmp.path(), vec![NsKind::Net, NsKind::Uts, NsKind::Ipc]);
        let (infra_pid, undo) = make_namespaces(&p, None).unwrap();
        assert_eq!(infra_pid, 0);
        for kind in ["net", "uts", "ipc"] {
            let own = std::fs::metadata(format!("/proc/thread-self/ns/{kind}"))
                .unwrap()
                .ino();
            let pinned = std::fs::metadata(p.ns_dir.join(kind)).unwrap().ino();
            assert_ne!(own, pinned, "{kind}");
        }
        drop(undo);
        assert!(!p.ns_dir.exists());
        assert!(!p.files_dir.exists());
    }

    #[test]
    fn a_refused_sysctl_undoes_the_pod_files() {
        if !is_root("a_refused_sysctl_undoes_the_pod_files") {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let mut p = plan(tmp.path(), vec![NsKind::Net, NsKind::Uts]);
        p.sysctls = vec![("net.ipv4.no_such_sysctl".into(), "1".into())];
        let err = make_namespaces(&p, None).map(|(pid, _)| pid);
        assert_eq!(invalid_field(err), "config.linux.sysctls");
        assert!(!p.files_dir.exists());
        assert!(!p.ns_dir.exists());
    }
}
