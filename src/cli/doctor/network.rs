//! Pod networking as configured. Built-in mode: the kernel and `nft` accept
//! the daemon's own nftables table (the script the daemon writes at start,
//! checked with `nft -c`, which commits nothing), and the bridge is a
//! bridge and up; with `network.vlan`, it filters VLANs and its own port
//! (the gateway's) is an untagged PVID member of the VLAN. CNI mode: a network config is in `cni_conf_dir`, parses,
//! and every plugin it names is in `cni_bin_dirs`.

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use ipnet::IpNet;

use super::{which, Check};
use crate::config::{Config, NetworkConfig, NetworkMode};
use crate::network::cni::{self, CniError, ConfList};
use crate::network::{nft, parse_pod_cidr, PortVlan, MANAGED_ALIAS};

pub(super) fn checks(config: &Config, daemon_running: bool) -> Vec<Check> {
    let net = &config.network;
    match net.mode {
        NetworkMode::Builtin => {
            let state = bridge_state(&net.bridge);
            let mut out = vec![
                nft_table(net),
                bridge_verdict(&net.bridge, state, daemon_running),
            ];
            if let (Some(vid), Some(state)) = (net.vlan, state) {
                out.extend(vlan_verdict(&net.bridge, vid, state));
                if state.is_bridge && state.vlan_filtering == Some(true) {
                    let vlans = self_vlans(&net.bridge);
                    out.push(gateway_vlan_verdict(
                        &net.bridge,
                        vid,
                        state.managed,
                        &vlans,
                    ));
                }
            }
            out
        }
        NetworkMode::Cni => {
            let conf = cni::load(&net.cni_conf_dir);
            let mut out = vec![conf_verdict(&net.cni_conf_dir, &conf)];
            if let Ok(conf) = &conf {
                out.push(plugins_verdict(conf, &net.cni_bin_dirs, &|p: &Path| {
                    p.metadata()
                        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                }));
            }
            out
        }
    }
}

/// The script the daemon writes at start for this configuration (with no
/// host ports yet: the maps' elements do not change what is checked).
fn table_script(net: &NetworkConfig) -> Result<String, crate::network::CidrError> {
    let IpNet::V4(pod_cidr) = parse_pod_cidr(&net.pod_cidr, false)? else {
        unreachable!("parse_pod_cidr(_, false) gives IPv4");
    };
    let pod_cidr_v6 = match net.pod_cidr_v6.as_str() {
        "" => None,
        text => match parse_pod_cidr(text, true)? {
            IpNet::V6(v6) => Some(v6),
            IpNet::V4(_) => unreachable!("parse_pod_cidr(_, true) gives IPv6"),
        },
    };
    let spec = nft::TableSpec {
        bridge: &net.bridge,
        pod_cidr,
        pod_cidr_v6,
        masquerade: net.masquerade,
        egress: net.egress,
    };
    Ok(nft::table_script(&spec, &[]))
}

fn nft_table(net: &NetworkConfig) -> Check {
    let Some(nft) = which("nft") else {
        return Check::fail(
            "nftables",
            "nft is not installed: built-in mode writes its host-port and masquerade rules with it",
            "install the nftables package (`apt install nftables`)",
        );
    };
    let script = match table_script(net) {
        Ok(s) => s,
        Err(e) => {
            return Check::fail(
                "nftables",
                format!("invalid pod subnet: {e}"),
                "fix network.pod_cidr / pod_cidr_v6 in the config",
            )
        }
    };
    let table = nft::table_name(&net.bridge);
    match nft_check(&nft, &script) {
        Ok(()) => Check::ok(
            "nftables",
            format!("`nft -c` accepts the daemon's table {table}"),
        ),
        Err(why) => Check::fail(
            "nftables",
            format!("`nft -c` refuses the daemon's table {table}: {why}"),
            "load the nftables modules (`modprobe nf_tables nft_nat nft_fib_ipv4 nft_masq nft_ct`) \
             or upgrade nftables; the daemon cannot set up pod networking without them",
        ),
    }
}

/// `nft -c -f -`: parses `script` and lets the kernel validate it, without
/// committing it. `Err` carries nft's complaint.
fn nft_check(nft: &Path, script: &str) -> Result<(), String> {
    let mut child = Command::new(nft)
        .args(["-c", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", nft.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("cannot write to nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("nft did not finish: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // nft repeats the offending line with carets under it; the first
        // line says what is wrong.
        Err(stderr
            .lines()
            .next()
            .unwrap_or("no message")
            .trim()
            .to_owned())
    }
}

/// What `/sys/class/net/<name>` says of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LinkState {
    is_bridge: bool,
    /// Administratively up (`IFF_UP`). A bridge without ports has no
    /// carrier and an `operstate` of down while up, which is fine.
    up: bool,
    /// `bridge/vlan_filtering`; `None` when the file is missing (not a
    /// bridge, or a kernel without VLAN filtering).
    vlan_filtering: Option<bool>,
    /// Its alias marks it as created by pvecri, which then sets its VLANs.
    managed: bool,
}

fn bridge_state(name: &str) -> Option<LinkState> {
    let dir = PathBuf::from("/sys/class/net").join(name);
    let flags = std::fs::read_to_string(dir.join("flags")).ok()?;
    let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).ok()?;
    Some(LinkState {
        is_bridge: dir.join("bridge").is_dir(),
        up: flags & libc::IFF_UP as u32 != 0,
        vlan_filtering: std::fs::read_to_string(dir.join("bridge/vlan_filtering"))
            .ok()
            .map(|v| v.trim() == "1"),
        managed: std::fs::read_to_string(dir.join("ifalias"))
            .is_ok_and(|a| a.trim_end_matches('\n') == MANAGED_ALIAS),
    })
}

/// The VLANs of the bridge's own port, read over netlink by the daemon's
/// own code; `Err` carries why they could not be read.
fn self_vlans(bridge: &str) -> Result<Vec<PortVlan>, String> {
    let runtime = super::super::view::runtime().map_err(|e| format!("{e:#}"))?;
    runtime
        .block_on(crate::network::bridge_self_vlans(bridge))
        .map_err(|e| crate::errors::chain(&e))
}

/// With `network.vlan` on a VLAN-filtering bridge, the bridge's own port
/// must be an untagged member of the VLAN with it as PVID: the gateway
/// address pvecri puts on the bridge lives there, and without it pods
/// reach no gateway. The daemon sets it on a bridge it created (at its
/// next start, after a change of `network.vlan`); an existing bridge's
/// VLANs are the operator's.
fn gateway_vlan_verdict(
    name: &str,
    vid: u16,
    managed: bool,
    vlans: &Result<Vec<PortVlan>, String>,
) -> Check {
    const CHECK: &str = "vlan gateway";
    let vlans = match vlans {
        Ok(v) => v,
        Err(why) => {
            return Check::warn(
                CHECK,
                format!("cannot read the VLANs of {name}'s own port: {why}"),
                format!(
                    "`bridge vlan show dev {name}` must list VLAN {vid} as \"PVID Egress Untagged\""
                ),
            )
        }
    };
    let entry = vlans.iter().find(|v| v.vid == vid);
    if entry.is_some_and(|v| v.pvid && v.untagged) {
        return Check::ok(
            CHECK,
            format!("{name}'s own port (the pods' gateway) is in VLAN {vid}, untagged, as PVID"),
        );
    }
    let has = match (entry, vlans.iter().find(|v| v.pvid)) {
        (None, _) => format!("{name}'s own port is not in VLAN {vid}"),
        (Some(v), _) if !v.pvid && !v.untagged => {
            format!("{name}'s own port has VLAN {vid} tagged and not as PVID")
        }
        (Some(v), _) if !v.untagged => format!("{name}'s own port has VLAN {vid} tagged"),
        (Some(_), Some(other)) => format!(
            "{name}'s own port has VLAN {vid} but its PVID is {}",
            other.vid
        ),
        (Some(_), None) => format!("{name}'s own port has VLAN {vid} but not as PVID"),
    };
    if managed {
        Check::warn(
            CHECK,
            format!("{has}: pods in VLAN {vid} reach no gateway until the daemon sets it"),
            "restart the daemon (`systemctl restart pvecri`), which puts the own port of the \
             bridge it created into network.vlan",
        )
    } else {
        Check::fail(
            CHECK,
            format!("{has}: pods in VLAN {vid} cannot reach the gateway address on {name}"),
            format!(
                "bridge vlan add dev {name} vid {vid} pvid untagged self; to keep it over \
                 reboots, add `post-up bridge vlan add dev {name} vid {vid} pvid untagged self` \
                 to {name}'s stanza in /etc/network/interfaces"
            ),
        )
    }
}

/// With `network.vlan`, an existing bridge must filter VLANs. `None` when
/// the bridge line already says what is wrong (not a bridge).
fn vlan_verdict(name: &str, vid: u16, state: LinkState) -> Option<Check> {
    if !state.is_bridge {
        return None;
    }
    Some(match state.vlan_filtering {
        Some(true) => Check::ok(
            "vlan",
            format!("{name} filters VLANs; pod ports join VLAN {vid} untagged"),
        ),
        Some(false) => Check::fail(
            "vlan",
            format!("network.vlan = {vid} but {name} does not filter VLANs: pods get no network"),
            format!(
                "make {name} VLAN-aware (Proxmox: the bridge's \"VLAN aware\" box, \
                 `bridge-vlan-aware yes`; or `ip link set {name} type bridge vlan_filtering 1`), \
                 or remove network.vlan"
            ),
        ),
        None => Check::fail(
            "vlan",
            format!("network.vlan = {vid} but this kernel has no VLAN filtering on bridges"),
            "boot a kernel with CONFIG_BRIDGE_VLAN_FILTERING (the Proxmox and Debian kernels \
             have it), or remove network.vlan",
        ),
    })
}

fn bridge_verdict(name: &str, state: Option<LinkState>, daemon_running: bool) -> Check {
    match state {
        None if daemon_running => Check::fail(
            "bridge",
            format!("{name} does not exist although the daemon runs"),
            "see the NetworkReady line; restart the daemon, which creates it (`systemctl restart pvecri`)",
        ),
        None => Check::warn(
            "bridge",
            format!("{name} does not exist yet"),
            "start the daemon, which creates it (`systemctl start pvecri`)",
        ),
        Some(s) if !s.is_bridge => Check::fail(
            "bridge",
            format!("{name} exists but is not a bridge"),
            "set network.bridge to a Linux bridge (or a free name), or remove the interface",
        ),
        Some(s) if !s.up => Check::fail(
            "bridge",
            format!("{name} is down: pods have no network"),
            format!("ip link set {name} up"),
        ),
        Some(_) => Check::ok("bridge", format!("{name} is a bridge and up")),
    }
}

/// The network config the daemon would use. None yet is a warning, not a
/// failure: network add-ons install theirs once the node has joined, and
/// the daemon picks it up then.
fn conf_verdict(dir: &Path, conf: &Result<ConfList, CniError>) -> Check {
    match conf {
        Ok(c) => Check::ok(
            "cni config",
            format!(
                "{}: network {:?}, CNI {}, plugins {}",
                c.path.display(),
                c.name,
                c.cni_version,
                plugin_types(c).join(", ")
            ),
        ),
        Err(CniError::NoConfig(_)) => Check::warn(
            "cni config",
            format!(
                "no network config (*.conflist, *.conf, *.json) in {}: NetworkReady stays false",
                dir.display()
            ),
            format!(
                "install the cluster's network add-on, or write a conflist into {}",
                dir.display()
            ),
        ),
        Err(e) => Check::fail(
            "cni config",
            e.to_string(),
            "correct the file (it must be a JSON network config list), or remove it",
        ),
    }
}

fn plugin_types(conf: &ConfList) -> Vec<&str> {
    conf.plugins
        .iter()
        .map(|p| p["type"].as_str().unwrap_or_default())
        .collect()
}

/// Every plugin type of `conf` must be a file name found as an executable
/// (`present`) in one of `bin_dirs`.
fn plugins_verdict(
    conf: &ConfList,
    bin_dirs: &[PathBuf],
    present: &dyn Fn(&Path) -> bool,
) -> Check {
    let dirs = bin_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let (bad_names, names): (Vec<&str>, Vec<&str>) = plugin_types(conf)
        .into_iter()
        .partition(|t| t.is_empty() || t.contains('/') || *t == "." || *t == "..");
    if !bad_names.is_empty() {
        return Check::fail(
            "cni plugins",
            format!(
                "{} names plugin types that are not file names: {}",
                conf.path.display(),
                bad_names.join(", ")
            ),
            "a plugin `type` is the name of an executable in cni_bin_dirs",
        );
    }
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|t| !bin_dirs.iter().any(|d| present(&d.join(t))))
        .collect();
    if missing.is_empty() {
        Check::ok(
            "cni plugins",
            format!("{} found in {dirs}", names.join(", ")),
        )
    } else {
        let first = bin_dirs
            .first()
            .map_or("/opt/cni/bin".to_owned(), |d| d.display().to_string());
        Check::fail(
            "cni plugins",
            format!("{} not found in {dirs}", missing.join(", ")),
            format!(
                "install them into {first} (containernetworking-plugins for the standard ones, \
                 the network add-on for its own), or add their directory to cni_bin_dirs"
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::Level;
    use super::*;

    fn conflist(dir: &Path, text: &str) -> Result<ConfList, CniError> {
        std::fs::write(dir.join("10-pods.conflist"), text).unwrap();
        cni::load(dir)
    }

    #[test]
    fn a_cni_config_must_exist_and_parse() {
        let dir = tempfile::tempdir().unwrap();
        let c = conf_verdict(dir.path(), &cni::load(dir.path()));
        assert_eq!(c.level, Level::Warn, "none yet: an add-on brings it");
        assert!(c.fix.unwrap().contains("network add-on"));

        let c = conf_verdict(dir.path(), &conflist(dir.path(), "{\"name\": \"pods\", "));
        assert_eq!(c.level, Level::Fail);
        assert!(c.detail.contains("10-pods.conflist"), "{}", c.detail);

        let text = r#"{"cniVersion": "1.0.0", "name": "pods", "plugins": [
            {"type": "bridge", "ipam": {"type": "host-local"}},
            {"type": "portmap", "capabilities": {"portMappings": true}}]}"#;
        let c = conf_verdict(dir.path(), &conflist(dir.path(), text));
        assert_eq!(c.level, Level::Ok, "{}", c.detail);
        assert!(
            c.detail.ends_with("plugins bridge, portmap"),
            "{}",
            c.detail
        );
    }

    #[test]
    fn every_plugin_type_must_be_in_a_bin_dir() {
        let dir = tempfile::tempdir().unwrap();
        let conf = conflist(
            dir.path(),
            r#"{"name": "pods", "plugins": [{"type": "bridge"}, {"type": "portmap"}, {"type": "flannel"}]}"#,
        )
        .unwrap();
        let dirs = [PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")];
        let installed = |p: &Path| {
            [
                "/opt/cni/bin/bridge",
                "/opt/cni/bin/portmap",
                "/usr/lib/cni/flannel",
            ]
            .iter()
            .any(|i| p == Path::new(i))
        };
        let c = plugins_verdict(&conf, &dirs, &installed);
        assert_eq!(c.level, Level::Ok, "{}", c.detail);

        let c = plugins_verdict(&conf, &dirs[..1], &installed);
        assert_eq!(c.level, Level::Fail);
        assert_eq!(c.detail, "flannel not found in /opt/cni/bin");
        assert!(c.fix.unwrap().contains("into /opt/cni/bin"));

        // A type that would lead out of the bin dirs is refused outright.
        let conf = conflist(
            dir.path(),
            r#"{"name": "pods", "plugins": [{"type": "../../bin/sh"}]}"#,
        )
        .unwrap();
        assert_eq!(
            plugins_verdict(&conf, &dirs, &|_: &Path| true).level,
            Level::Fail
        );
    }

    #[test]
    fn the_bridge_must_be_a_bridge_and_up() {
        let up = LinkState {
            is_bridge: true,
            up: true,
            vlan_filtering: Some(false),
            managed: false,
        };
        assert_eq!(bridge_verdict("pvecri0", Some(up), true).level, Level::Ok);
        assert_eq!(bridge_verdict("pvecri0", None, false).level, Level::Warn);
        assert_eq!(bridge_verdict("pvecri0", None, true).level, Level::Fail);
        let down = bridge_verdict("vmbr1", Some(LinkState { up: false, ..up }), true);
        assert_eq!(down.level, Level::Fail);
        assert_eq!(down.fix.as_deref(), Some("ip link set vmbr1 up"));
        let eth = LinkState {
            is_bridge: false,
            up: true,
            vlan_filtering: None,
            managed: false,
        };
        assert_eq!(bridge_verdict("eth0", Some(eth), true).level, Level::Fail);
    }

    #[test]
    fn with_a_vlan_the_bridge_must_filter_vlans() {
        let bridge = |vlan_filtering| LinkState {
            is_bridge: true,
            up: true,
            vlan_filtering,
            managed: false,
        };
        let ok = vlan_verdict("vmbr1", 20, bridge(Some(true))).unwrap();
        assert_eq!(ok.level, Level::Ok);
        let off = vlan_verdict("vmbr1", 20, bridge(Some(false))).unwrap();
        assert_eq!(off.level, Level::Fail);
        assert!(
            off.fix
                .as_deref()
                .is_some_and(|f| f.contains("ip link set vmbr1 type bridge vlan_filtering 1")),
            "{off:?}"
        );
        let kernel = vlan_verdict("vmbr1", 20, bridge(None)).unwrap();
        assert!(kernel.detail.contains("kernel"), "{kernel:?}");
        // Not a bridge: the bridge line says so.
        let eth = LinkState {
            is_bridge: false,
            ..bridge(None)
        };
        assert_eq!(vlan_verdict("eth0", 20, eth), None);
    }

    #[test]
    fn with_a_vlan_the_bridges_own_port_must_be_its_untagged_pvid_member() {
        let vlan = |vid, pvid, untagged| PortVlan {
            vid,
            pvid,
            untagged,
        };
        let ok = gateway_vlan_verdict("vmbr1", 20, false, &Ok(vec![vlan(20, true, true)]));
        assert_eq!(ok.level, Level::Ok, "{ok:?}");

        // Proxmox's default: the bridge itself only in VLAN 1.
        let default = gateway_vlan_verdict("vmbr1", 20, false, &Ok(vec![vlan(1, true, true)]));
        assert_eq!(default.level, Level::Fail);
        assert!(default.detail.contains("not in VLAN 20"), "{default:?}");
        assert!(
            default.fix.as_deref().is_some_and(
                |f| f.starts_with("bridge vlan add dev vmbr1 vid 20 pvid untagged self")
            ),
            "{default:?}"
        );
        let tagged = gateway_vlan_verdict(
            "vmbr1",
            20,
            false,
            &Ok(vec![vlan(1, true, true), vlan(20, false, false)]),
        );
        assert_eq!(tagged.level, Level::Fail);
        assert!(tagged.detail.contains("tagged"), "{tagged:?}");
        let other_pvid = gateway_vlan_verdict(
            "vmbr1",
            20,
            false,
            &Ok(vec![vlan(1, true, true), vlan(20, false, true)]),
        );
        assert!(other_pvid.detail.contains("PVID is 1"), "{other_pvid:?}");
        assert_eq!(
            gateway_vlan_verdict("vmbr1", 20, false, &Ok(vec![])).level,
            Level::Fail
        );

        // pvecri's own bridge: the daemon fixes it when it starts.
        let managed = gateway_vlan_verdict("pvecri0", 20, true, &Ok(vec![vlan(30, true, true)]));
        assert_eq!(managed.level, Level::Warn);
        assert!(managed
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("restart")));

        let unreadable = gateway_vlan_verdict(
            "vmbr1",
            20,
            false,
            &Err("netlink: permission denied".into()),
        );
        assert_eq!(unreadable.level, Level::Warn);
        assert!(unreadable.detail.contains("permission denied"));
    }

    #[test]
    fn the_checked_table_is_the_daemons() {
        let net = NetworkConfig {
            pod_cidr_v6: "fd00:77::/64".to_owned(),
            ..NetworkConfig::default()
        };
        let script = table_script(&net).unwrap();
        assert!(script.contains("table ip pvecri-pvecri0 {"), "{script}");
        assert!(script.contains("table ip6 pvecri-pvecri0 {"), "{script}");
        assert!(script.contains("ip saddr 10.77.0.0/16"), "{script}");
    }
}
