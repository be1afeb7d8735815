//! pvecri's nftables rules: one `ip` table per bridge (and an `ip6` one
//! when pods get IPv6 addresses), written by the `nft` binary.
//!
//! The table is replaced in one transaction when the daemon starts (and when
//! the pod CIDR changes); per pod only map elements are added and deleted,
//! so a pod with host ports costs one small `nft` run and a pod without
//! none. Running `nft` instead of speaking nftables netlink keeps a large
//! message format out of pvecri; it is off the path of pods without host
//! ports. The table never touches rules of other tables: the host's own
//! firewall is left alone.

use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::pod::record::Proto;

/// One host port DNAT'd to a pod, in the family of `pod_ip`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HostPort {
    pub protocol: Proto,
    /// `None`: every local address of the node (of the pod IP's family).
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub pod_ip: IpAddr,
    pub container_port: u16,
}

impl HostPort {
    /// Whether connections the node makes to 127.0.0.1 are DNAT'd by this
    /// entry: an IPv4 entry for every local address or for a loopback one.
    pub(crate) fn reachable_on_loopback(&self) -> bool {
        self.pod_ip.is_ipv4() && self.host_ip.is_none_or(|ip| ip.is_loopback())
    }

    fn family(&self) -> Family {
        if self.pod_ip.is_ipv6() {
            Family::V6
        } else {
            Family::V4
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    /// The nft table family.
    fn table(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    /// The address match and nft address type.
    fn addr(self) -> (&'static str, &'static str) {
        match self {
            Family::V4 => ("ip", "ipv4_addr"),
            Family::V6 => ("ip6", "ipv6_addr"),
        }
    }
}

/// What the table is built from.
pub(crate) struct TableSpec<'a> {
    pub bridge: &'a str,
    pub pod_cidr: Ipv4Net,
    /// The IPv6 pod subnet, when dual-stack: it gets an `ip6` table.
    pub pod_cidr_v6: Option<Ipv6Net>,
    pub masquerade: bool,
    pub egress: bool,
}

pub(crate) fn table_name(bridge: &str) -> String {
    format!("pvecri-{bridge}")
}

/// A script that (re)creates the tables atomically with `ports` in their
/// maps; an `ip6` table left from a dual-stack configuration goes when
/// the pods are IPv4 only.
pub(crate) fn table_script(spec: &TableSpec<'_>, ports: &[HostPort]) -> String {
    let mut s = family_table(spec, Family::V4, &spec.pod_cidr.to_string());
    match spec.pod_cidr_v6 {
        Some(v6) => s.push_str(&family_table(spec, Family::V6, &v6.to_string())),
        None => s.push_str(&delete_family(spec.bridge, Family::V6)),
    }
    s.push_str(&elements_script("add", spec.bridge, ports));
    s
}

fn delete_family(bridge: &str, family: Family) -> String {
    let table = table_name(bridge);
    let f = family.table();
    // Declaring the table first makes the delete valid when it is missing.
    format!("table {f} {table}\ndelete table {f} {table}\n")
}

fn family_table(spec: &TableSpec<'_>, family: Family, cidr: &str) -> String {
    let table = table_name(spec.bridge);
    let bridge = spec.bridge;
    let (f, (ip, addr)) = (family.table(), family.addr());
    let mut s = delete_family(bridge, family);
    let _ = writeln!(s, "table {f} {table} {{");
    let _ = writeln!(
        s,
        "  map hostports_any {{ type inet_proto . inet_service : {addr} . inet_service; }}"
    );
    let _ = writeln!(
        s,
        "  map hostports_ip {{ type {addr} . inet_proto . inet_service : {addr} . inet_service; }}"
    );
    s.push_str("  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n    fib daddr type local jump hostports\n  }\n");
    // Connections from the node itself (to one of its addresses) are
    // NATed on the output hook.
    s.push_str("  chain output {\n    type nat hook output priority -100; policy accept;\n    fib daddr type local jump hostports\n  }\n");
    let _ = writeln!(
        s,
        "  chain hostports {{\n    dnat {ip} to {ip} daddr . meta l4proto . th dport map @hostports_ip\n    dnat {ip} to meta l4proto . th dport map @hostports_any\n  }}"
    );
    s.push_str(
        "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n",
    );
    if family == Family::V4 {
        // A loopback source cannot leave on the bridge: give DNAT'd
        // localhost connections the bridge address. (IPv6 cannot DNAT
        // from ::1 at all, so there is no such rule there.)
        let _ = writeln!(
            s,
            "    oifname \"{bridge}\" ip saddr 127.0.0.0/8 masquerade"
        );
    }
    // A pod reaching a host port that leads back onto the bridge (itself,
    // or another pod): without this the answer would bypass the node and
    // not match the connection.
    let _ = writeln!(
        s,
        "    oifname \"{bridge}\" {ip} saddr {cidr} ct status dnat masquerade"
    );
    if spec.masquerade {
        let _ = writeln!(
            s,
            "    {ip} saddr {cidr} {ip} daddr != {cidr} oifname != \"{bridge}\" masquerade"
        );
    }
    s.push_str("  }\n");
    if family == Family::V4 {
        s.push_str(&loopback_guard());
    }
    // No such chain in the ip6 table: IPv6 has no `route_localnet`, the
    // kernel drops packets for ::1 arriving on any interface but `lo`.
    if !spec.egress {
        // Pods talk to each other and to the node, never past it.
        s.push_str(
            "  chain forward {\n    type filter hook forward priority filter; policy accept;\n",
        );
        let _ = writeln!(s, "    {ip} saddr {cidr} oifname != \"{bridge}\" drop");
        let _ = writeln!(s, "    {ip} daddr {cidr} oifname != \"{bridge}\" drop");
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    s
}

/// The input chain that keeps `route_localnet` (see `sysctl.rs`) from
/// opening the node's loopback to the bridge's LAN, as kube-proxy's
/// KUBE-FIREWALL does: a packet arriving on any interface but `lo` to or
/// from 127.0.0.0/8 is dropped unless it belongs to a connection already
/// accepted (the replies of the node's DNAT'd connections to 127.0.0.1)
/// or one DNAT'd to loopback. The source rule stops spoofed loopback
/// sources (other than 127.0.0.1, which the kernel refuses itself) from
/// reaching services that trust them. A chain of its own with `return`s
/// rather than one rule: `ct status` does not match a packet without a
/// connection (state `invalid`), which must be dropped too. A drop here is
/// final whatever other tables accept; an accept here decides nothing.
fn loopback_guard() -> String {
    let mut s = String::from(
        "  chain input {\n    type filter hook input priority filter; policy accept;\n",
    );
    s.push_str("    iifname != \"lo\" ip daddr 127.0.0.0/8 jump loopback_from_outside\n");
    s.push_str("    iifname != \"lo\" ip saddr 127.0.0.0/8 jump loopback_from_outside\n  }\n");
    s.push_str("  chain loopback_from_outside {\n    ct state established,related return\n    ct status dnat return\n    drop\n  }\n");
    s
}

/// `add` or `delete` statements for the map elements of `ports`.
pub(crate) fn elements_script(verb: &str, bridge: &str, ports: &[HostPort]) -> String {
    let table = table_name(bridge);
    let mut s = String::new();
    for p in ports {
        let proto = p.protocol.keyword();
        let f = p.family().table();
        let value = format!(" : {} . {}", p.pod_ip, p.container_port);
        let value = if verb == "add" { value.as_str() } else { "" };
        match p.host_ip {
            Some(ip) => {
                let _ = writeln!(
                    s,
                    "{verb} element {f} {table} hostports_ip {{ {ip} . {proto} . {}{value} }}",
                    p.host_port
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "{verb} element {f} {table} hostports_any {{ {proto} . {}{value} }}",
                    p.host_port
                );
            }
        }
    }
    s
}

/// A script that deletes the tables (nothing when they are missing).
pub(crate) fn delete_table_script(bridge: &str) -> String {
    delete_family(bridge, Family::V4) + &delete_family(bridge, Family::V6)
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum NftError {
    #[error("cannot run nft")]
    Spawn(#[source] std::io::Error),
    #[error("nft failed: {stderr}")]
    Failed { stderr: String },
}

/// Runs `script` through `nft -f -` as one transaction.
pub(crate) async fn run(script: &str) -> Result<(), NftError> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(NftError::Spawn)?;
    }
    let out = child.wait_with_output().await.map_err(NftError::Spawn)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NftError::Failed {
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(host_ip: Option<&str>) -> HostPort {
        HostPort {
            protocol: Proto::Tcp,
            host_ip: host_ip.map(|s| s.parse().unwrap()),
            host_port: 8000,
            pod_ip: "10.77.0.5".parse().unwrap(),
            container_port: 80,
        }
    }

    #[test]
    fn table_replaces_itself_and_carries_the_ports() {
        let spec = TableSpec {
            bridge: "pvecri0",
            pod_cidr: "10.77.0.0/16".parse().unwrap(),
            pod_cidr_v6: None,
            masquerade: true,
            egress: true,
        };
        let s = table_script(&spec, &[port(None), port(Some("127.0.0.1"))]);
        assert!(s.starts_with("table ip pvecri-pvecri0\ndelete table ip pvecri-pvecri0\n"));
        assert!(s.contains(
            "ip saddr 10.77.0.0/16 ip daddr != 10.77.0.0/16 oifname != \"pvecri0\" masquerade"
        ));
        assert!(s.contains(
            "add element ip pvecri-pvecri0 hostports_any { tcp . 8000 : 10.77.0.5 . 80 }"
        ));
        assert!(s.contains(
            "add element ip pvecri-pvecri0 hostports_ip { 127.0.0.1 . tcp . 8000 : 10.77.0.5 . 80 }"
        ));
        assert!(!s.contains("hook forward"));
        let off = table_script(
            &TableSpec {
                masquerade: false,
                egress: false,
                ..spec
            },
            &[],
        );
        assert!(!off.contains("masquerade\n    ip saddr 10") && !off.contains("ip daddr !="));
        assert!(off.contains("ip saddr 10.77.0.0/16 oifname != \"pvecri0\" drop"));
        // IPv4 only: a dual-stack leftover ip6 table is deleted.
        assert!(off.contains("delete table ip6 pvecri-pvecri0\n"));
        assert!(!off.contains("table ip6 pvecri-pvecri0 {"));
    }

    #[test]
    fn dual_stack_gets_an_ip6_table_and_ip6_elements() {
        let spec = TableSpec {
            bridge: "br",
            pod_cidr: "10.77.0.0/16".parse().unwrap(),
            pod_cidr_v6: Some("fd00:77::/64".parse().unwrap()),
            masquerade: true,
            egress: false,
        };
        let v6 = HostPort {
            pod_ip: "fd00:77::5".parse().unwrap(),
            ..port(None)
        };
        let s = table_script(&spec, &[port(None), v6]);
        assert!(s.contains("table ip6 pvecri-br {"));
        assert!(s.contains(
            "  map hostports_any { type inet_proto . inet_service : ipv6_addr . inet_service; }"
        ));
        assert!(s.contains("dnat ip6 to meta l4proto . th dport map @hostports_any"));
        assert!(s.contains(
            "ip6 saddr fd00:77::/64 ip6 daddr != fd00:77::/64 oifname != \"br\" masquerade"
        ));
        assert!(s.contains("ip6 saddr fd00:77::/64 oifname != \"br\" drop"));
        assert!(
            s.contains("add element ip6 pvecri-br hostports_any { tcp . 8000 : fd00:77::5 . 80 }")
        );
        assert!(
            s.contains("add element ip pvecri-br hostports_any { tcp . 8000 : 10.77.0.5 . 80 }")
        );
        // No loopback masquerade in the ip6 table: ::1 cannot be DNAT'd.
        let ip6_part = &s[s.find("table ip6 pvecri-br {").unwrap()..];
        assert!(!ip6_part.contains("127.0.0.0/8"));
    }

    #[test]
    fn loopback_is_guarded_in_the_ip_table_only() {
        let spec = TableSpec {
            bridge: "br",
            pod_cidr: "10.77.0.0/16".parse().unwrap(),
            pod_cidr_v6: Some("fd00:77::/64".parse().unwrap()),
            masquerade: false,
            egress: true,
        };
        let s = table_script(&spec, &[]);
        let (ip_part, ip6_part) = s.split_at(s.find("table ip6 pvecri-br {").unwrap());
        assert!(ip_part.contains(
            "    type filter hook input priority filter; policy accept;\n    iifname != \"lo\" ip daddr 127.0.0.0/8 jump loopback_from_outside\n    iifname != \"lo\" ip saddr 127.0.0.0/8 jump loopback_from_outside\n"
        ));
        assert!(ip_part.contains(
            "  chain loopback_from_outside {\n    ct state established,related return\n    ct status dnat return\n    drop\n  }\n"
        ));
        assert!(!ip6_part.contains("hook input"));
    }

    /// The kernel's own check of every table variant (`nft -c` commits
    /// nothing), so a syntax or type error shows up here and not at a
    /// daemon start.
    #[test]
    fn scripts_pass_nft_check() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping scripts_pass_nft_check: nft -c needs root");
            return;
        }
        let v6 = HostPort {
            pod_ip: "fd00:77::5".parse().unwrap(),
            ..port(None)
        };
        let ports = [port(None), port(Some("127.0.0.1")), v6];
        for (v6_cidr, masquerade, egress) in
            [(None, true, true), (Some("fd00:77::/64"), false, false)]
        {
            let spec = TableSpec {
                bridge: "pvecri-chk0",
                pod_cidr: "10.77.0.0/16".parse().unwrap(),
                pod_cidr_v6: v6_cidr.map(|c| c.parse().unwrap()),
                masquerade,
                egress,
            };
            let ports: &[HostPort] = if v6_cidr.is_some() {
                &ports
            } else {
                &ports[..2]
            };
            let script = table_script(&spec, ports)
                + &elements_script("delete", spec.bridge, ports)
                + &delete_table_script(spec.bridge);
            let mut child = match std::process::Command::new("nft")
                .args(["-c", "-f", "-"])
                .stdin(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
            {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    eprintln!("skipping scripts_pass_nft_check: nft is not installed");
                    return;
                }
                Err(e) => panic!("cannot run nft: {e}"),
            };
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(script.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "nft -c refused:\n{script}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn deleting_names_only_the_keys() {
        let s = elements_script("delete", "br", &[port(None)]);
        assert_eq!(
            s,
            "delete element ip pvecri-br hostports_any { tcp . 8000 }\n"
        );
    }

    #[test]
    fn protocols_follow_the_cri_numbers() {
        assert_eq!(Proto::from_cri(0), Some(Proto::Tcp));
        assert_eq!(Proto::from_cri(1), Some(Proto::Udp));
        assert_eq!(Proto::from_cri(2), Some(Proto::Sctp));
        assert_eq!(Proto::from_cri(3), None);
    }
}
