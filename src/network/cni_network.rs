//! CNI mode as a [`Backend`]: ADD on attach, DEL on detach, with the
//! attachment stored around each so a crash is followed by the right DEL
//! (see [`super::cni`] for the plugin runner and the stored record).
//!
//! The verbs without a pod of their own:
//!
//! - STATUS of the current list decides readiness next to the list's
//!   presence. It runs when the runtime's Status or a RunPodSandbox finds
//!   the last answer older than [`STATUS_EVERY`] or the list changed, so the
//!   kubelet's polling costs at most one run per interval.
//! - CHECK of every stored attachment at daemon start, and of one pod
//!   whenever a verbose PodSandboxStatus (`crictl inspectp`) asks. Not on
//!   the kubelet's own PodSandboxStatus calls, which come every second per
//!   pod: plugin runs there would be the mode's largest cost. A failure is
//!   logged, counted (`pvecri_cni_operations_total`) and shown in the
//!   verbose status; the pod is left running.
//! - GC of the current list and of every other list an attachment was made
//!   with (two versions of one network both run), naming the attachments
//!   of pods that still exist under the network's name, once at daemon
//!   start after stale attachments were released, and [`GC_DELAY`] after a
//!   pod's attachment was released (coalesced). It holds out ADD while it
//!   runs: a reservation made between listing the valid attachments and
//!   the plugin's run would be released.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tracing::{info, warn};

use super::cni::{self, CniAttachment, Runner};
use super::{bandwidth, host_ports, pod_bandwidth, Backend, NetworkError, NotReady};
use crate::pod::PodConfig;
use crate::store::Store;

/// A STATUS answer younger than this is reused.
const STATUS_EVERY: Duration = Duration::from_secs(10);
/// GC runs this long after the release that asked for it, so that the
/// pods of one drain share a run.
const GC_DELAY: Duration = Duration::from_secs(2);

/// Pods networked by the plugins of the first config in `conf_dir`.
pub(super) struct CniNetwork {
    inner: Arc<Inner>,
}

struct Inner {
    conf_dir: PathBuf,
    runner: Runner,
    store: Arc<Store>,
    /// The last STATUS answer and the list it was for.
    status: Mutex<Option<StatusAnswer>>,
    /// One STATUS run at a time.
    status_run: tokio::sync::Mutex<()>,
    /// ADD holds it shared, GC exclusively.
    adds: tokio::sync::RwLock<()>,
    /// A GC is scheduled and has not started.
    gc_pending: AtomicBool,
}

struct StatusAnswer {
    conf: cni::ConfList,
    at: Instant,
    result: Result<(), NotReady>,
}

impl CniNetwork {
    pub(super) fn new(conf_dir: PathBuf, runner: Runner, store: Arc<Store>) -> Self {
        Self {
            inner: Arc::new(Inner {
                conf_dir,
                runner,
                store,
                status: Mutex::new(None),
                status_run: tokio::sync::Mutex::new(()),
                adds: tokio::sync::RwLock::new(()),
                gc_pending: AtomicBool::new(false),
            }),
        }
    }
}

impl Inner {
    /// Runs STATUS of the current list unless the last answer for it is
    /// recent; logs when readiness changes.
    async fn refresh_status(&self, force: bool) {
        let _one = self.status_run.lock().await;
        let Ok(conf) = cni::load(&self.conf_dir) else {
            return;
        };
        let previous = {
            let answer = self.status.lock().expect("status lock poisoned");
            match answer.as_ref() {
                Some(a) if a.conf == conf && !force && a.at.elapsed() < STATUS_EVERY => return,
                Some(a) if a.conf == conf => Some(a.result.clone()),
                _ => None,
            }
        };
        let result = self
            .runner
            .status(&conf)
            .await
            .map_err(|e| NotReady::from_error(&e));
        if previous.as_ref() != Some(&result) {
            match &result {
                Ok(()) if conf.wants_status() => {
                    info!(network = %conf.name, "CNI plugins report ready (STATUS)")
                }
                Ok(()) => {}
                Err(why) => {
                    warn!(network = %conf.name, error = %why, "CNI plugins report not ready (STATUS)")
                }
            }
        }
        *self.status.lock().expect("status lock poisoned") = Some(StatusAnswer {
            conf,
            at: Instant::now(),
            result,
        });
    }

    /// The last STATUS answer, if it is for the current list `conf`.
    fn status_of(&self, conf: &cni::ConfList) -> Result<(), NotReady> {
        match self.status.lock().expect("status lock poisoned").as_ref() {
            Some(a) if a.conf == *conf => a.result.clone(),
            _ => Ok(()),
        }
    }

    /// GC of the current list and of every list a stored attachment was
    /// made with, each told the attachments its network still has.
    async fn gc(&self) {
        let _no_adds = self.adds.write().await;
        let attachments = match self.store.list::<CniAttachment>() {
            Ok(list) => list,
            Err(e) => {
                warn!(error = %crate::errors::chain(&e), "CNI GC skipped: cannot list attachments");
                return;
            }
        };
        let current = cni::load(&self.conf_dir).ok();
        let lists = gc_lists(current, &attachments);
        for conf in lists.iter().filter(|c| c.wants_gc()) {
            // Plugins keep their state per network name (host-local's
            // reservations, for one), so every attachment of the name is
            // valid, whichever version of the list made it.
            let valid: Vec<String> = attachments
                .iter()
                .filter(|a| a.conf.name == conf.name)
                .map(|a| a.pod_id.clone())
                .collect();
            match self.runner.gc(conf, &valid).await {
                Ok(()) => {
                    info!(network = %conf.name, config = %conf.path.display(), valid = valid.len(), "CNI GC done")
                }
                Err(e) => {
                    warn!(network = %conf.name, config = %conf.path.display(), error = %crate::errors::chain(&e), "CNI GC failed")
                }
            }
        }
    }

    /// CHECK of the pod's stored attachment: `None` when it has none (or
    /// its list does not take CHECK), else the outcome, logged when bad.
    async fn check_pod(&self, pod_id: &str) -> Option<Result<(), String>> {
        let attachment = self
            .store
            .list::<CniAttachment>()
            .ok()?
            .into_iter()
            .find(|a| a.pod_id == pod_id)?;
        if attachment.result.is_none() || !attachment.conf.wants_check() {
            return None;
        }
        let result = self.runner.check(&attachment).await.map_err(|e| {
            let why = crate::errors::chain(&e);
            warn!(pod_id, network = %attachment.conf.name, error = %why, "CNI CHECK failed: the pod's network is not as ADD left it");
            why
        });
        Some(result)
    }
}

impl CniNetwork {
    async fn add(
        &self,
        pod_id: &str,
        netns: &Path,
        pod: &PodConfig,
    ) -> Result<Vec<String>, NetworkError> {
        let inner = &self.inner;
        let conf = cni::load(&inner.conf_dir)?;
        let bandwidth = pod_bandwidth(pod, bandwidth::CNI_RANGE)?;
        // The plugins map the host ports to the pod's addresses themselves;
        // these entries only carry the mappings as capability args.
        let host_ports = host_ports(
            &pod.port_mappings,
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)),
        )?;
        let mut attachment = cni::CniAttachment {
            pod_id: pod_id.to_owned(),
            netns: netns.display().to_string(),
            args: format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={pod_id};K8S_POD_UID={}",
                pod.namespace, pod.name, pod.uid
            ),
            conf,
            host_ports,
            dns: pod.dns.clone(),
            bandwidth,
            result: None,
        };
        // Not while GC runs: it could release what this ADD reserves.
        let _adding = inner.adds.read().await;
        // Stored first: a crash during ADD is followed by DEL at start.
        inner.store.put(&attachment)?;
        match inner.runner.add(&attachment).await {
            Ok(result) => {
                let ips = cni::result_ips(&result);
                attachment.result = Some(result);
                inner.store.put(&attachment)?;
                Ok(ips)
            }
            Err(e) => {
                let undone = release(&inner.store, &inner.runner, pod_id).await;
                if let Some(Err(cleanup)) = undone {
                    warn!(pod_id, error = %crate::errors::chain(&cleanup), "CNI DEL after a failed ADD failed");
                }
                Err(e.into())
            }
        }
    }
}

/// The lists GC runs for: the current one, then every other list a stored
/// attachment was made with, each once. Two lists of one name that differ
/// (a plugin added or removed since, or its options changed) both run:
/// the plugins of either may hold state for the network.
fn gc_lists(current: Option<cni::ConfList>, attachments: &[CniAttachment]) -> Vec<cni::ConfList> {
    let mut lists: Vec<cni::ConfList> = current.into_iter().collect();
    for a in attachments {
        // Where a list was read from is no part of what its plugins do.
        if !lists.iter().any(|l| same_list(l, &a.conf)) {
            lists.push(a.conf.clone());
        }
    }
    lists
}

/// Whether two lists run the same plugins the same way.
fn same_list(a: &cni::ConfList, b: &cni::ConfList) -> bool {
    a.name == b.name
        && a.cni_version == b.cni_version
        && a.plugins == b.plugins
        && a.disable_gc == b.disable_gc
}

/// Runs DEL for the pod's stored attachment, if it has one, and forgets
/// the attachment; `None` when the pod has none. The record goes even when
/// a plugin fails: plugins must treat a repeated DEL as success, so
/// retrying would change nothing.
pub(super) async fn release(
    store: &Store,
    runner: &Runner,
    pod_id: &str,
) -> Option<Result<(), NetworkError>> {
    let attachment = match store.list::<CniAttachment>() {
        Ok(list) => list.into_iter().find(|a| a.pod_id == pod_id)?,
        Err(e) => return Some(Err(e.into())),
    };
    let result = runner.del(&attachment).await;
    if let Err(e) = store.delete::<CniAttachment>(pod_id) {
        return Some(Err(e.into()));
    }
    Some(result.map_err(NetworkError::from))
}

#[async_trait::async_trait]
impl Backend for CniNetwork {
    /// Looked up each time: a config installed later counts at once. Then
    /// the plugins' last STATUS answer for it, if any.
    fn readiness(&self) -> Result<(), NotReady> {
        let conf = cni::load(&self.inner.conf_dir).map_err(|e| NotReady::from_error(&e))?;
        self.inner.status_of(&conf)
    }

    async fn refresh_readiness(&self) {
        self.inner.refresh_status(false).await;
    }

    /// Nothing of the node's to set up: the plugins do it per pod. Asks
    /// STATUS, CHECKs the pods that kept their attachments over the
    /// restart, then GCs with those attachments as the valid ones.
    async fn start(&self, _live_pods: &HashSet<String>) {
        let inner = &self.inner;
        inner.refresh_status(true).await;
        let pods: Vec<String> = inner
            .store
            .list::<CniAttachment>()
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.pod_id)
            .collect();
        let mut failed = 0;
        for pod_id in &pods {
            if let Some(Err(_)) = inner.check_pod(pod_id).await {
                failed += 1;
            }
        }
        if failed > 0 {
            warn!(
                failed,
                checked = pods.len(),
                "CNI CHECK found pods whose network is not as ADD left it"
            );
        }
        inner.gc().await;
    }

    async fn check_pod(&self, pod_id: &str) -> Option<Result<(), String>> {
        self.inner.check_pod(pod_id).await
    }

    /// A GC [`GC_DELAY`] from now, unless one is already waiting.
    fn released(&self) {
        if self.inner.gc_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            tokio::time::sleep(GC_DELAY).await;
            inner.gc_pending.store(false, Ordering::Release);
            inner.gc().await;
        });
    }

    /// The plugins' `bandwidth` capability gets the annotations as the
    /// kubelet would pass them; pvecri shapes nothing itself.
    fn check(&self, pod: &PodConfig) -> Result<(), NetworkError> {
        pod_bandwidth(pod, bandwidth::CNI_RANGE).map(|_| ())
    }

    /// The plugins allocate addresses with their own IPAM config, so the
    /// kubelet's pod CIDR changes nothing here.
    async fn set_pod_cidrs(&self, _nets: &[IpNet]) -> Result<bool, NetworkError> {
        Ok(false)
    }

    async fn attach(
        &self,
        pod_id: &str,
        netns: &Path,
        pod: &PodConfig,
    ) -> Result<Vec<String>, NetworkError> {
        self.add(pod_id, netns, pod).await
    }

    /// A pod with a stored attachment was released by [`release`] already;
    /// one without has nothing to undo.
    async fn detach(&self, pod_id: &str) -> Result<(), NetworkError> {
        release(&self.inner.store, &self.inner.runner, pod_id)
            .await
            .unwrap_or(Ok(()))
    }

    async fn shutdown(&self) {}
}

#[cfg(test)]
mod tests {
    //! The verbs without a pod, through [`super::super::Network`] as the
    //! runtime drives them, against recording plugins.
    use super::*;
    use crate::network::fake_cni::FakePlugins;
    use crate::network::Network;

    fn network(fake: &FakePlugins, dir: &Path) -> Network {
        let store = Arc::new(Store::open(&dir.join("store.redb")).unwrap());
        Network {
            store: store.clone(),
            cni: fake.runner(),
            backend: Box::new(CniNetwork::new(fake.conf_dir(), fake.runner(), store)),
        }
    }

    fn write_conf(fake: &FakePlugins, version: &str, extra: &str) {
        let text = format!(
            r#"{{"cniVersion":"{version}","name":"net","plugins":[{{"type":"a"{extra}}},{{"type":"b"}}]}}"#
        );
        std::fs::write(fake.conf_dir().join("10-net.conflist"), text).unwrap();
    }

    fn verbs(log: &[String]) -> Vec<String> {
        log.iter()
            .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
            .collect()
    }

    fn valid(fake: &FakePlugins, plugin: &str) -> Vec<String> {
        fake.stdin(plugin, "GC")["cni.dev/valid-attachments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["containerID"].as_str().unwrap().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn readiness_follows_status_and_gc_names_the_pods_still_attached() {
        let fake = FakePlugins::new(&["a", "b"]);
        let dir = tempfile::tempdir().unwrap();
        let network = network(&fake, dir.path());
        write_conf(&fake, "1.1.0", "");
        fake.fail("STATUS", true);
        network.refresh_readiness().await;
        let why = network.readiness().unwrap_err().0;
        assert!(
            why.contains("STATUS") && why.contains("told to fail"),
            "{why}"
        );
        let err = network
            .attach("p0", Path::new("/run/netns/p0"), &PodConfig::default())
            .await
            .unwrap_err();
        assert!(matches!(err, NetworkError::NotReady(_)), "{err}");
        // A changed list is asked again at once.
        fake.fail("STATUS", false);
        write_conf(&fake, "1.1.0", r#","mtu":1400"#);
        network.refresh_readiness().await;
        network.readiness().unwrap();
        fake.take_log();

        for pod in ["p1", "p2", "p3"] {
            let netns = PathBuf::from(format!("/run/netns/{pod}"));
            let ips = network
                .attach(pod, &netns, &PodConfig::default())
                .await
                .unwrap();
            assert_eq!(ips, ["10.9.0.2"]);
        }
        assert_eq!(network.check_pod("p2").await, Some(Ok(())));
        fake.fail("CHECK", true);
        let failed = network.check_pod("p2").await.unwrap().unwrap_err();
        assert!(failed.contains("told to fail"), "{failed}");
        fake.fail("CHECK", false);
        assert_eq!(network.check_pod("nope").await, None);
        fake.take_log();

        // A release schedules one GC, which names the pods left.
        network.detach("p1").await.unwrap();
        tokio::time::sleep(GC_DELAY + Duration::from_secs(1)).await;
        assert_eq!(
            verbs(&fake.take_log()),
            ["b DEL id=p1", "a DEL id=p1", "a GC id=", "b GC id="]
        );
        assert_eq!(valid(&fake, "a"), ["p2", "p3"]);

        // Daemon start: DEL for the pod that is gone, then STATUS, CHECK of
        // the pods kept, and GC naming them.
        network.start(&HashSet::from(["p2".to_owned()])).await;
        assert_eq!(
            verbs(&fake.take_log()),
            [
                "b DEL id=p3",
                "a DEL id=p3",
                "a STATUS id=",
                "b STATUS id=",
                "a CHECK id=p2",
                "b CHECK id=p2",
                "a GC id=",
                "b GC id="
            ]
        );
        assert_eq!(valid(&fake, "b"), ["p2"]);
    }

    #[tokio::test]
    async fn gc_runs_every_version_of_a_network_with_all_its_pods_valid() {
        let fake = FakePlugins::new(&["a", "b", "c"]);
        let dir = tempfile::tempdir().unwrap();
        let network = network(&fake, dir.path());
        let conf = |plugins: &str| {
            let text = format!(r#"{{"cniVersion":"1.1.0","name":"net","plugins":[{plugins}]}}"#);
            std::fs::write(fake.conf_dir().join("10-net.conflist"), text).unwrap();
        };
        conf(r#"{"type":"a"},{"type":"b"}"#);
        network
            .attach("p1", Path::new("/run/netns/p1"), &PodConfig::default())
            .await
            .unwrap();
        // The list changes under the same name: `b` is replaced by `c`.
        conf(r#"{"type":"a"},{"type":"c"}"#);
        network
            .attach("p2", Path::new("/run/netns/p2"), &PodConfig::default())
            .await
            .unwrap();
        fake.take_log();
        network
            .start(&HashSet::from(["p1".to_owned(), "p2".to_owned()]))
            .await;
        let gc: Vec<String> = verbs(&fake.take_log())
            .into_iter()
            .filter(|l| l.contains(" GC "))
            .collect();
        // The current list first, then the one p1 was made with; `b` has
        // state for p1 that only GC of the old list reaches.
        assert_eq!(gc, ["a GC id=", "c GC id=", "a GC id=", "b GC id="]);
        // Both pods are the network's, whichever list made them.
        assert_eq!(valid(&fake, "b"), ["p1", "p2"]);
        assert_eq!(valid(&fake, "c"), ["p1", "p2"]);
    }

    #[test]
    fn a_list_read_from_another_file_is_not_gcd_twice() {
        let list = |path: &str, plugins: serde_json::Value| cni::ConfList {
            path: PathBuf::from(path),
            name: "net".into(),
            cni_version: "1.1.0".into(),
            plugins: plugins.as_array().unwrap().clone(),
            disable_check: false,
            disable_gc: false,
        };
        let attachment = |pod_id: &str, conf: &cni::ConfList| CniAttachment {
            pod_id: pod_id.into(),
            netns: String::new(),
            args: String::new(),
            conf: conf.clone(),
            host_ports: vec![],
            dns: None,
            bandwidth: None,
            result: None,
        };
        let current = list(
            "/etc/cni/net.d/10-net.conflist",
            serde_json::json!([{"type":"a"}]),
        );
        let renamed = list(
            "/etc/cni/net.d/05-net.conflist",
            serde_json::json!([{"type":"a"}]),
        );
        let older = list(
            "/etc/cni/net.d/10-net.conflist",
            serde_json::json!([{"type":"a","mtu":1400}]),
        );
        let stored = [
            attachment("p1", &renamed),
            attachment("p2", &older),
            attachment("p3", &older),
        ];
        assert_eq!(
            gc_lists(Some(current.clone()), &stored),
            [current, older.clone()]
        );
        // No current list: the stored ones still get GC.
        assert_eq!(gc_lists(None, &stored), [renamed, older]);
    }

    #[tokio::test]
    async fn a_list_before_1_1_gets_neither_status_nor_gc() {
        let fake = FakePlugins::new(&["a", "b"]);
        let dir = tempfile::tempdir().unwrap();
        let network = network(&fake, dir.path());
        write_conf(&fake, "0.3.1", "");
        fake.fail("STATUS", true);
        network.refresh_readiness().await;
        network.readiness().unwrap();
        network
            .attach("p1", Path::new("/run/netns/p1"), &PodConfig::default())
            .await
            .unwrap();
        // 0.3.1 has no CHECK either.
        assert_eq!(network.check_pod("p1").await, None);
        network.start(&HashSet::from(["p1".to_owned()])).await;
        assert_eq!(verbs(&fake.take_log()), ["a ADD id=p1", "b ADD id=p1"]);
    }
}
