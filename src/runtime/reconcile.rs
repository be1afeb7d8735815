//! Start-up reconciliation: the store against what exists on the node after
//! a crash or a reboot. Half-made containers and pods (a crash between the
//! first resource and the store write) are removed; records whose processes
//! or namespaces are gone are marked as such. Runs once, before the server
//! accepts calls.

use std::collections::HashSet;
use std::path::Path;

use tracing::{info, warn};

use super::Runtime;
use crate::cgroups::tree;
use crate::config::NetworkMode;
use crate::container::run_dir::RunDir;
use crate::container::{ContainerRecord, ContainerState};
use crate::pod::{PodRecord, PodState};
use crate::sandbox::ns::is_nsfs;

/// What the pass changed, for the log and the tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Reconciled {
    pub orphan_containers: usize,
    pub lost_containers: usize,
    pub orphan_pods: usize,
    pub lost_pods: usize,
}

/// IDs pvecri generates: 64 lowercase hex digits. Anything else in its
/// directories is not touched.
fn is_our_id(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| is_our_id(n))
                .collect()
        })
        .unwrap_or_default()
}

/// How long an orphan's directory may keep changing under its removal.
const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Removes an orphan container's directory, retrying while it changes
/// under the removal (a monitor that a slow machine has not yet seen die
/// may still be writing its files); says so when it cannot.
/// Every entry name of `dir` (none when it does not exist).
fn entries_any(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect()
}

fn remove_dir_settled(id: &str, dir: &Path) {
    let deadline = std::time::Instant::now() + SETTLE_TIMEOUT;
    loop {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if std::time::Instant::now() >= deadline => {
                warn!(container_id = %id, dir = %dir.display(), error = %e, "cannot remove the directory of a container without a record");
                return;
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
}

impl Runtime {
    /// Kills and removes the cgroups (container and monitor) of every
    /// container in `orphans`: ids this daemon left dirs for but has no
    /// record of. Only names pvecri generated are touched:
    /// `pvecri.monitor/<id>` and, under any parent, `<id>` or
    /// `pvecri-<id>.scope`. Cgroups are node-wide, so ids are taken from
    /// this daemon's own dirs, never from the hierarchy (another daemon's
    /// containers live there too).
    fn remove_orphan_cgroups(&self, orphans: &HashSet<String>) {
        let Ok(h) = tree::hierarchies() else {
            return;
        };
        let ids = orphans;
        if ids.is_empty() {
            return;
        }
        let names: HashSet<String> = ids
            .iter()
            .flat_map(|id| [id.clone(), format!("pvecri-{id}.scope")])
            .collect();
        let mut paths: Vec<String> = tree::find_named(&h, &names)
            .into_iter()
            .map(|(_, rel)| rel)
            .filter(|rel| rel != "pvecri.monitor" && !rel.starts_with("pvecri.monitor/"))
            .collect();
        // Containers first: their monitors exit once they are gone.
        paths.extend(ids.iter().map(|id| crate::cgroups::paths::monitor_path(id)));
        for rel in paths {
            let ended = tree::kill_and_wait(&h, &rel, super::teardown::KILL_TIMEOUT)
                .and_then(|_| tree::remove(&h, &rel, super::teardown::KILL_TIMEOUT));
            match ended {
                Ok(()) => {
                    info!(cgroup = %rel, "removed the cgroup of a container without a record")
                }
                Err(e) => {
                    warn!(cgroup = %rel, error = %crate::errors::chain(&e), "cannot remove the cgroup of a container without a record")
                }
            }
        }
    }

    /// Work dirs of checkpoints a crash interrupted (`<id>.<time>` under
    /// `state_dir/checkpoints`): the container may have been left frozen
    /// (a dump freezes it first), so it is thawed, and the dir removed.
    fn clear_checkpoint_leftovers(&self, containers: &[ContainerRecord]) {
        let root = self.config.state_dir.join("checkpoints");
        let names = entries_any(&root);
        if names.is_empty() {
            return;
        }
        let hierarchies = crate::cgroups::tree::hierarchies().unwrap_or_default();
        for name in names {
            let id = name.split_once('.').map_or(name.as_str(), |(id, _)| id);
            if !is_our_id(id) {
                continue;
            }
            if let Some(c) = containers.iter().find(|c| c.id == id) {
                if let Ok(f) = crate::checkpoint::freeze::Freezer::find(&hierarchies, &c.cgroup) {
                    f.thaw();
                }
            }
            warn!(container_id = %id, "removing the work dir of an interrupted checkpoint");
            if let Err(e) = std::fs::remove_dir_all(root.join(&name)) {
                warn!(container_id = %id, error = %e, "cannot remove it");
            }
        }
    }

    pub(crate) fn reconcile(&self) -> anyhow::Result<Reconciled> {
        let mut out = Reconciled::default();
        let containers = self.store.list::<ContainerRecord>()?;
        let known: HashSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
        let snapshot_dir = self
            .config
            .state_dir
            .join("snapshots")
            .join(self.images.snapshots().kind().as_str())
            .join("containers");
        let mut orphans: HashSet<String> = HashSet::new();
        for dir in [
            self.config.lxc_path(),
            RunDir::all(&self.config.runtime_dir),
            snapshot_dir,
        ] {
            orphans.extend(
                entries(&dir)
                    .into_iter()
                    .filter(|id| !known.contains(id.as_str())),
            );
        }
        // Image-volume snapshots (`<id>-iv<n>`) of containers without a record.
        for name in std::fs::read_dir(self.images.snapshots().rootfs_root())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
        {
            if let Some((id, n)) = name.split_once("-iv") {
                if is_our_id(id) && n.parse::<usize>().is_ok() && !known.contains(id) {
                    let _ = self.images.snapshots().remove_rootfs(&name);
                }
            }
        }
        // Volumes staged for a container whose start a crash interrupted.
        for id in entries(&self.config.runtime_dir.join("staging")) {
            if let Err(e) = crate::container::staging::unstage(&self.staging_dir(&id)) {
                warn!(container_id = %id, error = %crate::errors::chain(&e), "cannot detach staged volumes");
            }
        }
        // Cgroups of containers without a record: a crash between the
        // monitor's start and the record leaves them (every hierarchy).
        self.remove_orphan_cgroups(&orphans);
        for id in &orphans {
            warn!(container_id = %id, "removing a container left half-made by a crash");
            if let Err(e) = self.images.snapshots().remove_rootfs(id) {
                warn!(container_id = %id, error = %crate::errors::chain(&e), "cannot remove its root filesystem");
            }
            remove_dir_settled(id, &self.config.lxc_path().join(id));
            if let Ok(run_dir) = RunDir::new(&self.config.runtime_dir, id) {
                remove_dir_settled(id, run_dir.path());
            }
            out.orphan_containers += 1;
        }

        self.clear_checkpoint_leftovers(&containers);
        // Archives unpacked for a restore whose create a crash interrupted.
        let restore_root = self.config.state_dir.join("restore");
        for id in entries(&restore_root) {
            if !known.contains(id.as_str()) {
                let _ = std::fs::remove_dir_all(restore_root.join(&id));
            }
        }

        for c in containers {
            if matches!(c.state, ContainerState::Exited) {
                continue;
            }
            // A restored container runs nothing until it is started.
            if c.restored
                && c.state == ContainerState::Created
                && !self
                    .container_run_dir(&c.id)
                    .is_ok_and(|d| d.exit().exists() || super::teardown::monitor_alive(&d, &c.id))
            {
                continue;
            }
            let c = self.refresh(c)?;
            if c.state == ContainerState::Exited {
                continue;
            }
            let alive = super::containers::proc_start_time(c.init_pid) == Some(c.init_start_time);
            // A workload that has just exited while its monitor still runs
            // is not lost: the monitor is about to write the exit record
            // (slow under load), and status queries read it from there.
            let monitor_running = self
                .container_run_dir(&c.id)
                .is_ok_and(|d| super::teardown::monitor_alive(&d, &c.id));
            if !alive && !monitor_running {
                let mut c = c;
                warn!(container_id = %c.id, "the container's process is gone without an exit record");
                c.state = ContainerState::Exited;
                c.exit_code = 255;
                c.reason = "Error".into();
                c.message =
                    "the container's process was lost (node reboot or monitor crash)".into();
                c.finished_at_ns = super::now_ns();
                if c.started_at_ns == 0 {
                    c.started_at_ns = c.finished_at_ns;
                }
                self.store.put(&c)?;
                out.lost_containers += 1;
            }
        }

        let pods = self.store.list::<PodRecord>()?;
        let known_pods: HashSet<&str> = pods.iter().map(|p| p.id.as_str()).collect();
        let ns_root = self.config.runtime_dir.join("ns");
        for id in entries(&ns_root) {
            if !known_pods.contains(id.as_str()) {
                warn!(pod_id = %id, "releasing namespaces of a pod left half-made by a crash");
                kill_pid_namespace_holder(&ns_root.join(&id).join("pid"));
                // Its veth first, if the crash came after it was made (the
                // kernel would delete it only a moment after the unpin;
                // CNI mode has none of pvecri's, the plugins' GC has theirs).
                if self.config.network.mode == NetworkMode::Builtin {
                    if let Err(e) =
                        crate::network::delete_orphan_veth(&id, &self.config.network.bridge)
                    {
                        warn!(pod_id = %id, error = %crate::errors::chain(&e), "cannot delete its veth");
                    }
                }
                if let Err(e) = crate::sandbox::ns::unpin(&ns_root.join(&id)) {
                    warn!(pod_id = %id, error = %crate::errors::chain(&e), "cannot release them");
                }
                out.orphan_pods += 1;
            }
        }
        let files_root = self.config.state_dir.join("sandboxes");
        for id in entries(&files_root) {
            if !known_pods.contains(id.as_str()) {
                let _ = std::fs::remove_dir_all(files_root.join(&id));
            }
        }
        for mut pod in pods {
            if pod.state != PodState::Ready {
                continue;
            }
            let pins = [&pod.net_ns, &pod.ipc_ns, &pod.uts_ns, &pod.pid_ns];
            let pinned = pins
                .iter()
                .filter_map(|p| p.as_ref())
                .all(|p| is_nsfs(Path::new(p)));
            let infra_alive = pod.infra_pid == 0
                || crate::sandbox::infra::proc_start_time(pod.infra_pid)
                    == Some(pod.infra_start_time);
            if !pinned || !infra_alive {
                warn!(pod_id = %pod.id, "the pod's namespaces are gone (node reboot?): marking it not ready");
                pod.state = PodState::NotReady;
                self.store.put(&pod)?;
                out.lost_pods += 1;
            }
        }
        if out != Reconciled::default() {
            info!(?out, "reconciled the store with the node");
        }
        Ok(out)
    }
}

/// SIGKILLs PID 1 of the PID namespace pinned at `pin`, which ends it.
fn kill_pid_namespace_holder(pin: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(ns) = std::fs::metadata(pin) else {
        return;
    };
    if !is_nsfs(pin) {
        return;
    }
    for pid in procs() {
        let same = std::fs::metadata(format!("/proc/{pid}/ns/pid"))
            .is_ok_and(|m| m.ino() == ns.ino() && m.dev() == ns.dev());
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let is_init = status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|v| v.split_whitespace().last())
            == Some("1");
        if same && is_init {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn procs() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_generated_ids_are_touched() {
        assert!(super::is_our_id(&"a1".repeat(32)));
        assert!(!super::is_our_id("100"));
        assert!(!super::is_our_id(&"z".repeat(64)));
        assert!(!super::is_our_id(&"a".repeat(63)));
    }
}
