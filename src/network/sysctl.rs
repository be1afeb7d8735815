//! The pod bridge's per-interface IPv4 sysctls.
//!
//! `route_localnet` lets connections the node makes to 127.0.0.1 be DNAT'd
//! to a pod and leave through the bridge with their loopback source (they
//! are masqueraded in postrouting). It also makes the kernel accept
//! packets *to* 127.0.0.0/8 arriving on the bridge, which would let a pod
//! reach services bound to the node's loopback (CVE-2020-8558). So it is on
//! only while some pod has a host port reachable on loopback, and only
//! after pvecri's table, whose `input` chain drops such packets, is in
//! place. IPv6 has no such flag: the kernel never DNATs `::1` and drops
//! packets for it arriving on any interface but `lo`.

use std::path::{Path, PathBuf};

use super::error::NetworkError;
use super::nft::HostPort;
use super::PodNetwork;

#[derive(Debug, Clone, Copy)]
pub(super) enum Key {
    Forwarding,
    RouteLocalnet,
}

impl Key {
    fn name(self) -> &'static str {
        match self {
            Key::Forwarding => "forwarding",
            Key::RouteLocalnet => "route_localnet",
        }
    }
}

fn path(bridge: &str, key: Key) -> PathBuf {
    Path::new("/proc/sys/net/ipv4/conf")
        .join(bridge)
        .join(key.name())
}

/// Writes `key` of `bridge`. Turning a flag off on a bridge that does not
/// exist succeeds: there is nothing left to turn off.
pub(super) fn set(bridge: &str, key: Key, on: bool) -> Result<(), NetworkError> {
    let path = path(bridge, key);
    match std::fs::write(&path, if on { "1" } else { "0" }) {
        Ok(()) => Ok(()),
        Err(e) if !on && e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetworkError::Sysctl { path, source }),
    }
}

/// Whether any of `nets` has a host port that connections to 127.0.0.1
/// reach, which is what needs `route_localnet`.
pub(super) fn route_localnet_needed(nets: &[PodNetwork]) -> bool {
    nets.iter()
        .flat_map(|n| n.host_ports.iter())
        .any(HostPort::reachable_on_loopback)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::record::Proto;

    fn net(host_ip: Option<&str>, pod_ip: &str) -> PodNetwork {
        PodNetwork {
            pod_id: "p".into(),
            ips: vec![pod_ip.into()],
            host_veth: "pvcp".into(),
            host_ports: vec![HostPort {
                protocol: Proto::Tcp,
                host_ip: host_ip.map(|ip| ip.parse().unwrap()),
                host_port: 8000,
                pod_ip: pod_ip.parse().unwrap(),
                container_port: 80,
            }],
        }
    }

    #[test]
    fn only_ipv4_host_ports_open_on_loopback_need_route_localnet() {
        assert!(!route_localnet_needed(&[]));
        assert!(route_localnet_needed(&[net(None, "10.77.0.2")]));
        assert!(route_localnet_needed(&[net(
            Some("127.0.0.1"),
            "10.77.0.2"
        )]));
        assert!(route_localnet_needed(&[net(
            Some("127.3.0.1"),
            "10.77.0.2"
        )]));
        // A host port on one of the node's other addresses.
        assert!(!route_localnet_needed(&[net(
            Some("10.77.0.1"),
            "10.77.0.2"
        )]));
        // IPv6 entries: the kernel never DNATs ::1.
        assert!(!route_localnet_needed(&[net(None, "fd00:77::2")]));
        assert!(!route_localnet_needed(&[net(Some("::1"), "fd00:77::2")]));
        let no_ports = PodNetwork {
            host_ports: Vec::new(),
            ..net(None, "10.77.0.3")
        };
        assert!(!route_localnet_needed(std::slice::from_ref(&no_ports)));
        assert!(route_localnet_needed(&[no_ports, net(None, "10.77.0.2")]));
    }
}
