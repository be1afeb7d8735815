//! Pod networking.
//!
//! Built-in mode (the default): a Linux bridge on the node (pvecri's own
//! `pvecri0`, or an existing one such as Proxmox's `vmbr1`) carrying the
//! gateway address of the pod subnet; per pod a veth pair made in one
//! netlink request with its pod end created directly as `eth0` in the pod's
//! namespace; addresses from [`ipam`]; host ports and masquerade in an
//! nftables table of pvecri's own ([`nft`]); `route_localnet` on the
//! bridge only while a pod's host port needs it ([`sysctl`]).
//!
//! Every pod's allocation is a [`PodNetwork`] record written to the store
//! *before* anything is created, and deleted only after everything is
//! gone: after a crash the record says what to clean up, and an address is
//! never handed out twice.

pub mod bandwidth;
pub mod cni;
mod error;
pub mod ipam;
mod link;
pub mod nft;
mod sysctl;

pub use error::{NetworkError, NotReady};
pub(crate) use link::MANAGED_ALIAS;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::{NetworkConfig, NetworkMode};
use crate::pod::record::PortMapping;
use crate::pod::PodConfig;
use crate::store::{Record, Store};
use ipam::{IpamCursors, Subnet};
use link::Netlink;
use nft::{HostPort, TableSpec};

/// What pvecri set up for one pod; the store's record of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodNetwork {
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

/// Whether `name` can be pvecri's bridge: a kernel interface name that
/// pve-firewall does not own.
pub fn is_valid_bridge_name(name: &str) -> bool {
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
pub enum CidrError {
    #[error("{0:?} is not a CIDR such as 10.77.0.0/16")]
    Syntax(String),
    #[error("{text:?} is not an {family} subnet")]
    Family { text: String, family: &'static str },
    #[error("{0:?} is too small for a gateway and a pod")]
    TooSmall(String),
}

/// Parses a pod subnet of the given family with room for at least one pod.
pub fn parse_pod_cidr(text: &str, ipv6: bool) -> Result<IpNet, CidrError> {
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

#[derive(Debug, Clone)]
struct Subnets {
    v4: Subnet,
    v6: Option<Subnet>,
}

/// The node's pod network.
pub struct Network {
    config: NetworkConfig,
    store: Arc<Store>,
    subnets: Mutex<Subnets>,
    /// Bridge MTU, given to every veth.
    mtu: Mutex<u32>,
    /// `Err(reason)` until the node side is set up.
    ready: Mutex<Result<(), NotReady>>,
    /// Serialises allocation: read used addresses, pick, persist.
    alloc: tokio::sync::Mutex<()>,
    /// CNI mode's plugin runner.
    cni: cni::Runner,
    /// Serialises reading the stored host ports and writing
    /// `route_localnet`, so that the last write follows the latest records.
    route_localnet: Mutex<()>,
}

impl Network {
    pub fn new(config: &NetworkConfig, store: Arc<Store>) -> Self {
        let v4 = parse_pod_cidr(&config.pod_cidr, false).expect("validated with the config");
        let v6 = (!config.pod_cidr_v6.is_empty())
            .then(|| parse_pod_cidr(&config.pod_cidr_v6, true).expect("validated with the config"));
        let not_ready = NotReady(match config.mode {
            NetworkMode::Builtin => "the pod bridge is not set up yet".to_owned(),
            NetworkMode::Cni => String::new(),
        });
        Self {
            config: config.clone(),
            store,
            subnets: Mutex::new(Subnets {
                v4: Subnet::new(v4),
                v6: v6.map(Subnet::new),
            }),
            mtu: Mutex::new(1500),
            ready: Mutex::new(Err(not_ready)),
            alloc: tokio::sync::Mutex::new(()),
            cni: cni::Runner {
                bin_dirs: config.cni_bin_dirs.clone(),
            },
            route_localnet: Mutex::new(()),
        }
    }

    /// `Ok` when pods can get a network, else the reason.
    pub fn readiness(&self) -> Result<(), NotReady> {
        match self.config.mode {
            NetworkMode::Builtin => self.ready.lock().unwrap().clone(),
            // Looked up each time: a config installed later counts at once.
            NetworkMode::Cni => cni::load(&self.config.cni_conf_dir)
                .map(|_| ())
                .map_err(|e| NotReady::from_error(&e)),
        }
    }

    fn require_ready(&self) -> Result<(), NetworkError> {
        self.readiness().map_err(NetworkError::NotReady)
    }

    /// Sets up the node side (bridge, gateway addresses, nftables table) and
    /// releases what pods that no longer exist left behind. Failure leaves
    /// NetworkReady false with the reason.
    pub async fn start(&self, live_pods: &HashSet<String>) {
        for a in self.store.list::<cni::CniAttachment>().unwrap_or_default() {
            if !live_pods.contains(&a.pod_id) {
                info!(pod_id = %a.pod_id, "running CNI DEL for a pod that no longer exists");
                if let Err(e) = self.detach(&a.pod_id).await {
                    warn!(pod_id = %a.pod_id, error = %crate::errors::chain(&e), "cannot release a stale pod network");
                }
            }
        }
        if self.config.mode != NetworkMode::Builtin {
            return;
        }
        for net in self.store.list::<PodNetwork>().unwrap_or_default() {
            if !live_pods.contains(&net.pod_id) {
                info!(pod_id = %net.pod_id, "releasing the network of a pod that no longer exists");
                if let Err(e) = self.detach(&net.pod_id).await {
                    warn!(pod_id = %net.pod_id, error = %crate::errors::chain(&e), "cannot release a stale pod network");
                }
            }
        }
        let result = self.setup_node().await;
        if let Err(e) = &result {
            warn!(bridge = %self.config.bridge, error = %crate::errors::chain(e), "pod networking is not ready");
        } else {
            info!(bridge = %self.config.bridge, pod_cidr = %self.subnets().v4.net(), "pod networking ready");
        }
        *self.ready.lock().unwrap() = result.map_err(|e| NotReady::from_error(&e));
    }

    fn subnets(&self) -> Subnets {
        self.subnets.lock().unwrap().clone()
    }

    async fn setup_node(&self) -> Result<(), NetworkError> {
        let result = self.setup_bridge_and_table().await;
        if result.is_err() {
            // The flag a previous run left (an older pvecri's table had no
            // loopback guard) must not outlive a table this run could not
            // write.
            if let Err(e) = self.sync_route_localnet(false) {
                warn!(bridge = %self.config.bridge, error = %crate::errors::chain(&e), "cannot turn route_localnet off");
            }
        }
        result
    }

    async fn setup_bridge_and_table(&self) -> Result<(), NetworkError> {
        let nl = Netlink::host()?;
        let bridge = &self.config.bridge;
        let (mtu, managed) = nl.ensure_bridge(bridge).await?;
        *self.mtu.lock().unwrap() = mtu;
        let subnets = self.subnets();
        for s in std::iter::once(subnets.v4).chain(subnets.v6) {
            nl.ensure_address(bridge, s.gateway(), s.prefix_len())
                .await?;
        }
        if managed {
            // Routing of what arrives on pvecri's own bridge: pods reaching
            // host ports (hairpin included) and, with `egress`, the world.
            // The node's other interfaces keep their setting; an existing
            // bridge such as vmbr0 is the operator's.
            sysctl::set(bridge, sysctl::Key::Forwarding, true)?;
        }
        self.write_table().await?;
        // Derived from the stored pod networks, so a crash between a pod's
        // record and the flag is repaired here.
        self.sync_route_localnet(true)
    }

    /// Turns `route_localnet` on the bridge on exactly while a stored pod
    /// network has a host port reachable on loopback. `guarded`: pvecri's
    /// table, with its loopback guard, is known to be in place; without it
    /// the flag only goes off.
    fn sync_route_localnet(&self, guarded: bool) -> Result<(), NetworkError> {
        let _serial = self.route_localnet.lock().unwrap();
        let on = guarded && sysctl::route_localnet_needed(&self.store.list::<PodNetwork>()?);
        sysctl::set(&self.config.bridge, sysctl::Key::RouteLocalnet, on)
    }

    async fn write_table(&self) -> Result<(), NetworkError> {
        let ports: Vec<HostPort> = self
            .store
            .list::<PodNetwork>()?
            .into_iter()
            .flat_map(|n| n.host_ports)
            .collect();
        let subnets = self.subnets();
        let IpNet::V4(pod_cidr) = subnets.v4.net() else {
            unreachable!("the first subnet is IPv4");
        };
        let pod_cidr_v6 = subnets.v6.and_then(|s| match s.net() {
            IpNet::V6(net) => Some(net),
            IpNet::V4(_) => None,
        });
        let spec = TableSpec {
            bridge: &self.config.bridge,
            pod_cidr,
            pod_cidr_v6,
            masquerade: self.config.masquerade,
            egress: self.config.egress,
        };
        nft::run(&nft::table_script(&spec, &ports))
            .await
            .map_err(NetworkError::NftTable)
    }

    /// Replaces the pod subnets with the kubelet's pod CIDRs (comma
    /// separated, at most one per family). Pods keep their addresses.
    pub async fn set_pod_cidrs(&self, cidrs: &str) -> Result<(), NetworkError> {
        let mut next = self.subnets();
        for cidr in cidrs.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let ipv6 = cidr.contains(':');
            let net = parse_pod_cidr(cidr, ipv6).map_err(|e| NetworkError::Invalid {
                field: "runtime_config.network_config.pod_cidr",
                message: e.to_string(),
            })?;
            if ipv6 {
                next.v6 = Some(Subnet::new(net));
            } else {
                next.v4 = Subnet::new(net);
            }
        }
        let current = self.subnets();
        if next.v4 == current.v4 && next.v6 == current.v6 {
            return Ok(());
        }
        *self.subnets.lock().unwrap() = next;
        info!(pod_cidr = %cidrs, "pod CIDR set by the kubelet");
        if self.config.mode == NetworkMode::Builtin && self.readiness().is_ok() {
            let result = self.setup_node().await;
            *self.ready.lock().unwrap() = result
                .as_ref()
                .map(|_| ())
                .map_err(|e| NotReady::from_error(e));
            result?;
        }
        Ok(())
    }

    /// Gives the pod in `netns` its veth, addresses, routes and host ports;
    /// returns its IPs, IPv4 first.
    pub async fn attach(
        &self,
        pod_id: &str,
        netns: &Path,
        pod: &PodConfig,
    ) -> Result<Vec<String>, NetworkError> {
        self.require_ready()?;
        if self.config.mode == NetworkMode::Cni {
            return self.cni_add(pod_id, netns, pod).await;
        }
        let record = self.allocate(pod_id, &pod.port_mappings).await?;
        match self.wire(&record, netns).await {
            Ok(()) => Ok(record.ips),
            Err(e) => {
                if let Err(cleanup) = self.detach(pod_id).await {
                    warn!(pod_id, error = %crate::errors::chain(&cleanup), "cannot undo a half-made pod network");
                }
                Err(e)
            }
        }
    }

    async fn cni_add(
        &self,
        pod_id: &str,
        netns: &Path,
        pod: &PodConfig,
    ) -> Result<Vec<String>, NetworkError> {
        let conf = cni::load(&self.config.cni_conf_dir)?;
        let bandwidth = bandwidth::from_annotations(&pod.annotations).map_err(|message| {
            NetworkError::Invalid {
                field: "config.annotations",
                message,
            }
        })?;
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
        // Stored first: a crash during ADD is followed by DEL at start.
        self.store.put(&attachment)?;
        match self.cni.add(&attachment).await {
            Ok(result) => {
                let ips = cni::result_ips(&result);
                attachment.result = Some(result);
                self.store.put(&attachment)?;
                Ok(ips)
            }
            Err(e) => {
                if let Err(cleanup) = self.detach(pod_id).await {
                    warn!(pod_id, error = %crate::errors::chain(&cleanup), "CNI DEL after a failed ADD failed");
                }
                Err(e.into())
            }
        }
    }

    /// Picks the pod's addresses and persists them with its host ports.
    async fn allocate(
        &self,
        pod_id: &str,
        port_mappings: &[PortMapping],
    ) -> Result<PodNetwork, NetworkError> {
        let _guard = self.alloc.lock().await;
        let existing = self.store.list::<PodNetwork>()?;
        let used: HashSet<IpAddr> = existing
            .iter()
            .flat_map(|n| n.ips.iter())
            .filter_map(|ip| ip.parse().ok())
            .collect();
        let subnets = self.subnets();
        let mut cursors = self
            .store
            .get::<IpamCursors>(IpamCursors::KEY)?
            .unwrap_or_default();
        let mut ips = Vec::new();
        for subnet in std::iter::once(subnets.v4).chain(subnets.v6) {
            let key = subnet.net().to_string();
            let last = cursors.last.get(&key).and_then(|l| l.parse().ok());
            let ip = subnet
                .next_free(last, &used)
                .ok_or_else(|| NetworkError::Exhausted(key.clone()))?;
            ips.push(ip);
            cursors.last.insert(key, ip.to_string());
        }
        let host_ports = host_ports(port_mappings, ips[0], ips.get(1).copied())?;
        let record = PodNetwork {
            pod_id: pod_id.to_owned(),
            ips: ips.iter().map(IpAddr::to_string).collect(),
            host_veth: host_veth_name(pod_id),
            host_ports,
        };
        // One commit: the allocation and the cursor move together.
        self.store.put_pair(&record, &cursors)?;
        Ok(record)
    }

    /// The pod bridge's index, setting the bridge up again when it was
    /// removed under us (by an operator, or another daemon on the same
    /// bridge that stopped with no pods).
    async fn bridge_index(&self, host: &Netlink) -> Result<u32, NetworkError> {
        if let Some(link) = host.link(&self.config.bridge).await? {
            return Ok(link.header.index);
        }
        warn!(bridge = %self.config.bridge, "the pod bridge is gone; setting it up again");
        self.setup_node().await?;
        host.link(&self.config.bridge)
            .await?
            .map(|l| l.header.index)
            .ok_or_else(|| NetworkError::NoLink(self.config.bridge.clone()))
    }

    async fn wire(&self, record: &PodNetwork, netns: &Path) -> Result<(), NetworkError> {
        let host = Netlink::host()?;
        let ns_file = std::fs::File::open(netns).map_err(|source| NetworkError::Netns {
            path: netns.to_owned(),
            source,
        })?;
        let mtu = *self.mtu.lock().unwrap();
        let bridge_index = self.bridge_index(&host).await?;
        if let Err(first) = host
            .add_veth(&record.host_veth, bridge_index, mtu, &ns_file)
            .await
        {
            // The bridge can vanish between the lookup and the request (the
            // kernel then refuses the master index): look again, once.
            let again = self.bridge_index(&host).await?;
            if again == bridge_index {
                return Err(first);
            }
            host.add_veth(&record.host_veth, again, mtu, &ns_file)
                .await?;
        }
        if !record.host_ports.is_empty() {
            host.set_hairpin(&record.host_veth).await?;
        }
        let subnets = self.subnets();
        let addrs: Vec<(IpAddr, u8, IpAddr)> = record
            .ips
            .iter()
            .filter_map(|ip| ip.parse::<IpAddr>().ok())
            .map(|ip| {
                let subnet = if ip.is_ipv6() {
                    subnets.v6.unwrap_or(subnets.v4)
                } else {
                    subnets.v4
                };
                (ip, subnet.prefix_len(), subnet.gateway())
            })
            .collect();
        let pod = Netlink::in_netns(netns).await?;
        pod.configure_pod_side(&addrs).await?;
        if record
            .host_ports
            .iter()
            .any(HostPort::reachable_on_loopback)
        {
            // The record is stored, so the flag goes on (before the ports
            // answer) and stays on until it is deleted.
            self.sync_route_localnet(true)?;
        }
        if !record.host_ports.is_empty() {
            let script = nft::elements_script("add", &self.config.bridge, &record.host_ports);
            nft::run(&script).await.map_err(NetworkError::Nft)?;
        }
        Ok(())
    }

    /// On daemon stop: with no pod networks left, removes pvecri's table and
    /// the bridge if pvecri created it and nothing uses it. With pods left,
    /// everything stays for the next start.
    pub async fn shutdown(&self) {
        if self.config.mode != NetworkMode::Builtin {
            return;
        }
        match self.store.list::<PodNetwork>() {
            Ok(nets) if nets.is_empty() => {}
            _ => return,
        }
        let result = async {
            let host = Netlink::host()?;
            if host.delete_bridge_if_unused(&self.config.bridge).await? {
                nft::run(&nft::delete_table_script(&self.config.bridge))
                    .await
                    .map_err(NetworkError::NftTable)?;
                info!(bridge = %self.config.bridge, "removed the unused pod bridge and its rules");
            }
            Ok::<(), NetworkError>(())
        }
        .await;
        if let Err(e) = result {
            warn!(bridge = %self.config.bridge, error = %crate::errors::chain(&e), "cannot clean up pod networking");
        }
    }

    /// Removes the pod's host ports and veth and releases its addresses.
    /// Idempotent; also cleans up after a crash half-way through attach.
    pub async fn detach(&self, pod_id: &str) -> Result<(), NetworkError> {
        let attachment = self
            .store
            .list::<cni::CniAttachment>()?
            .into_iter()
            .find(|a| a.pod_id == pod_id);
        if let Some(a) = attachment {
            // The record goes even when a plugin fails: plugins must treat
            // a repeated DEL as success, so retrying would change nothing.
            let result = self.cni.del(&a).await;
            self.store.delete::<cni::CniAttachment>(pod_id)?;
            return result.map_err(NetworkError::from);
        }
        if self.config.mode == NetworkMode::Cni {
            return Ok(());
        }
        let record = self
            .store
            .list::<PodNetwork>()?
            .into_iter()
            .find(|n| n.pod_id == pod_id);
        if let Some(record) = &record {
            if !record.host_ports.is_empty() {
                self.delete_host_ports(&record.host_ports).await;
            }
        }
        let veth = record
            .as_ref()
            .map(|r| r.host_veth.clone())
            .unwrap_or_else(|| host_veth_name(pod_id));
        Netlink::host()?.delete_link(&veth).await?;
        if record.is_some() {
            self.store.delete::<PodNetwork>(pod_id)?;
        }
        // Also without a record: a repeated Stop/Remove finishes what a
        // failed write left. Before the node is set up at start the flag
        // only goes off; the set-up derives it afterwards.
        let had_loopback = record
            .as_ref()
            .is_none_or(|r| r.host_ports.iter().any(HostPort::reachable_on_loopback));
        if had_loopback {
            self.sync_route_localnet(self.readiness().is_ok())?;
        }
        Ok(())
    }

    /// Deletes map elements one transaction at a time: a missing element
    /// (the table was rebuilt meanwhile) must not keep the others.
    async fn delete_host_ports(&self, ports: &[HostPort]) {
        let all = nft::elements_script("delete", &self.config.bridge, ports);
        if nft::run(&all).await.is_ok() {
            return;
        }
        for port in ports {
            let one =
                nft::elements_script("delete", &self.config.bridge, std::slice::from_ref(port));
            let _ = nft::run(&one).await;
        }
    }
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
