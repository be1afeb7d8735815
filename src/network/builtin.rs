//! Built-in pod networking: a Linux bridge on the node (pvecri's own
//! `pvecri0`, or an existing one such as Proxmox's `vmbr1`) carrying the
//! gateway address of the pod subnet; per pod a veth pair made in one
//! netlink request with its pod end created directly as `eth0` in the pod's
//! namespace; addresses from [`super::ipam`]; host ports and masquerade in
//! an nftables table of pvecri's own ([`super::nft`]); `route_localnet` on
//! the bridge only while a pod's host port needs it ([`super::sysctl`]);
//! the pod's bandwidth annotations as TBF qdiscs on its veth and ifb
//! ([`super::tc`]).
//!
//! Every pod's allocation is a [`PodNetwork`] record written to the store
//! *before* anything is created, and deleted only after everything is
//! gone: after a crash the record says what to clean up, and an address is
//! never handed out twice.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use tracing::{info, warn};

use super::bandwidth::{Bandwidth, BUILTIN_RANGE};
use super::ipam::{IpamCursors, Subnet};
use super::link::Netlink;
use super::nft::{self, HostPort, TableSpec};
use super::{
    host_ports, host_veth_name, pod_bandwidth, sysctl, tc, Backend, NetworkError, NotReady,
    PodNetwork,
};
use crate::config::NetworkConfig;
use crate::pod::record::PortMapping;
use crate::pod::PodConfig;
use crate::store::Store;

#[derive(Debug, Clone)]
struct Subnets {
    v4: Subnet,
    v6: Option<Subnet>,
}

/// The bridge, its nftables table and the pods' veths and addresses.
pub(super) struct BuiltinNetwork {
    config: NetworkConfig,
    store: Arc<Store>,
    subnets: Mutex<Subnets>,
    /// Bridge MTU, given to every veth.
    mtu: Mutex<u32>,
    /// `Err(reason)` until the node side is set up.
    ready: Mutex<Result<(), NotReady>>,
    /// Serialises allocation: read used addresses, pick, persist.
    alloc: tokio::sync::Mutex<()>,
    /// Serialises reading the stored host ports and writing
    /// `route_localnet`, so that the last write follows the latest records.
    route_localnet: Mutex<()>,
}

impl BuiltinNetwork {
    pub(super) fn new(
        config: &NetworkConfig,
        store: Arc<Store>,
        v4: IpNet,
        v6: Option<IpNet>,
    ) -> Self {
        Self {
            config: config.clone(),
            store,
            subnets: Mutex::new(Subnets {
                v4: Subnet::new(v4),
                v6: v6.map(Subnet::new),
            }),
            mtu: Mutex::new(1500),
            ready: Mutex::new(Err(NotReady("the pod bridge is not set up yet".to_owned()))),
            alloc: tokio::sync::Mutex::new(()),
            route_localnet: Mutex::new(()),
        }
    }

    fn subnets(&self) -> Subnets {
        self.subnets.lock().expect("subnets lock poisoned").clone()
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
        let (mtu, managed) = nl.ensure_bridge(bridge, self.config.vlan).await?;
        *self.mtu.lock().expect("mtu lock poisoned") = mtu;
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
        let _serial = self
            .route_localnet
            .lock()
            .expect("route_localnet lock poisoned");
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

    /// Picks the pod's addresses and persists them with its host ports.
    async fn allocate(
        &self,
        pod_id: &str,
        port_mappings: &[PortMapping],
        shaped: bool,
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
        // One commit: the allocation and the cursor move together. It need
        // not wait for the disk when all the wiring makes lives in the
        // pod's network namespace (the veth, its VLAN): a crash before its
        // flush (or before the pod's record, whose flush takes this one
        // along) leaves a half-made pod whose pinned namespaces the restart
        // releases, and the veth goes with them. Host ports (nftables
        // elements) and an ifb are on the host: for those the record must
        // be on disk first, so the restart's release finds and removes them.
        if record.host_ports.is_empty() && !shaped {
            self.store.put_pair_soon(&record, &cursors)?;
        } else {
            self.store.put_pair(&record, &cursors)?;
        }
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

    async fn wire(
        &self,
        record: &PodNetwork,
        netns: &Path,
        bandwidth: Option<Bandwidth>,
    ) -> Result<(), NetworkError> {
        let host = Netlink::host()?;
        let ns_file = std::fs::File::open(netns).map_err(|source| NetworkError::Netns {
            path: netns.to_owned(),
            source,
        })?;
        let mtu = *self.mtu.lock().expect("mtu lock poisoned");
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
        if let Some(vid) = self.config.vlan {
            // Before the pod side is up: no frame leaves it in VLAN 1.
            let index = host.index(&record.host_veth).await?;
            host.set_vlan(&record.host_veth, index, vid, false).await?;
        }
        if !record.host_ports.is_empty() {
            host.set_hairpin(&record.host_veth).await?;
        }
        if let Some(limits) = &bandwidth {
            // Before the pod side is up: no packet passes unshaped.
            let ifb = tc::ifb_name(&record.pod_id);
            host.limit_bandwidth(&record.host_veth, &ifb, mtu, limits)
                .await?;
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

#[async_trait::async_trait]
impl Backend for BuiltinNetwork {
    fn readiness(&self) -> Result<(), NotReady> {
        self.ready.lock().expect("ready lock poisoned").clone()
    }

    /// Releases the networks of pods that no longer exist, then sets up the
    /// node side (bridge, gateway addresses, nftables table).
    async fn start(&self, live_pods: &HashSet<String>) {
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
        *self.ready.lock().expect("ready lock poisoned") =
            result.map_err(|e| NotReady::from_error(&e));
    }

    /// Bandwidth annotations must be rates TBF can shape.
    fn check(&self, pod: &PodConfig) -> Result<(), NetworkError> {
        pod_bandwidth(pod, BUILTIN_RANGE).map(|_| ())
    }

    async fn set_pod_cidrs(&self, nets: &[IpNet]) -> Result<bool, NetworkError> {
        let mut next = self.subnets();
        for net in nets {
            if net.addr().is_ipv6() {
                next.v6 = Some(Subnet::new(*net));
            } else {
                next.v4 = Subnet::new(*net);
            }
        }
        let current = self.subnets();
        if next.v4 == current.v4 && next.v6 == current.v6 {
            return Ok(false);
        }
        *self.subnets.lock().expect("subnets lock poisoned") = next;
        if self.readiness().is_ok() {
            let result = self.setup_node().await;
            *self.ready.lock().expect("ready lock poisoned") = result
                .as_ref()
                .map(|_| ())
                .map_err(|e| NotReady::from_error(e));
            result?;
        }
        Ok(true)
    }

    /// Gives the pod in `netns` its veth, addresses, routes and host ports;
    /// returns its IPs, IPv4 first.
    async fn attach(
        &self,
        pod_id: &str,
        netns: &Path,
        pod: &PodConfig,
    ) -> Result<Vec<String>, NetworkError> {
        let bandwidth = pod_bandwidth(pod, BUILTIN_RANGE)?;
        let record = self
            .allocate(pod_id, &pod.port_mappings, bandwidth.is_some())
            .await?;
        match self.wire(&record, netns, bandwidth).await {
            Ok(()) => Ok(record.ips),
            Err(e) => {
                if let Err(cleanup) = self.detach(pod_id).await {
                    warn!(pod_id, error = %crate::errors::chain(&cleanup), "cannot undo a half-made pod network");
                }
                Err(e)
            }
        }
    }

    /// Removes the pod's host ports, veth and ifb and releases its addresses.
    /// Idempotent; also cleans up after a crash half-way through attach.
    async fn detach(&self, pod_id: &str) -> Result<(), NetworkError> {
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
        let host = Netlink::host()?;
        // The veth takes its qdiscs and filter along; the ifb of an egress
        // limit is a link of its own, looked for whatever the annotations
        // said, so a crash between the two deletions is finished here.
        host.delete_link(&veth).await?;
        host.delete_link(&tc::ifb_name(pod_id)).await?;
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

    /// On daemon stop: with no pod networks left, removes pvecri's table and
    /// the bridge if pvecri created it and nothing uses it. With pods left,
    /// everything stays for the next start.
    async fn shutdown(&self) {
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
}
