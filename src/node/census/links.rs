//! Network links pvecri made, read from sysfs (`/sys/class/net`): host
//! ends of pod veths (`pvc<first 12 of the pod ID>`, see
//! `crate::network::host_veth_name`), the ifbs that shape pods' egress
//! bandwidth (`pvb<first 12 of the pod ID>`) and bridges it created (alias
//! `pvecri-managed`; an operator's `vmbr*` never is one).
//!
//! Bridges and veth names are node-wide: a census of one state dir counts
//! the veths of the pods it knows and its configured bridge, a node census
//! every `pvc…` and `pvb…` link and every managed bridge.

use std::collections::BTreeSet;
use std::path::Path;

use crate::network::{host_veth_name, ifb_name, MANAGED_ALIAS};

/// Veths and bridges found, one line each.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Links {
    pub veths: Vec<String>,
    pub ifbs: Vec<String>,
    pub bridges: Vec<String>,
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Reads `net_dir`; `pod_ids` are the pods whose veths to look for.
pub(super) fn find(
    net_dir: &Path,
    pod_ids: &BTreeSet<String>,
    bridge: &str,
    node: bool,
) -> std::io::Result<Links> {
    let wanted: BTreeSet<String> = pod_ids.iter().map(|id| host_veth_name(id)).collect();
    let wanted_ifbs: BTreeSet<String> = pod_ids.iter().map(|id| ifb_name(id)).collect();
    let mut names: Vec<String> = std::fs::read_dir(net_dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut out = Links::default();
    for name in names {
        let dir = net_dir.join(&name);
        if dir.join("bridge").is_dir() {
            let managed = read_trimmed(&dir.join("ifalias")) == MANAGED_ALIAS;
            if managed && (node || name == bridge) {
                let ports = std::fs::read_dir(dir.join("brif"))
                    .map(|r| r.count())
                    .unwrap_or(0);
                out.bridges.push(format!("{name} ({ports} ports)"));
            }
        } else if wanted_ifbs.contains(&name) || (node && name.starts_with("pvb")) {
            out.ifbs.push(name);
        } else if wanted.contains(&name) || (node && name.starts_with("pvc")) {
            let master = std::fs::read_link(dir.join("master"))
                .ok()
                .and_then(|p| p.file_name()?.to_str().map(str::to_owned));
            out.veths.push(match master {
                Some(m) => format!("{name} (port of {m})"),
                None => format!("{name} (no bridge)"),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge(net: &Path, name: &str, alias: &str, ports: &[&str]) {
        std::fs::create_dir_all(net.join(name).join("bridge")).unwrap();
        std::fs::create_dir_all(net.join(name).join("brif")).unwrap();
        std::fs::write(net.join(name).join("ifalias"), format!("{alias}\n")).unwrap();
        for p in ports {
            std::fs::create_dir_all(net.join(p)).unwrap();
            std::fs::write(net.join(name).join("brif").join(p), "").unwrap();
            std::os::unix::fs::symlink(format!("../{name}"), net.join(p).join("master")).unwrap();
        }
    }

    #[test]
    fn veths_of_known_pods_and_managed_bridges_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path();
        let (pod, stray) = ("ab12cd34ef56".repeat(5) + "abcd", "99".repeat(32));
        let (veth, stray_veth) = (host_veth_name(&pod), host_veth_name(&stray));
        bridge(net, "pvecri0", "pvecri-managed", &[&veth]);
        bridge(net, "vmbr0", "", &["veth100i0"]);
        bridge(net, "pvt-x", "pvecri-managed", &[]);
        std::fs::create_dir_all(net.join(&stray_veth)).unwrap();
        std::fs::create_dir_all(net.join("eth0")).unwrap();
        std::fs::create_dir_all(net.join(ifb_name(&pod))).unwrap();
        std::fs::create_dir_all(net.join(ifb_name(&stray))).unwrap();
        std::fs::create_dir_all(net.join("ifb0")).unwrap();

        let pods: BTreeSet<String> = [pod.clone()].into_iter().collect();
        let state = find(net, &pods, "pvecri0", false).unwrap();
        assert_eq!(state.veths, [format!("{veth} (port of pvecri0)")]);
        assert_eq!(state.bridges, ["pvecri0 (1 ports)"]);
        assert_eq!(state.ifbs, [ifb_name(&pod)]);

        let node = find(net, &BTreeSet::new(), "pvecri0", true).unwrap();
        assert_eq!(
            node.veths,
            [
                format!("{stray_veth} (no bridge)"),
                format!("{veth} (port of pvecri0)"),
            ]
        );
        assert_eq!(node.bridges, ["pvecri0 (1 ports)", "pvt-x (0 ports)"]);
        assert_eq!(node.ifbs, [ifb_name(&stray), ifb_name(&pod)]);
    }
}
