//! The pod's files in `S/sandboxes/<sandbox-id>/`: `hostname`, `hosts` and
//! `resolv.conf`, bind-mounted into every container of the pod.
//!
//! Each file is written to a temporary name and renamed, so a reader never
//! sees half a file. There is no fsync: the files only matter while the
//! sandbox's namespaces exist, and those live in `/run` and do not survive
//! the crash that could tear a file. A bind mount pins the inode, so a
//! rename after containers started is invisible to them: write the files
//! before the first container is created.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::hostname::{validate_hostname, InvalidHostname};

const MAX_DOMAIN: usize = 253;
const MAX_OPTION: usize = 256;

/// The pod's DNS settings, as the kubelet sends them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodFiles {
    pub hostname: PathBuf,
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
}

#[derive(Debug, Error)]
pub(crate) enum FilesError {
    #[error(transparent)]
    Hostname(#[from] InvalidHostname),
    #[error("invalid dns {field} entry {value:?}: {reason}")]
    InvalidDns {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("reading the host's resolv.conf {path} failed")]
    HostResolv {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing pod files in {dir}: {op} {path} failed")]
    Io {
        dir: PathBuf,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Writes `hostname`, `hosts` (naming the pod `127.0.1.1`) and
/// `resolv.conf` into `dir`, creating it.
/// Without DNS settings, or with all three lists empty, `resolv.conf` is a
/// copy of `host_resolv` (normally `/etc/resolv.conf`; a missing one gives
/// an empty file, as the host itself then has no resolver config).
pub(crate) fn write_pod_files(
    dir: &Path,
    hostname: &str,
    dns: Option<&DnsConfig>,
    host_resolv: &Path,
) -> Result<PodFiles, FilesError> {
    validate_hostname(hostname)?;
    let resolv = match dns.filter(|d| !is_empty(d)) {
        Some(dns) => resolv_conf_text(dns)?.into_bytes(),
        None => match fs::read(host_resolv) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(FilesError::HostResolv {
                    path: host_resolv.to_owned(),
                    source,
                })
            }
        },
    };
    fs::create_dir_all(dir).map_err(|source| FilesError::Io {
        dir: dir.to_owned(),
        op: "create",
        path: dir.to_owned(),
        source,
    })?;
    Ok(PodFiles {
        hostname: write_atomic(dir, "hostname", format!("{hostname}\n").as_bytes())?,
        hosts: write_atomic(dir, "hosts", hosts_text(hostname, &[]).as_bytes())?,
        resolv_conf: write_atomic(dir, "resolv.conf", &resolv)?,
    })
}

/// The kubelet's managed hosts file: the loopback and IPv6 multicast names,
/// then `<ip> <hostname>` for each pod IP, or `127.0.1.1 <hostname>` when
/// there is none yet. Inputs are expected to be validated.
pub(crate) fn hosts_text(hostname: &str, pod_ips: &[String]) -> String {
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    if pod_ips.is_empty() {
        text.push_str(&format!("127.0.1.1\t{hostname}\n"));
    }
    for ip in pod_ips {
        text.push_str(&format!("{ip}\t{hostname}\n"));
    }
    text
}

fn is_empty(dns: &DnsConfig) -> bool {
    dns.servers.is_empty() && dns.searches.is_empty() && dns.options.is_empty()
}

fn resolv_conf_text(dns: &DnsConfig) -> Result<String, FilesError> {
    for server in &dns.servers {
        check_server(server)?;
    }
    for search in &dns.searches {
        check_search(search)?;
    }
    for option in &dns.options {
        check_option(option)?;
    }
    let mut text = String::new();
    if !dns.searches.is_empty() {
        text.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        text.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Ok(text)
}

fn invalid(field: &'static str, value: &str, reason: &'static str) -> FilesError {
    FilesError::InvalidDns {
        field,
        value: value.to_owned(),
        reason,
    }
}

/// An IP address, optionally with an IPv6 zone (`fe80::1%eth0`).
fn check_server(server: &str) -> Result<(), FilesError> {
    let (addr, zone) = match server.split_once('%') {
        Some((addr, zone)) => (addr, Some(zone)),
        None => (server, None),
    };
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => {}
        Ok(IpAddr::V4(_)) if zone.is_none() => {}
        _ => return Err(invalid("servers", server, "not an ip address")),
    }
    if let Some(zone) = zone {
        let ok = !zone.is_empty()
            && zone.len() < libc::IFNAMSIZ
            && zone
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !ok {
            return Err(invalid("servers", server, "not a valid ipv6 zone"));
        }
    }
    Ok(())
}

/// A domain name; a trailing dot is allowed.
fn check_search(search: &str) -> Result<(), FilesError> {
    if search.is_empty() || search.len() > MAX_DOMAIN {
        return Err(invalid("searches", search, "must be 1 to 253 bytes long"));
    }
    let name = search.strip_suffix('.').unwrap_or(search);
    let ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
    });
    if !ok {
        return Err(invalid(
            "searches",
            search,
            "only dot-separated labels of ASCII letters, digits, '-' and '_' are allowed",
        ));
    }
    Ok(())
}

/// One resolver option such as `ndots:5` or `edns0`.
fn check_option(option: &str) -> Result<(), FilesError> {
    if option.is_empty() || option.len() > MAX_OPTION {
        return Err(invalid("options", option, "must be 1 to 256 bytes long"));
    }
    if !option
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'#' && b != b';')
    {
        return Err(invalid(
            "options",
            option,
            "only printable ASCII without spaces or comment characters is allowed",
        ));
    }
    Ok(())
}

fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<PathBuf, FilesError> {
    let target = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let fail = |op, path: &Path| {
        let path = path.to_owned();
        move |source| FilesError::Io {
            dir: dir.to_owned(),
            op,
            path,
            source,
        }
    };
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(contents)?;
            // The umask may have narrowed the mode; containers running as
            // any user must read these files.
            f.set_permissions(fs::Permissions::from_mode(0o644))
        });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(fail("write", &tmp)(e));
    }
    if let Err(e) = fs::rename(&tmp, &target) {
        let _ = fs::remove_file(&tmp);
        return Err(fail("rename", &target)(e));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn dns(servers: &[&str], searches: &[&str], options: &[&str]) -> DnsConfig {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        DnsConfig {
            servers: own(servers),
            searches: own(searches),
            options: own(options),
        }
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    #[test]
    fn writes_the_three_files_from_dns_settings() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sandboxes/sb1");
        let dns = dns(
            &["10.96.0.10", "fd00::a"],
            &["default.svc.cluster.local", "svc.cluster.local."],
            &["ndots:5", "edns0"],
        );
        let host = tmp.path().join("host-resolv.conf");
        fs::write(&host, "nameserver 192.0.2.1\n").unwrap();
        let files = write_pod_files(&dir, "pod-a", Some(&dns), &host).unwrap();

        assert_eq!(read(&files.hostname), "pod-a\n");
        assert_eq!(
            read(&files.resolv_conf),
            "search default.svc.cluster.local svc.cluster.local.\n\
             nameserver 10.96.0.10\n\
             nameserver fd00::a\n\
             options ndots:5 edns0\n"
        );
        let hosts = read(&files.hosts);
        assert!(hosts.contains("127.0.0.1\tlocalhost\n"));
        assert!(hosts.contains("::1\tlocalhost ip6-localhost ip6-loopback\n"));
        assert!(hosts.contains("fe00::2\tip6-allrouters\n"));
        assert!(hosts.ends_with("127.0.1.1\tpod-a\n"));
        for path in [&files.hostname, &files.hosts, &files.resolv_conf] {
            assert_eq!(path.parent(), Some(dir.as_path()));
            assert_eq!(
                fs::metadata(path).unwrap().mode() & 0o777,
                0o644,
                "{path:?}"
            );
        }
        // Only the three files: no temporaries left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 3);
    }

    #[test]
    fn only_non_empty_dns_lists_produce_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let files = write_pod_files(
            tmp.path(),
            "pod-a",
            Some(&dns(&["10.96.0.10"], &[], &[])),
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(read(&files.resolv_conf), "nameserver 10.96.0.10\n");
    }

    #[test]
    fn no_or_empty_dns_copies_the_host_resolv_conf() {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("host-resolv.conf");
        let host_text = "# host\nnameserver 192.0.2.1\nsearch example.org\n";
        fs::write(&host, host_text).unwrap();
        for dns in [None, Some(DnsConfig::default())] {
            let dir = tmp.path().join("pod");
            let files = write_pod_files(&dir, "pod-a", dns.as_ref(), &host).unwrap();
            assert_eq!(read(&files.resolv_conf), host_text);
        }
        let files =
            write_pod_files(tmp.path(), "pod-a", None, &tmp.path().join("missing")).unwrap();
        assert_eq!(read(&files.resolv_conf), "");
    }

    #[test]
    fn rewriting_replaces_the_files() {
        let tmp = tempfile::tempdir().unwrap();
        let host = Path::new("/nonexistent");
        write_pod_files(tmp.path(), "pod-a", None, host).unwrap();
        let files = write_pod_files(tmp.path(), "pod-b", None, host).unwrap();
        assert_eq!(read(&files.hostname), "pod-b\n");
        assert!(read(&files.hosts).ends_with("127.0.1.1\tpod-b\n"));
    }

    #[test]
    fn bad_hostname_is_refused_before_writing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pod");
        for bad in ["", "pod_a", "pod-a\n127.0.0.1 evil", &"a".repeat(65)] {
            let err = write_pod_files(&dir, bad, None, Path::new("/nonexistent")).unwrap_err();
            assert!(matches!(err, FilesError::Hostname(_)), "{bad:?}: {err}");
            assert!(err.to_string().contains("invalid hostname"), "{err}");
        }
        assert!(!dir.exists());
    }

    #[test]
    fn dns_injection_is_refused_naming_the_field() {
        let tmp = tempfile::tempdir().unwrap();
        let cases = [
            (dns(&["10.0.0.1\nnameserver 6.6.6.6"], &[], &[]), "servers"),
            (dns(&["10.0.0.1 6.6.6.6"], &[], &[]), "servers"),
            (dns(&["ns.example.com"], &[], &[]), "servers"),
            (dns(&["10.0.0.1%eth0"], &[], &[]), "servers"),
            (
                dns(&[], &["a.example\nnameserver 6.6.6.6"], &[]),
                "searches",
            ),
            (dns(&[], &["a b"], &[]), "searches"),
            (dns(&[], &[""], &[]), "searches"),
            (dns(&[], &[], &["ndots:5\nnameserver 6.6.6.6"]), "options"),
            (dns(&[], &[], &["ndots:5 rotate"]), "options"),
            (dns(&[], &[], &["#x"]), "options"),
        ];
        for (dns, field) in cases {
            let dir = tmp.path().join("pod");
            let err =
                write_pod_files(&dir, "pod-a", Some(&dns), Path::new("/nonexistent")).unwrap_err();
            match &err {
                FilesError::InvalidDns { field: f, .. } => assert_eq!(*f, field, "{dns:?}"),
                other => panic!("{dns:?}: {other}"),
            }
            assert!(err.to_string().contains(field), "{err}");
            assert!(!dir.exists());
        }
        // An IPv6 zone is legitimate.
        write_pod_files(
            tmp.path(),
            "pod-a",
            Some(&dns(&["fe80::1%eth0"], &[], &[])),
            Path::new("/nonexistent"),
        )
        .unwrap();
    }
}
