//! Pod networking: [`Network`] and the [`Backend`] trait its two modes
//! implement — [`builtin`] (the default: a bridge, veths, pvecri's own IPAM
//! and nftables table) and [`cni_network`] (CNI plugins) — plus what both
//! share: host-port validation and the veth and bridge naming rules.

pub(crate) mod bandwidth;
mod builtin;
pub(crate) mod cni;
mod cni_network;
mod error;
#[cfg(test)]
mod fake_cni;
pub(crate) mod ipam;
mod link;
pub(crate) mod nft;
mod sysctl;
mod tc;

pub(crate) use error::{NetworkError, NotReady};
pub(crate) use link::{bridge_self_vlans, PortVlan, MANAGED_ALIAS};
pub use tc::ifb_name;

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::{NetworkConfig, NetworkMode};
use crate::pod::record::PortMapping;
use crate::pod::PodConfig;
use crate::store::{Record, Store};
use nft::HostPort;

/// What pvecri set up for one pod; the store's record of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PodNetwork {
    pub pod_id: String,
    /// IPv4 first, then IPv6 when dual-stack.
    pub ips: Vec<String>,
    pub host_veth: String,
    pub host_ports: Vec<HostPort>,
}

impl Record for PodNetwork {
    const TABLE: &'static str = "pod_networks";
    fn key(&self) -> String {
        self.pod_id.clone()
    }
}

/// The pod CIDRs the kubelet last sent (`UpdateRuntimeConfig`), kept so a
/// restarted daemon uses them: the kubelet sends them once, when it
/// starts or the node's CIDR changes, not when the runtime restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct KubeletPodCidrs {
    /// As the kubelet sent them: comma separated, one per family.
    pub cidrs: String,
}

impl KubeletPodCidrs {
    const KEY: &'static str = "kubelet";
}

impl Record for KubeletPodCidrs {
    const TABLE: &'static str = "pod_cidrs";
    fn key(&self) -> String {
        Self::KEY.to_owned()
    }
}

/// The host end of a pod's veth: `pvc` and the start of the pod ID. Never
/// Proxmox's `veth<vmid>i<n>`, `tap*`, `fwbr*` or `fwln*`, and derived from
/// the ID alone so that it is found again after a crash.
pub fn host_veth_name(pod_id: &str) -> String {
    let tail: String = pod_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect();
    format!("pvc{tail}")
}

/// Deletes the host end of the veth of a pod a crash left half-made (its
/// peer goes with it), if it is there as a port of `bridge`: the kernel
/// deletes it with the pod's network namespace too, but only a moment
/// after that namespace's last pin goes, and a restart should find the
/// node as it says. Whether there was one. Blocking: it runs a netlink
/// connection on a thread of its own, so it works inside or outside an
/// async runtime.
pub(crate) fn delete_orphan_veth(pod_id: &str, bridge: &str) -> Result<bool, NetworkError> {
    let name = host_veth_name(pod_id);
    let master = std::fs::read_link(
        std::path::Path::new("/sys/class/net")
            .join(&name)
            .join("master"),
    );
    if !master.is_ok_and(|m| m.file_name() == Some(std::ffi::OsStr::new(bridge))) {
        return Ok(false);
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                    .map_err(NetworkError::Socket)?;
                rt.block_on(async { link::Netlink::host()?.delete_link(&name).await })
            })
            .join()
            .unwrap_or_else(|_| {
                Err(NetworkError::Socket(std::io::Error::other(
                    "the netlink thread panicked",
                )))
            })
    })?;
    Ok(true)
}

/// Whether `name` can be pvecri's bridge: a kernel interface name that
/// pve-firewall does not own.
pub(crate) fn is_valid_bridge_name(name: &str) -> bool {
    let proxmox_owned = ["tap", "fwbr", "fwln", "fwpr"]
        .iter()
        .any(|p| name.starts_with(p))
        || is_proxmox_veth(name);
    !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !proxmox_owned
}

/// `veth<digits>i<digits>`, the names Proxmox gives its containers' veths.
fn is_proxmox_veth(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("veth") else {
        return false;
    };
    let Some((vmid, n)) = rest.split_once('i') else {
        return false;
    };
    !vmid.is_empty()
        && !n.is_empty()
        && vmid.bytes().all(|b| b.is_ascii_digit())
        && n.bytes().all(|b| b.is_ascii_digit())
}

/// Why a pod subnet was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CidrError {
    #[error("{0:?} is not a CIDR such as 10.77.0.0/16")]
    Syntax(String),
    #[error("{text:?} is not an {family} subnet")]
    Family { text: String, family: &'static str },
    #[error("{0:?} is too small for a gateway and a pod")]
    TooSmall(String),
}

/// Parses a pod subnet of the given family with room for at least one pod.
pub(crate) fn parse_pod_cidr(text: &str, ipv6: bool) -> Result<IpNet, CidrError> {
    let net: IpNet = text
        .trim()
        .parse()
        .map_err(|_| CidrError::Syntax(text.to_owned()))?;
    if net.addr().is_ipv6() != ipv6 {
        return Err(CidrError::Family {
            text: text.to_owned(),
            family: if ipv6 { "IPv6" } else { "IPv4" },
        });
    }
    if net.prefix_len() + 2 > net.max_prefix_len() {
        return Err(CidrError::TooSmall(text.to_owned()));
    }
    Ok(net.trunc())
}

/// What a pod network mode does. [`Network`] holds one, chosen by
/// `network.mode`: [`builtin::BuiltinNetwork`] or
/// [`cni_network::CniNetwork`].
#[async_trait::async_trait]
pub(crate) trait Backend: Send + Sync {
    /// `Ok` when pods can get a network, else the reason.
    fn readiness(&self) -> Result<(), NotReady>;
    /// Asks the network again whether it is ready, where asking costs
    /// something (CNI STATUS) and is therefore not part of
    /// [`Backend::readiness`].
    async fn refresh_readiness(&self) {}
    /// Verifies that the pod's network is still as it was set up (CNI
    /// CHECK); `None` when this mode has nothing to verify for the pod.
    async fn check_pod(&self, _pod_id: &str) -> Option<Result<(), String>> {
        None
    }
    /// A pod's CNI attachment was released (DEL ran).
    fn released(&self) {}
    /// At daemon start, once stale CNI attachments are released: release
    /// what pods that no longer exist left and set up the node side.
    /// Failure leaves [`Backend::readiness`] `Err` with the reason.
    async fn start(&self, live_pods: &HashSet<String>);
    /// Refuses, before anything of the pod is made, what `attach` would
    /// refuse in the pod's config (its bandwidth annotations).
    fn check(&self, pod: &PodConfig) -> Result<(), NetworkError>;
    /// Takes the kubelet's pod subnets (validated, at most one per
    /// family); `true` when they changed anything.
    async fn set_pod_cidrs(&self, nets: &[IpNet]) -> Result<bool, NetworkError>;
    /// Gives the pod in `netns` its network; returns its IPs, IPv4 first.
    /// [`Network::attach`] has checked readiness.
    async fn attach(
        &self,
        pod_id: &str,
        netns: &Path,
        pod: &PodConfig,
    ) -> Result<Vec<String>, NetworkError>;
    /// Undoes [`Backend::attach`]. Idempotent; also cleans up after a crash
    /// half-way through attach.
    async fn detach(&self, pod_id: &str) -> Result<(), NetworkError>;
    /// On daemon stop.
    async fn shutdown(&self);
}

/// The node's pod network.
pub(crate) struct Network {
    store: Arc<Store>,
    /// Runs DEL for attachments a CNI-mode run stored, whatever the mode now.
    cni: cni::Runner,
    backend: Box<dyn Backend>,
}

impl Network {
    pub(crate) fn new(config: &NetworkConfig, store: Arc<Store>) -> Self {
        let cni = cni::Runner::new(config.cni_bin_dirs.clone());
        let backend: Box<dyn Backend> = match config.mode {
            NetworkMode::Builtin => {
                let v4 =
                    parse_pod_cidr(&config.pod_cidr, false).expect("validated with the config");
                let v6 = (!config.pod_cidr_v6.is_empty()).then(|| {
                    parse_pod_cidr(&config.pod_cidr_v6, true).expect("validated with the config")
                });
                Box::new(builtin::BuiltinNetwork::new(config, store.clone(), v4, v6))
            }
            NetworkMode::Cni => Box::new(cni_network::CniNetwork::new(
                config.cni_conf_dir.clone(),
                cni.clone(),
                store.clone(),
            )),
        };
        Self {
            store,
            cni,
            backend,
        }
    }

    /// `Ok` when pods can get a network, else the reason.
    pub(crate) fn readiness(&self) -> Result<(), NotReady> {
        self.backend.readiness()
    }

    /// Brings [`Network::readiness`] up to date where that needs plugins
    /// to run (CNI STATUS, at most once per interval).
    pub(crate) async fn refresh_readiness(&self) {
        self.backend.refresh_readiness().await;
    }

    /// Verifies the pod's network (CNI CHECK); `None` when there is
    /// nothing to verify in this mode or for this pod.
    pub(crate) async fn check_pod(&self, pod_id: &str) -> Option<Result<(), String>> {
        self.backend.check_pod(pod_id).await
    }

    /// Runs CNI DEL for pods that no longer exist (in either mode: the node
    /// may have run CNI mode before), then starts the backend.
    pub(crate) async fn start(&self, live_pods: &HashSet<String>) {
        for a in self.store.list::<cni::CniAttachment>().unwrap_or_default() {
            if !live_pods.contains(&a.pod_id) {
                info!(pod_id = %a.pod_id, "running CNI DEL for a pod that no longer exists");
                // The backend's start GCs once these are gone.
                let released = cni_network::release(&self.store, &self.cni, &a.pod_id).await;
                if let Some(Err(e)) = released {
                    warn!(pod_id = %a.pod_id, error = %crate::errors::chain(&e), "cannot release a stale pod network");
                }
            }
        }
        match self.store.get::<KubeletPodCidrs>(KubeletPodCidrs::KEY) {
            Ok(Some(stored)) => match self.apply_pod_cidrs(&stored.cidrs).await {
                Ok(()) => {
                    info!(pod_cidr = %stored.cidrs, "pod CIDR the kubelet sent before the restart")
                }
                Err(e) => {
                    warn!(pod_cidr = %stored.cidrs, error = %crate::errors::chain(&e), "cannot use the stored pod CIDR; the config's applies")
                }
            },
            Ok(None) => {}
            Err(e) => warn!(error = %crate::errors::chain(&e), "cannot read the stored pod CIDR"),
        }
        self.backend.start(live_pods).await;
    }

    /// Replaces the pod subnets with the kubelet's pod CIDRs (comma
    /// separated, at most one per family). Pods keep their addresses.
    /// They are stored and used again after a restart.
    pub(crate) async fn set_pod_cidrs(&self, cidrs: &str) -> Result<(), NetworkError> {
        self.apply_pod_cidrs(cidrs).await?;
        self.store.put(&KubeletPodCidrs {
            cidrs: cidrs.to_owned(),
        })?;
        Ok(())
    }

    async fn apply_pod_cidrs(&self, cidrs: &str) -> Result<(), NetworkError> {
        let mut nets = Vec::new();
        for cidr in cidrs.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let net =
                parse_pod_cidr(cidr, cidr.contains(':')).map_err(|e| NetworkError::Invalid {
                    field: "runtime_config.network_config.pod_cidr",
                    message: e.to_string(),
                })?;
            nets.push(net);
        }
        if self.backend.set_pod_cidrs(&nets).await? {
            info!(pod_cidr = %cidrs, "pod CIDR set by the kubelet");
        }
        Ok(())
    }

    /// Refuses, before anything of the pod is made, a config its network
    /// could not be given in the current mode.
    pub(crate) fn check(&self, pod: &PodConfig) -> Result<(), NetworkError> {
        self.backend.check(pod)
    }

    /// Gives the pod in `netns` its network; returns its IPs, IPv4 first.
    pub(crate) async fn attach(
        &self,
        pod_id: &str,
        netns: &Path,
        pod: &PodConfig,
    ) -> Result<Vec<String>, NetworkError> {
        self.refresh_readiness().await;
        self.readiness().map_err(NetworkError::NotReady)?;
        self.backend.attach(pod_id, netns, pod).await
    }

    /// On daemon stop; see the backends.
    pub(crate) async fn shutdown(&self) {
        self.backend.shutdown().await;
    }

    /// Releases the pod's network: a stored CNI attachment by DEL, else
    /// what the backend made. Idempotent.
    pub(crate) async fn detach(&self, pod_id: &str) -> Result<(), NetworkError> {
        if let Some(result) = cni_network::release(&self.store, &self.cni, pod_id).await {
            self.backend.released();
            return result;
        }
        self.backend.detach(pod_id).await
    }
}

/// The pod's bandwidth annotations as limits within `range`; an
/// `InvalidArgument` naming the annotation otherwise.
fn pod_bandwidth(
    pod: &PodConfig,
    range: bandwidth::Range,
) -> Result<Option<bandwidth::Bandwidth>, NetworkError> {
    bandwidth::from_annotations(&pod.annotations, range).map_err(|message| NetworkError::Invalid {
        field: "config.annotations",
        message,
    })
}

/// The DNAT entries of a pod's port mappings; mappings without a host port
/// need none (the pod IP is reachable as it is). A mapping without a host
/// IP is made for each of the pod's families, one with a host IP for that
/// address's family.
fn host_ports(
    mappings: &[PortMapping],
    pod_v4: IpAddr,
    pod_v6: Option<IpAddr>,
) -> Result<Vec<HostPort>, NetworkError> {
    let invalid = |message: String| NetworkError::Invalid {
        field: "config.port_mappings",
        message,
    };
    let mut out: Vec<HostPort> = Vec::new();
    for m in mappings {
        let protocol = m.protocol;
        let container_port = u16::try_from(m.container_port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid(format!("container_port {} is not a port", m.container_port)))?;
        if m.host_port == 0 {
            continue;
        }
        let host_port = u16::try_from(m.host_port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid(format!("host_port {} is not a port", m.host_port)))?;
        let host_ip = match m.host_ip.trim() {
            "" | "0.0.0.0" | "::" => None,
            text => Some(
                text.parse::<IpAddr>()
                    .map_err(|_| invalid(format!("host_ip {text:?} is not an IP address")))?,
            ),
        };
        let targets: Vec<IpAddr> = match host_ip {
            None => std::iter::once(pod_v4).chain(pod_v6).collect(),
            Some(IpAddr::V4(_)) => vec![pod_v4],
            Some(ip @ IpAddr::V6(_)) => vec![pod_v6
                .ok_or_else(|| invalid(format!("host_ip {ip}: the pod has no IPv6 address")))?],
        };
        for pod_ip in targets {
            let same = |p: &HostPort| {
                p.protocol == protocol
                    && p.host_port == host_port
                    && p.host_ip == host_ip
                    && p.pod_ip.is_ipv6() == pod_ip.is_ipv6()
            };
            if out.iter().any(same) {
                return Err(invalid(format!(
                    "host port {host_port} is mapped twice for the same protocol and address"
                )));
            }
            out.push(HostPort {
                protocol,
                host_ip,
                host_port,
                pod_ip,
                container_port,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::record::Proto;
    use std::net::Ipv4Addr;

    #[test]
    fn veth_names_stay_clear_of_proxmox_and_fit_the_kernel() {
        let name = host_veth_name("0123456789abcdef0123");
        assert_eq!(name, "pvc0123456789ab");
        assert!(name.len() < libc::IFNAMSIZ);
        assert!(!is_proxmox_veth(&name));
        assert!(is_proxmox_veth("veth100i0"));
        assert!(!is_proxmox_veth("vethx"));
    }

    #[test]
    fn bridge_names() {
        assert!(is_valid_bridge_name("pvecri0"));
        assert!(is_valid_bridge_name("vmbr1"));
        for bad in [
            "",
            "tap100i0",
            "fwbr100i0",
            "veth100i0",
            "a/b",
            "sixteen-chars-xx",
        ] {
            assert!(!is_valid_bridge_name(bad), "{bad}");
        }
    }

    #[test]
    fn pod_cidrs() {
        assert_eq!(
            parse_pod_cidr("10.77.1.9/16", false).unwrap().to_string(),
            "10.77.0.0/16"
        );
        assert!(parse_pod_cidr("10.77.0.0/31", false).is_err());
        assert!(parse_pod_cidr("fd00::/64", false).is_err());
        assert!(parse_pod_cidr("fd00::/64", true).is_ok());
        assert!(parse_pod_cidr("nonsense", true).is_err());
    }

    fn mapping(protocol: i32, container_port: i32, host_port: i32, host_ip: &str) -> PortMapping {
        PortMapping {
            protocol: Proto::from_cri(protocol).unwrap(),
            container_port,
            host_port,
            host_ip: host_ip.to_owned(),
        }
    }

    #[test]
    fn port_mappings_become_dnat_entries() {
        let ip: IpAddr = "10.77.0.2".parse().unwrap();
        let out = host_ports(
            &[
                mapping(0, 80, 8000, ""),
                mapping(1, 53, 5353, "127.0.0.1"),
                mapping(0, 9000, 0, ""),
            ],
            ip,
            None,
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].protocol, Proto::Udp);
        assert_eq!(out[1].host_ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        for bad in [
            mapping(0, 0, 8000, ""),
            mapping(0, 80, 70000, ""),
            mapping(0, 80, 8000, "nope"),
            // An IPv6 host address for a pod without an IPv6 address.
            mapping(0, 80, 8000, "fd00::1"),
        ] {
            let err = host_ports(&[bad], ip, None).unwrap_err().to_string();
            assert!(err.contains("config.port_mappings"), "{err}");
        }
        let twice = host_ports(
            &[mapping(0, 80, 8000, ""), mapping(0, 81, 8000, "")],
            ip,
            None,
        );
        assert!(twice.is_err());
    }

    #[test]
    fn bandwidth_annotations_are_checked_per_mode_as_the_callers_fault() {
        let pod = |value: &str| PodConfig {
            annotations: [(bandwidth::EGRESS.to_owned(), value.to_owned())].into(),
            ..PodConfig::default()
        };
        // 40 Gbit/s: passed on to CNI plugins, beyond what built-in TBF takes.
        assert!(pod_bandwidth(&pod("40G"), bandwidth::CNI_RANGE).is_ok());
        for range in [bandwidth::BUILTIN_RANGE, bandwidth::CNI_RANGE] {
            let bad = if range == bandwidth::CNI_RANGE {
                "2E"
            } else {
                "40G"
            };
            for value in [bad, "fast", "0"] {
                let err = pod_bandwidth(&pod(value), range).unwrap_err();
                assert!(
                    matches!(&err, NetworkError::Invalid { field: "config.annotations", message } if message.starts_with(bandwidth::EGRESS)),
                    "{value}: {err}"
                );
            }
        }
        let limits = pod_bandwidth(&pod("10Mi"), bandwidth::BUILTIN_RANGE).unwrap();
        assert_eq!(limits.and_then(|b| b.egress), Some(10 << 20));
        let none = pod_bandwidth(&PodConfig::default(), bandwidth::BUILTIN_RANGE).unwrap();
        assert_eq!(none, None);
    }

    #[test]
    fn dual_stack_pods_get_a_mapping_per_family() {
        let v4: IpAddr = "10.77.0.2".parse().unwrap();
        let v6: IpAddr = "fd00:77::2".parse().unwrap();
        let out = host_ports(
            &[
                mapping(0, 80, 8000, ""),
                mapping(0, 81, 8001, "fd00::1"),
                mapping(0, 82, 8002, "192.0.2.1"),
            ],
            v4,
            Some(v6),
        )
        .unwrap();
        let pods: Vec<(u16, IpAddr)> = out.iter().map(|p| (p.host_port, p.pod_ip)).collect();
        assert_eq!(pods, [(8000, v4), (8000, v6), (8001, v6), (8002, v4)]);
    }
}

#[cfg(test)]
mod facade_tests {
    //! [`Network`]'s own logic against a recording fake backend: no root,
    //! no netlink, no plugins.
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl Backend for Arc<Fake> {
        fn readiness(&self) -> Result<(), NotReady> {
            Ok(())
        }
        async fn start(&self, live_pods: &HashSet<String>) {
            let mut live: Vec<_> = live_pods.iter().cloned().collect();
            live.sort();
            self.calls.lock().unwrap().push(format!("start {live:?}"));
        }
        fn check(&self, _pod: &PodConfig) -> Result<(), NetworkError> {
            Ok(())
        }
        async fn set_pod_cidrs(&self, nets: &[IpNet]) -> Result<bool, NetworkError> {
            self.calls.lock().unwrap().push(format!("cidrs {nets:?}"));
            Ok(true)
        }
        async fn attach(
            &self,
            pod_id: &str,
            _netns: &Path,
            _pod: &PodConfig,
        ) -> Result<Vec<String>, NetworkError> {
            self.calls.lock().unwrap().push(format!("attach {pod_id}"));
            Ok(vec!["10.0.0.2".into()])
        }
        async fn detach(&self, pod_id: &str) -> Result<(), NetworkError> {
            self.calls.lock().unwrap().push(format!("detach {pod_id}"));
            Ok(())
        }
        async fn shutdown(&self) {
            self.calls.lock().unwrap().push("shutdown".into());
        }
    }

    fn network(dir: &Path) -> (Network, Arc<Fake>) {
        let fake = Arc::new(Fake::default());
        let store = Arc::new(Store::open(&dir.join("store.redb")).unwrap());
        let network = Network {
            store,
            cni: cni::Runner::new(vec![]),
            backend: Box::new(fake.clone()),
        };
        (network, fake)
    }

    fn calls(fake: &Fake) -> Vec<String> {
        fake.calls.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn pod_cidrs_are_validated_before_the_backend_sees_them() {
        let dir = tempfile::tempdir().unwrap();
        let (network, fake) = network(dir.path());
        let err = network
            .set_pod_cidrs("10.1.0.0/16,nonsense")
            .await
            .unwrap_err();
        assert!(
            matches!(err, NetworkError::Invalid { field, .. } if field.ends_with("pod_cidr")),
            "{err}"
        );
        assert!(calls(&fake).is_empty(), "{:?}", calls(&fake));
        network
            .set_pod_cidrs(" 10.1.0.0/16 , fd01::/64 ")
            .await
            .unwrap();
        assert_eq!(calls(&fake), ["cidrs [10.1.0.0/16, fd01::/64]"]);
    }

    #[tokio::test]
    async fn attach_detach_start_and_shutdown_reach_the_backend() {
        let dir = tempfile::tempdir().unwrap();
        let (network, fake) = network(dir.path());
        let ips = network
            .attach("p1", Path::new("/nonexistent"), &PodConfig::default())
            .await
            .unwrap();
        assert_eq!(ips, ["10.0.0.2"]);
        // No stored CNI attachment: the backend releases what it made.
        network.detach("p1").await.unwrap();
        network.start(&HashSet::from(["p2".to_owned()])).await;
        network.shutdown().await;
        assert_eq!(
            calls(&fake),
            ["attach p1", "detach p1", "start [\"p2\"]", "shutdown"]
        );
    }
}
