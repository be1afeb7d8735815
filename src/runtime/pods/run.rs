//! RunPodSandbox: the pod's files and pinned namespaces (inside its user
//! namespace for `hostUsers: false`), the shared PID namespace's holder,
//! the network, then the record.

use std::path::Path;

use tracing::info;

use crate::pod::{NsMode, PodConfig, PodRecord, PodState};
use crate::runtime::error::RuntimeError;
use crate::runtime::names::new_id;
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

impl Runtime {
    pub async fn run_pod(&self, config: PodConfig) -> Result<String, RuntimeError> {
        if config.name.is_empty() {
            return Err(RuntimeError::Invalid {
                field: "config.metadata.name",
                message: "a pod name is required".into(),
            });
        }
        let id = new_id();
        let key = config.name_key();
        self.names
            .reserve(&key, &id)
            .map_err(|holder| RuntimeError::NameTaken {
                what: "pod",
                key: key.clone(),
                holder,
            })?;
        let result = self.run_pod_reserved(&id, config).await;
        if result.is_err() {
            self.names.release(&key, &id);
        }
        result.map(|()| id)
    }

    async fn run_pod_reserved(&self, id: &str, config: PodConfig) -> Result<(), RuntimeError> {
        let ns_dir = self.config.runtime_dir.join("ns").join(id);
        let files_dir = self.config.state_dir.join("sandboxes").join(id);
        // No hostname asked for: the node's, as containerd does.
        let hostname = if config.hostname.is_empty() {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "localhost".to_owned())
        } else {
            config.hostname.clone()
        };
        let mut kinds = Vec::new();
        if config.network != NsMode::Node {
            kinds.push(NsKind::Net);
            kinds.push(NsKind::Uts);
        }
        if config.ipc != NsMode::Node {
            kinds.push(NsKind::Ipc);
        }
        let sysctls: Vec<(String, String)> = config.sysctls.clone().into_iter().collect();
        let dns = config.dns.as_ref().map(|d| DnsConfig {
            servers: d.servers.clone(),
            searches: d.searches.clone(),
            options: d.options.clone(),
        });
        let log_dir = config.log_directory.clone();
        let (ns_dir2, files_dir2, hostname2, kinds2) = (
            ns_dir.clone(),
            files_dir.clone(),
            hostname.clone(),
            kinds.clone(),
        );
        let id2 = id.to_owned();
        let shared_pid = config.pid == NsMode::Pod;
        let init = self.config.init_path.clone();
        let userns = config.userns;
        if userns.is_some() {
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
        let infra_pid = tokio::task::spawn_blocking(move || -> Result<i32, RuntimeError> {
            write_pod_files(
                &files_dir2,
                &hostname2,
                dns.as_ref(),
                std::path::Path::new("/etc/resolv.conf"),
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
                other => RuntimeError::os("writing pod files", &id2, crate::errors::chain(&other)),
            })?;
            if !log_dir.is_empty() {
                std::fs::create_dir_all(&log_dir)
                    .map_err(|e| RuntimeError::os("creating the log directory", &id2, e))?;
            }
            if let Some(ids) = &userns {
                // The pod's files are bound into its containers by liblxc
                // acting as the pod's (unprivileged) root.
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&files_dir2, std::fs::Permissions::from_mode(0o711))
                    .map_err(|e| RuntimeError::os("opening the pod files dir", &id2, e))?;
                return userns_namespaces(
                    &init,
                    ids,
                    &PinRequest {
                        dir: &ns_dir2,
                        kinds: &kinds2,
                        hostname: Some(hostname2.as_str()),
                        sysctls: &sysctls,
                        join: None,
                    },
                    shared_pid,
                )
                .map_err(|e| {
                    let _ = ns::unpin(&ns_dir2);
                    let _ = std::fs::remove_dir_all(&files_dir2);
                    pin_error(&id2, e)
                });
            }
            if !kinds2.is_empty() {
                let uts_hostname = kinds2.contains(&NsKind::Uts).then_some(hostname2.as_str());
                ns::pin(&PinRequest {
                    dir: &ns_dir2,
                    kinds: &kinds2,
                    hostname: uts_hostname,
                    sysctls: &sysctls,
                    join: None,
                })
                .map_err(|e| {
                    let _ = std::fs::remove_dir_all(&files_dir2);
                    pin_error(&id2, PodNsError::Pin(e))
                })?;
            }
            if !shared_pid {
                return Ok(0);
            }
            crate::sandbox::infra::start(&init, &ns_dir2).map_err(|e| {
                let _ = ns::unpin(&ns_dir2);
                let _ = std::fs::remove_dir_all(&files_dir2);
                RuntimeError::os(
                    "starting the pod's PID namespace holder",
                    &id2,
                    crate::errors::chain(&e),
                )
            })
        })
        .await
        .map_err(|e| RuntimeError::os("run pod", id, e))??;

        let path_of = |kind: NsKind, name: &str| {
            kinds
                .contains(&kind)
                .then(|| ns_dir.join(name).display().to_string())
        };
        let net_ns = path_of(NsKind::Net, "net");
        let network_started = std::time::Instant::now();
        let attached = match (crate::failpoint::hit("run_pod.after_namespaces"), &net_ns) {
            (Err(fired), _) => Err(fired.into()),
            (Ok(()), Some(netns)) => self.attach_network(id, Path::new(netns), &config).await,
            (Ok(()), None) => Ok(Vec::new()),
        };
        let ips = match attached {
            Ok(ips) => ips,
            Err(e) => {
                let (ns_dir, files_dir) = (ns_dir.clone(), files_dir.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    // The shared PID namespace's holder, if any, goes too.
                    crate::sandbox::infra::kill(infra_pid, None);
                    let _ = ns::unpin(&ns_dir);
                    let _ = std::fs::remove_dir_all(&files_dir);
                })
                .await;
                return Err(e);
            }
        };
        let network_us = network_started.elapsed().as_micros() as u64;
        let record = PodRecord {
            id: id.to_owned(),
            state: PodState::Ready,
            created_at_ns: now_ns(),
            ns_dir: ns_dir.display().to_string(),
            net_ns,
            ipc_ns: path_of(NsKind::Ipc, "ipc"),
            uts_ns: path_of(NsKind::Uts, "uts"),
            files_dir: files_dir.display().to_string(),
            ips,
            pid_ns: (infra_pid > 0).then(|| ns_dir.join("pid").display().to_string()),
            infra_pid,
            infra_start_time: crate::sandbox::infra::proc_start_time(infra_pid).unwrap_or_default(),
            user_ns: userns.map(|_| ns_dir.join("user").display().to_string()),
            config,
        };
        let stored = crate::failpoint::hit("run_pod.after_network")
            .and_then(|()| crate::failpoint::hit("run_pod.before_record"))
            .map_err(RuntimeError::from)
            .and_then(|()| self.store.put(&record).map_err(RuntimeError::from));
        if let Err(e) = stored {
            self.release_pod_resources(&record).await;
            let _ = std::fs::remove_dir_all(&record.files_dir);
            return Err(e);
        }
        info!(pod_id = id, name = %record.config.name, namespace = %record.config.namespace, ips = ?record.ips, network_us, "pod sandbox ready");
        self.emit_pod_ready(&record);
        Ok(())
    }
}
