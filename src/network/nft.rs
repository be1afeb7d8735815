//! pvecri's nftables rules: one `ip` table per bridge, written by the `nft`
//! binary.
//!
//! The table is replaced in one transaction when the daemon starts (and when
//! the pod CIDR changes); per pod only map elements are added and deleted,
//! so a pod with host ports costs one small `nft` run and a pod without
//! none. Running `nft` instead of speaking nftables netlink keeps a large
//! message format out of pvecri; it is off the path of pods without host
//! ports. The table never touches rules of other tables: the host's own
//! firewall is left alone.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// A CRI `Protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    /// From the CRI enum value (TCP = 0, UDP = 1, SCTP = 2).
    pub fn from_cri(value: i32) -> Option<Self> {
        match value {
            0 => Some(Proto::Tcp),
            1 => Some(Proto::Udp),
            2 => Some(Proto::Sctp),
            _ => None,
        }
    }

    fn keyword(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// One host port DNAT'd to a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPort {
    pub protocol: Proto,
    /// `None`: every local address of the node.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub pod_ip: Ipv4Addr,
    pub container_port: u16,
}

/// What the table is built from.
pub struct TableSpec<'a> {
    pub bridge: &'a str,
    pub pod_cidr: Ipv4Net,
    pub masquerade: bool,
    pub egress: bool,
}

pub fn table_name(bridge: &str) -> String {
    format!("pvecri-{bridge}")
}

/// A script that (re)creates the table atomically with `ports` in its maps.
pub fn table_script(spec: &TableSpec<'_>, ports: &[HostPort]) -> String {
    let table = table_name(spec.bridge);
    let bridge = spec.bridge;
    let cidr = spec.pod_cidr;
    let mut s = String::new();
    // Declaring the table first makes the delete valid when it is missing.
    let _ = writeln!(s, "table ip {table}");
    let _ = writeln!(s, "delete table ip {table}");
    let _ = writeln!(s, "table ip {table} {{");
    s.push_str(
        "  map hostports_any { type inet_proto . inet_service : ipv4_addr . inet_service; }\n",
    );
    s.push_str(
        "  map hostports_ip { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }\n",
    );
    s.push_str("  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n    fib daddr type local jump hostports\n  }\n");
    // Connections from the node itself (127.0.0.1:hostPort) are NATed on
    // the output hook.
    s.push_str("  chain output {\n    type nat hook output priority -100; policy accept;\n    fib daddr type local jump hostports\n  }\n");
    s.push_str("  chain hostports {\n    dnat ip to ip daddr . meta l4proto . th dport map @hostports_ip\n    dnat ip to meta l4proto . th dport map @hostports_any\n  }\n");
    s.push_str(
        "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n",
    );
    // A loopback source cannot leave on the bridge: give DNAT'd localhost
    // connections the bridge address.
    let _ = writeln!(
        s,
        "    oifname \"{bridge}\" ip saddr 127.0.0.0/8 masquerade"
    );
    // A pod reaching a host port that leads back onto the bridge (itself,
    // or another pod): without this the answer would bypass the node and
    // not match the connection.
    let _ = writeln!(
        s,
        "    oifname \"{bridge}\" ip saddr {cidr} ct status dnat masquerade"
    );
    if spec.masquerade {
        let _ = writeln!(
            s,
            "    ip saddr {cidr} ip daddr != {cidr} oifname != \"{bridge}\" masquerade"
        );
    }
    s.push_str("  }\n");
    if !spec.egress {
        // Pods talk to each other and to the node, never past it.
        s.push_str(
            "  chain forward {\n    type filter hook forward priority filter; policy accept;\n",
        );
        let _ = writeln!(s, "    ip saddr {cidr} oifname != \"{bridge}\" drop");
        let _ = writeln!(s, "    ip daddr {cidr} oifname != \"{bridge}\" drop");
        s.push_str("  }\n");
    }
    s.push_str("}\n");
    s.push_str(&elements_script("add", spec.bridge, ports));
    s
}

/// `add` or `delete` statements for the map elements of `ports`.
pub fn elements_script(verb: &str, bridge: &str, ports: &[HostPort]) -> String {
    let table = table_name(bridge);
    let mut s = String::new();
    for p in ports {
        let proto = p.protocol.keyword();
        let value = format!(" : {} . {}", p.pod_ip, p.container_port);
        let value = if verb == "add" { value.as_str() } else { "" };
        match p.host_ip {
            Some(ip) => {
                let _ = writeln!(
                    s,
                    "{verb} element ip {table} hostports_ip {{ {ip} . {proto} . {}{value} }}",
                    p.host_port
                );
            }
            None => {
                let _ = writeln!(
                    s,
                    "{verb} element ip {table} hostports_any {{ {proto} . {}{value} }}",
                    p.host_port
                );
            }
        }
    }
    s
}

/// A script that deletes the table (nothing when it is missing).
pub fn delete_table_script(bridge: &str) -> String {
    let table = table_name(bridge);
    format!("table ip {table}\ndelete table ip {table}\n")
}

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run nft")]
    Spawn(#[source] std::io::Error),
    #[error("nft failed: {stderr}")]
    Failed { stderr: String },
}

/// Runs `script` through `nft -f -` as one transaction.
pub async fn run(script: &str) -> Result<(), NftError> {
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
