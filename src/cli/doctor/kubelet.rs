//! The kubelet's side of the contract: it must talk to pvecri's socket and
//! manage pod cgroups with the same driver as pvecri. Read from the running
//! kubelet (its command line, and the file its `--config` names) or, with
//! no kubelet running, from kubeadm's `/var/lib/kubelet/config.yaml`.
//! Command-line flags win over the file, as in the kubelet.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Check;
use crate::config::{CgroupDriver, Config};

/// Where kubeadm writes the kubelet's configuration.
const DEFAULT_CONFIG: &str = "/var/lib/kubelet/config.yaml";

pub(super) fn checks(config: &Config) -> Vec<Check> {
    let processes = find_processes();
    let found: Vec<Result<Found, Check>> = if processes.is_empty() {
        let default = Path::new(DEFAULT_CONFIG);
        if !default.exists() {
            return vec![Check::ok(
                "kubelet",
                format!("no kubelet found (no process, no {DEFAULT_CONFIG})"),
            )];
        }
        vec![read(
            "no kubelet running".to_owned(),
            &Flags::default(),
            Some(default.to_owned()),
        )]
    } else {
        processes
            .iter()
            .map(|(pid, args)| {
                let flags = parse_flags(args);
                let file = flags.config.as_deref().map(|c| resolve(*pid, c));
                read(format!("kubelet (pid {pid})"), &flags, file)
            })
            .collect()
    };
    // Several kubelets (test clusters): the one that uses this daemon.
    let ours = found.iter().position(|f| {
        f.as_ref().is_ok_and(|f| {
            f.settings.endpoint.as_deref().and_then(endpoint_path)
                == endpoint_path(&config.socket.to_string_lossy())
        })
    });
    let Some(chosen) = found.into_iter().nth(ours.unwrap_or(0)) else {
        return Vec::new();
    };
    let f = match chosen {
        Ok(f) => f,
        Err(check) => return vec![check],
    };
    vec![
        Check::ok("kubelet", f.origin),
        driver_verdict(f.settings.cgroup_driver.as_deref(), config.cgroup_driver),
        endpoint_verdict(
            f.settings.endpoint.as_deref(),
            &config.socket,
            f.file.as_deref(),
        ),
    ]
}

/// A kubelet's settings and where they were read.
struct Found {
    origin: String,
    file: Option<PathBuf>,
    settings: Settings,
}

/// Reads the config `file` (if any) and puts `flags` over it; a file that
/// cannot be read or parsed is the failing line.
fn read(origin: String, flags: &Flags, file: Option<PathBuf>) -> Result<Found, Check> {
    let file_config = match &file {
        None => KubeletConfig::default(),
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| parse_config(&text))
            .map_err(|e| {
                Check::fail(
                    "kubelet",
                    format!("{origin}: cannot read {}: {e}", path.display()),
                    "correct the kubelet's config file (a KubeletConfiguration in YAML)",
                )
            })?,
    };
    let origin = match &file {
        Some(path) => format!("{origin}, {}", path.display()),
        None => format!("{origin}, flags only"),
    };
    Ok(Found {
        origin,
        file,
        settings: Settings::merge(flags, file_config),
    })
}

/// Every process whose program is `kubelet`, with its arguments, by pid.
fn find_processes() -> Vec<(u32, Vec<String>)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter()
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args = split_cmdline(&raw);
            is_kubelet(args.first()?).then_some((pid, args))
        })
        .collect()
}

/// `/proc/<pid>/cmdline`: NUL-terminated arguments.
fn split_cmdline(raw: &[u8]) -> Vec<String> {
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn is_kubelet(argv0: &str) -> bool {
    Path::new(argv0).file_name().is_some_and(|n| n == "kubelet")
}

/// A relative `--config` is relative to the kubelet's working directory.
fn resolve(pid: u32, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_owned()
    } else {
        std::fs::read_link(format!("/proc/{pid}/cwd"))
            .unwrap_or_default()
            .join(path)
    }
}

/// The kubelet flags that matter here.
#[derive(Debug, Default, PartialEq, Eq)]
struct Flags {
    config: Option<String>,
    cgroup_driver: Option<String>,
    endpoint: Option<String>,
}

/// `--name=value` or `--name value` (pflag's forms; one dash works too).
fn parse_flags(args: &[String]) -> Flags {
    let mut flags = Flags::default();
    let mut it = args.iter().skip(1);
    while let Some(arg) = it.next() {
        let Some(name) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            continue;
        };
        let (name, value) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (name, None),
        };
        let slot = match name {
            "config" => &mut flags.config,
            "cgroup-driver" => &mut flags.cgroup_driver,
            "container-runtime-endpoint" => &mut flags.endpoint,
            _ => continue,
        };
        *slot = value.or_else(|| it.next().cloned());
    }
    flags
}

/// The fields of a `KubeletConfiguration` read here; the rest is the
/// kubelet's business.
#[derive(Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KubeletConfig {
    kind: Option<String>,
    cgroup_driver: Option<String>,
    container_runtime_endpoint: Option<String>,
}

fn parse_config(text: &str) -> Result<KubeletConfig, String> {
    // An empty document is a config with every default.
    if text.trim().is_empty() {
        return Ok(KubeletConfig::default());
    }
    let config: KubeletConfig = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    match config.kind.as_deref() {
        None | Some("KubeletConfiguration") => Ok(config),
        Some(other) => Err(format!("kind is {other}, not KubeletConfiguration")),
    }
}

/// What the kubelet runs with: flags over the file.
#[derive(Debug, PartialEq, Eq)]
struct Settings {
    cgroup_driver: Option<String>,
    endpoint: Option<String>,
}

impl Settings {
    fn merge(flags: &Flags, file: KubeletConfig) -> Self {
        Self {
            cgroup_driver: flags.cgroup_driver.clone().or(file.cgroup_driver),
            endpoint: flags.endpoint.clone().or(file.container_runtime_endpoint),
        }
    }
}

fn driver_name(d: CgroupDriver) -> &'static str {
    match d {
        CgroupDriver::Cgroupfs => "cgroupfs",
        CgroupDriver::Systemd => "systemd",
    }
}

/// The kubelet's `cgroupDriver` (its default is `cgroupfs`) must be the
/// one pvecri reports in RuntimeConfig: with another, the kubelet names pod
/// cgroups in a form pvecri does not create them in.
fn driver_verdict(kubelet: Option<&str>, ours: CgroupDriver) -> Check {
    let ours = driver_name(ours);
    let theirs = kubelet.filter(|d| !d.is_empty()).unwrap_or("cgroupfs");
    if theirs == ours {
        Check::ok(
            "kubelet cgroups",
            format!("cgroupDriver {theirs}, as pvecri's"),
        )
    } else {
        Check::fail(
            "kubelet cgroups",
            format!("the kubelet's cgroupDriver is {theirs}, pvecri's cgroup_driver is {ours}"),
            format!(
                "set cgroupDriver: {ours} in the kubelet's config (or cgroup_driver = \"{theirs}\" \
                 in pvecri's) and restart both"
            ),
        )
    }
}

/// The path a CRI endpoint names: `unix:///path`, or a bare path (which
/// the kubelet still accepts as a unix socket).
fn endpoint_path(endpoint: &str) -> Option<PathBuf> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    Path::new(path).is_absolute().then(|| {
        // /var/run is a symlink to /run on every systemd distribution.
        match Path::new(path).strip_prefix("/var/run") {
            Ok(rest) => Path::new("/run").join(rest),
            Err(_) => PathBuf::from(path),
        }
    })
}

/// The kubelet's runtime endpoint must be pvecri's socket.
fn endpoint_verdict(endpoint: Option<&str>, socket: &Path, file: Option<&Path>) -> Check {
    let want = format!("unix://{}", socket.display());
    let fix = match file {
        Some(f) => format!(
            "set containerRuntimeEndpoint: {want} in {} and restart the kubelet",
            f.display()
        ),
        None => format!("start the kubelet with --container-runtime-endpoint={want}"),
    };
    let Some(endpoint) = endpoint.filter(|e| !e.is_empty()) else {
        return Check::fail(
            "kubelet endpoint",
            "not set: the kubelet talks to containerd's socket, its default",
            fix,
        );
    };
    if endpoint_path(endpoint).as_deref() == endpoint_path(&socket.to_string_lossy()).as_deref() {
        Check::ok("kubelet endpoint", endpoint.to_owned())
    } else {
        Check::fail(
            "kubelet endpoint",
            format!("{endpoint} is not pvecri's socket {}", socket.display()),
            fix,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::Level;
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn kubelet_flags_in_both_forms() {
        let f = parse_flags(&args(
            "/usr/bin/kubelet --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
             --config=/var/lib/kubelet/config.yaml --container-runtime-endpoint \
             unix:///run/pvecri/pvecri.sock --pod-infra-container-image=registry.k8s.io/pause:3.10",
        ));
        assert_eq!(f.config.as_deref(), Some("/var/lib/kubelet/config.yaml"));
        assert_eq!(
            f.endpoint.as_deref(),
            Some("unix:///run/pvecri/pvecri.sock")
        );
        assert_eq!(f.cgroup_driver, None);
        let f = parse_flags(&args("kubelet -cgroup-driver systemd --config"));
        assert_eq!(f.cgroup_driver.as_deref(), Some("systemd"));
        assert_eq!(f.config, None, "a flag without its value");
    }

    #[test]
    fn the_kubelet_is_found_by_its_program_name() {
        let raw = b"/usr/local/bin/kubelet\0--config\0/etc/k/c.yaml\0";
        let a = split_cmdline(raw);
        assert_eq!(a, ["/usr/local/bin/kubelet", "--config", "/etc/k/c.yaml"]);
        assert!(is_kubelet(&a[0]));
        assert!(is_kubelet("kubelet"));
        assert!(!is_kubelet("/usr/bin/kubelet-wrapper"));
        assert!(!is_kubelet("/usr/bin/kubectl"));
    }

    #[test]
    fn kubelet_config_yaml_is_read_for_the_two_fields() {
        let text = "\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: false
cgroupDriver: systemd
containerRuntimeEndpoint: unix:///run/pvecri/pvecri.sock
evictionHard:
  nodefs.available: 10%
";
        let c = parse_config(text).unwrap();
        assert_eq!(c.cgroup_driver.as_deref(), Some("systemd"));
        assert_eq!(
            c.container_runtime_endpoint.as_deref(),
            Some("unix:///run/pvecri/pvecri.sock")
        );
        assert_eq!(parse_config("").unwrap(), KubeletConfig::default());
        assert!(parse_config("kind: KubeProxyConfiguration\n").is_err());
        assert!(parse_config("cgroupDriver: [systemd\n").is_err());

        // A flag wins over the file.
        let flags = Flags {
            cgroup_driver: Some("cgroupfs".into()),
            ..Flags::default()
        };
        let s = Settings::merge(&flags, c);
        assert_eq!(s.cgroup_driver.as_deref(), Some("cgroupfs"));
        assert_eq!(
            s.endpoint.as_deref(),
            Some("unix:///run/pvecri/pvecri.sock")
        );
    }

    #[test]
    fn the_cgroup_driver_must_match_pvecris() {
        assert_eq!(
            driver_verdict(None, CgroupDriver::Cgroupfs).level,
            Level::Ok
        );
        assert_eq!(
            driver_verdict(Some("systemd"), CgroupDriver::Systemd).level,
            Level::Ok
        );
        let c = driver_verdict(Some("systemd"), CgroupDriver::Cgroupfs);
        assert_eq!(c.level, Level::Fail);
        assert!(c.fix.unwrap().contains("cgroupDriver: cgroupfs"));
        // The kubelet's default is cgroupfs.
        assert_eq!(
            driver_verdict(None, CgroupDriver::Systemd).level,
            Level::Fail
        );
    }

    #[test]
    fn the_endpoint_must_be_pvecris_socket() {
        let socket = Path::new("/run/pvecri/pvecri.sock");
        let file = Some(Path::new(DEFAULT_CONFIG));
        for ok in [
            "unix:///run/pvecri/pvecri.sock",
            "/run/pvecri/pvecri.sock",
            "unix:///var/run/pvecri/pvecri.sock",
        ] {
            assert_eq!(
                endpoint_verdict(Some(ok), socket, file).level,
                Level::Ok,
                "{ok}"
            );
        }
        let c = endpoint_verdict(Some("unix:///run/containerd/containerd.sock"), socket, file);
        assert_eq!(c.level, Level::Fail);
        assert_eq!(
            c.fix.as_deref(),
            Some("set containerRuntimeEndpoint: unix:///run/pvecri/pvecri.sock in /var/lib/kubelet/config.yaml and restart the kubelet")
        );
        let c = endpoint_verdict(None, socket, None);
        assert_eq!(c.level, Level::Fail);
        assert!(c.detail.contains("containerd"), "{}", c.detail);
        assert!(c
            .fix
            .unwrap()
            .contains("--container-runtime-endpoint=unix:///run/pvecri/pvecri.sock"));
        assert_eq!(
            endpoint_verdict(Some("tcp://10.0.0.1:1234"), socket, file).level,
            Level::Fail
        );
    }
}
