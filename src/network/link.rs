//! Links, addresses and routes over rtnetlink.
//!
//! A connection talks to the network namespace its socket was created in.
//! For a pod's namespace the socket is created on a short-lived thread that
//! has `setns`'d into it (the daemon's own threads never change namespace),
//! then driven by tokio like any other. Nothing forks.

use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::Path;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
use rtnetlink::packet_route::link::{
    AfSpecBridge, BridgeVlanInfoFlags, InfoBridge, InfoData, InfoKind, InfoVeth, LinkAttribute,
    LinkExtentMask, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkBridgeVlan, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};

use super::error::NetworkError;

/// The pod side of every veth.
pub(super) const POD_IFNAME: &str = "eth0";

/// The alias of a bridge pvecri created, so that only those are ever
/// deleted (an existing `vmbr*` never is).
pub(crate) const MANAGED_ALIAS: &str = "pvecri-managed";

/// One VLAN a bridge port, or a bridge's own port, is a member of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PortVlan {
    pub vid: u16,
    /// Untagged frames entering the port join this VLAN.
    pub pvid: bool,
    /// Frames of this VLAN leave the port untagged.
    pub untagged: bool,
}

/// The VLANs of the bridge `name`'s own port, as the daemon reads them
/// (`bridge vlan show dev <name>`, the `self` entries); empty on a bridge
/// that filters no VLANs.
pub(crate) async fn bridge_self_vlans(name: &str) -> Result<Vec<PortVlan>, NetworkError> {
    let nl = Netlink::host()?;
    let index = nl.index(name).await?;
    nl.self_vlans(name, index).await
}

/// A netlink connection to one network namespace.
pub(super) struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// A connection in the daemon's own namespace.
    pub(super) fn host() -> Result<Self, NetworkError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetworkError::Socket)?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// A connection in the namespace pinned at `netns`.
    pub(super) async fn in_netns(netns: &Path) -> Result<Self, NetworkError> {
        let file = std::fs::File::open(netns).map_err(|source| NetworkError::Netns {
            path: netns.to_owned(),
            source,
        })?;
        let rt = tokio::runtime::Handle::current();
        let path = netns.to_owned();
        let made = tokio::task::spawn_blocking(move || {
            // A thread of its own: setns changes only the calling thread,
            // and this one ends right after creating the socket.
            std::thread::spawn(move || {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)?;
                let _runtime = rt.enter();
                rtnetlink::new_connection().map(|(conn, handle, _)| (conn, handle))
            })
            .join()
        })
        .await
        .map_err(|e| NetworkError::Socket(std::io::Error::other(e.to_string())))?
        .map_err(|_| NetworkError::Socket(std::io::Error::other("netns thread panicked")))?;
        let (conn, handle) = made.map_err(|source| NetworkError::Netns { path, source })?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// The link called `name`, if there is one.
    pub(super) async fn link(&self, name: &str) -> Result<Option<LinkMessage>, NetworkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(NetworkError::netlink("look up link", name, e)),
        }
    }

    /// The rtnetlink handle, for the traffic control requests in
    /// [`super::tc`].
    pub(super) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// The index of the link called `name`.
    pub(super) async fn index(&self, name: &str) -> Result<u32, NetworkError> {
        self.link(name)
            .await?
            .map(|l| l.header.index)
            .ok_or_else(|| NetworkError::NoLink(name.to_owned()))
    }

    /// Creates the bridge unless it exists, brings it up and returns its
    /// MTU and whether pvecri manages it (created it, now or before).
    /// With `vlan`, a bridge pvecri creates is VLAN-aware, and its own port
    /// (the gateway's) is an untagged member of `vlan` with it as PVID; an
    /// existing bridge must be VLAN-aware already and keeps its own VLANs.
    pub(super) async fn ensure_bridge(
        &self,
        name: &str,
        vlan: Option<u16>,
    ) -> Result<(u32, bool), NetworkError> {
        let mut created = false;
        if self.link(name).await?.is_none() {
            created = true;
            let mut msg = LinkBridge::new(name).up().build();
            if vlan.is_some() {
                set_vlan_filtering(&mut msg);
            }
            match self.handle.link().add(msg).execute().await {
                Ok(()) => {}
                // Another daemon on this node made it meanwhile.
                Err(e) if errno(&e) == Some(libc::EEXIST) => {}
                // The kernel takes IFLA_BR_VLAN_FILTERING only when built
                // with CONFIG_BRIDGE_VLAN_FILTERING.
                Err(e) if vlan.is_some() && errno(&e) == Some(libc::EOPNOTSUPP) => {
                    return Err(NetworkError::NoVlanFiltering {
                        bridge: name.to_owned(),
                    })
                }
                Err(e) => return Err(NetworkError::netlink("create bridge", name, e)),
            }
        }
        let link = self
            .link(name)
            .await?
            .ok_or_else(|| NetworkError::NoLink(name.to_owned()))?;
        let index = link.header.index;
        let mut set = LinkUnspec::new_with_index(index).up();
        if created {
            // The kernel takes no alias when creating a link: set it now.
            set = set.alias(MANAGED_ALIAS);
        }
        self.handle
            .link()
            .set(set.build())
            .execute()
            .await
            .map_err(|e| NetworkError::netlink("bring up bridge", name, e))?;
        let managed = created || is_managed(&link);
        if let Some(vid) = vlan {
            match vlan_filtering(&link) {
                Some(true) => {}
                Some(false) => {
                    return Err(NetworkError::NotVlanAware {
                        bridge: name.to_owned(),
                        vlan: vid,
                    })
                }
                // A bridge's info carries the flag whenever the kernel
                // can filter VLANs at all.
                None => {
                    return Err(NetworkError::NoVlanFiltering {
                        bridge: name.to_owned(),
                    })
                }
            }
            if managed {
                self.set_vlan(name, index, vid, true).await?;
            }
        }
        Ok((mtu_of(&link).unwrap_or(1500), managed))
    }

    /// Makes the bridge port `index` an untagged member of `vid` with it as
    /// PVID, and no longer a member of the default VLAN 1: `bridge vlan add
    /// vid <vid> pvid untagged` and `bridge vlan del vid 1`, as RTM_SETLINK
    /// and RTM_DELLINK requests of family AF_BRIDGE. With `bridge_self` it
    /// is the bridge's own port (of a bridge pvecri manages), which leaves
    /// every other VLAN instead: one a previous `network.vlan` put there
    /// would keep the gateway in a VLAN no pod is in any more.
    pub(super) async fn set_vlan(
        &self,
        name: &str,
        index: u32,
        vid: u16,
        bridge_self: bool,
    ) -> Result<(), NetworkError> {
        let flags = BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged;
        let mut add = LinkBridgeVlan::new(index).vlan(vid, flags);
        if bridge_self {
            add = add.bridge_self();
        }
        self.handle
            .link()
            .set(add.build())
            .execute()
            .await
            .map_err(|e| NetworkError::netlink("set the VLAN of", name, e))?;
        // A pod's port is new: it has the bridge's default PVID, 1 unless
        // the operator changed it, and nothing else.
        let others: Vec<u16> = if bridge_self {
            self.self_vlans(name, index)
                .await?
                .into_iter()
                .map(|v| v.vid)
                .filter(|v| *v != vid)
                .collect()
        } else if vid != 1 {
            vec![1]
        } else {
            Vec::new()
        };
        for other in others {
            self.del_vlan(name, index, other, bridge_self).await?;
        }
        Ok(())
    }

    /// Removes the bridge port `index` (or with `bridge_self` the bridge's
    /// own port) from `vid`; a port that is no member is not an error.
    async fn del_vlan(
        &self,
        name: &str,
        index: u32,
        vid: u16,
        bridge_self: bool,
    ) -> Result<(), NetworkError> {
        let mut del = LinkBridgeVlan::new(index).vlan(vid, BridgeVlanInfoFlags::empty());
        if bridge_self {
            del = del.bridge_self();
        }
        match self
            .handle
            .link()
            .del_with_message(del.build())
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(NetworkError::VlanRemove {
                port: name.to_owned(),
                vid,
                source: e,
            }),
        }
    }

    /// The VLANs of the own port of the bridge `name` (index `index`): a
    /// dump of family AF_BRIDGE asking for VLAN info, as `bridge vlan show`
    /// makes it, in which the bridge's own entry carries its index.
    async fn self_vlans(&self, name: &str, index: u32) -> Result<Vec<PortVlan>, NetworkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .set_filter_mask(AddressFamily::Bridge, vec![LinkExtentMask::Brvlan])
            .execute();
        let mut found = None;
        // Read to its end: the dump's remaining messages would otherwise
        // arrive for a request nobody waits for.
        while let Some(link) = links
            .try_next()
            .await
            .map_err(|e| NetworkError::netlink("list the VLANs of", name, e))?
        {
            if link.header.index == index && found.is_none() {
                found = Some(port_vlans(&link));
            }
        }
        Ok(found.unwrap_or_default())
    }

    /// Deletes the bridge if pvecri created it and no interface is a port
    /// of it; returns whether it is gone.
    pub(super) async fn delete_bridge_if_unused(&self, name: &str) -> Result<bool, NetworkError> {
        let Some(bridge) = self.link(name).await? else {
            return Ok(true);
        };
        if !is_managed(&bridge) {
            return Ok(false);
        }
        let index = bridge.header.index;
        let mut links = self.handle.link().get().execute();
        while let Some(link) = links
            .try_next()
            .await
            .map_err(|e| NetworkError::netlink("list links", name, e))?
        {
            let is_port = link
                .attributes
                .iter()
                .any(|a| matches!(a, LinkAttribute::Controller(c) if *c == index));
            if is_port {
                return Ok(false);
            }
        }
        self.delete_link(name).await?;
        Ok(true)
    }

    /// Adds `addr/prefix` to the link unless it is there.
    pub(super) async fn ensure_address(
        &self,
        link: &str,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<(), NetworkError> {
        let index = self.index(link).await?;
        let mut req = self.handle.address().add(index, addr, prefix).replace();
        if addr.is_ipv6() {
            // No duplicate address detection: the address is usable at once.
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.execute()
            .await
            .map_err(|e| NetworkError::netlink("add address", link, e))
    }

    /// Creates the pair `host` (in this namespace, a port of `bridge`, up)
    /// and [`POD_IFNAME`] directly in the namespace open as `netns`.
    pub(super) async fn add_veth(
        &self,
        host: &str,
        bridge_index: u32,
        mtu: u32,
        netns: &std::fs::File,
    ) -> Result<(), NetworkError> {
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(POD_IFNAME)
            .mtu(mtu)
            .setns_by_fd(netns.as_raw_fd())
            .build();
        let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(host)
            .mtu(mtu)
            .controller(bridge_index)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| NetworkError::netlink("create veth", host, e))
    }

    /// Lets frames leave the bridge port they came in on, so a pod reaches
    /// itself through its own host port.
    pub(super) async fn set_hairpin(&self, port: &str) -> Result<(), NetworkError> {
        let index = self.index(port).await?;
        self.handle
            .link()
            .set_port(LinkBridgePort::new(index).hairpin(true).build())
            .execute()
            .await
            .map_err(|e| NetworkError::netlink("set hairpin on", port, e))
    }

    /// Deletes the link `name`; a missing link is not an error.
    pub(super) async fn delete_link(&self, name: &str) -> Result<(), NetworkError> {
        let Some(link) = self.link(name).await? else {
            return Ok(());
        };
        match self.handle.link().del(link.header.index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
            Err(e) => Err(NetworkError::netlink("delete link", name, e)),
        }
    }

    /// Inside a pod: addresses on [`POD_IFNAME`], link up, default routes
    /// via the gateways.
    pub(super) async fn configure_pod_side(
        &self,
        addrs: &[(IpAddr, u8, IpAddr)],
    ) -> Result<(), NetworkError> {
        let index = self.index(POD_IFNAME).await?;
        for &(addr, prefix, _) in addrs {
            self.ensure_address(POD_IFNAME, addr, prefix).await?;
        }
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| NetworkError::netlink("bring up", POD_IFNAME, e))?;
        for &(_, _, gateway) in addrs {
            let route = match gateway {
                IpAddr::V4(gw) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                    .gateway(gw)
                    .output_interface(index)
                    .build(),
                IpAddr::V6(gw) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                    .gateway(gw)
                    .output_interface(index)
                    .build(),
            };
            self.handle
                .route()
                .add(route)
                .replace()
                .execute()
                .await
                .map_err(|e| NetworkError::netlink("add default route", POD_IFNAME, e))?;
        }
        Ok(())
    }
}

fn is_managed(link: &LinkMessage) -> bool {
    link.attributes
        .iter()
        .any(|a| matches!(a, LinkAttribute::IfAlias(alias) if alias == MANAGED_ALIAS))
}

/// Turns on `vlan_filtering` in a bridge creation request.
fn set_vlan_filtering(msg: &mut LinkMessage) {
    for attr in msg.attributes.iter_mut() {
        if let LinkAttribute::LinkInfo(infos) = attr {
            for info in infos.iter_mut() {
                if let LinkInfo::Data(InfoData::Bridge(opts)) = info {
                    opts.retain(|o| !matches!(o, InfoBridge::VlanFiltering(_)));
                    opts.push(InfoBridge::VlanFiltering(true));
                    return;
                }
            }
            infos.push(LinkInfo::Data(InfoData::Bridge(vec![
                InfoBridge::VlanFiltering(true),
            ])));
            return;
        }
    }
}

/// A bridge's `vlan_filtering`; `None` for a link that is not a bridge.
pub(super) fn vlan_filtering(link: &LinkMessage) -> Option<bool> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::Bridge(opts)) => opts.iter().find_map(|o| match o {
                InfoBridge::VlanFiltering(on) => Some(*on),
                _ => None,
            }),
            _ => None,
        }),
        _ => None,
    })
}

/// The VLAN entries (`IFLA_BRIDGE_VLAN_INFO`) of an AF_BRIDGE link
/// message; one per VLAN, since the dump was not asked for ranges.
fn port_vlans(link: &LinkMessage) -> Vec<PortVlan> {
    link.attributes
        .iter()
        .filter_map(|a| match a {
            LinkAttribute::AfSpecBridge(entries) => Some(entries),
            _ => None,
        })
        .flatten()
        .filter_map(|e| match e {
            AfSpecBridge::VlanInfo(info) => Some(PortVlan {
                vid: info.vid,
                pvid: info.flags.contains(BridgeVlanInfoFlags::Pvid),
                untagged: info.flags.contains(BridgeVlanInfoFlags::Untagged),
            }),
            _ => None,
        })
        .collect()
}

fn mtu_of(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })
}

/// The errno of a kernel NACK.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| -c.get()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infos_of(msg: &LinkMessage) -> Vec<LinkInfo> {
        msg.attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(infos) => Some(infos.clone()),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn a_bridge_made_for_a_vlan_asks_for_vlan_filtering_and_reads_back() {
        let mut msg = LinkBridge::new("pvt0").up().build();
        assert_eq!(vlan_filtering(&msg), None);
        set_vlan_filtering(&mut msg);
        assert_eq!(vlan_filtering(&msg), Some(true));
        // The kind stays the first info: the kernel picks the link type by it.
        let infos = infos_of(&msg);
        assert_eq!(infos.first(), Some(&LinkInfo::Kind(InfoKind::Bridge)));
        // A second call adds nothing the kernel would see twice.
        set_vlan_filtering(&mut msg);
        let count = infos_of(&msg)
            .iter()
            .filter_map(|i| match i {
                LinkInfo::Data(InfoData::Bridge(opts)) => Some(opts),
                _ => None,
            })
            .flatten()
            .filter(|o| matches!(o, InfoBridge::VlanFiltering(_)))
            .count();
        assert_eq!(count, 1);
    }

    #[test]
    fn a_ports_vlans_are_read_from_its_bridge_af_spec() {
        use rtnetlink::packet_core::{Emitable, Parseable};
        use rtnetlink::packet_route::link::{BridgeFlag, BridgeVlanInfo};
        let mut msg = LinkMessage::default();
        msg.header.interface_family = AddressFamily::Bridge;
        msg.header.index = 7;
        msg.attributes.push(LinkAttribute::IfName("vmbr1".into()));
        msg.attributes.push(LinkAttribute::AfSpecBridge(vec![
            AfSpecBridge::Flags(BridgeFlag::LowerDev),
            AfSpecBridge::VlanInfo(BridgeVlanInfo {
                flags: BridgeVlanInfoFlags::Pvid | BridgeVlanInfoFlags::Untagged,
                vid: 20,
            }),
            AfSpecBridge::VlanInfo(BridgeVlanInfo {
                flags: BridgeVlanInfoFlags::empty(),
                vid: 30,
            }),
        ]));
        // Through the wire format, as the kernel's answer arrives.
        let mut wire = vec![0; msg.buffer_len()];
        msg.emit(&mut wire);
        let parsed = LinkMessage::parse(wire.as_slice()).unwrap();
        assert_eq!(
            port_vlans(&parsed),
            [
                PortVlan {
                    vid: 20,
                    pvid: true,
                    untagged: true
                },
                PortVlan {
                    vid: 30,
                    pvid: false,
                    untagged: false
                }
            ]
        );
        // A link message of the ordinary family has no VLAN entries.
        assert_eq!(port_vlans(&LinkMessage::default()), []);
    }
}
