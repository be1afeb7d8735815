//! Per-registry TLS: extra trust roots, a client certificate, and the
//! explicit opt-out of verification, loaded once at start-up from the
//! files `[images.registries."host"]` names.
//!
//! oci-client 0.18 builds its own reqwest client and has no way to present
//! a client certificate or to accept one from outside, so every registry
//! request is made with a reqwest client built here for the host it goes
//! to. The CA bundle is added to the platform's roots for that host only;
//! no other host's connections see it.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The largest PEM file read (a CA bundle of a few hundred certificates).
const PEM_MAX: u64 = 1 << 20;

#[derive(Debug, Error)]
pub(crate) enum TlsError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not usable: {reason}")]
    Unsafe { path: PathBuf, reason: String },
    #[error("{path} holds no usable PEM {what}")]
    Pem {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: Option<reqwest::Error>,
    },
}

/// What the operator configured for one host, as paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    pub ca_file: Option<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    pub skip_verify: bool,
}

/// The loaded TLS settings of one host.
#[derive(Clone, Default)]
pub(crate) struct HostTls {
    roots: Vec<reqwest::Certificate>,
    identity: Option<reqwest::Identity>,
    skip_verify: bool,
}

impl std::fmt::Debug for HostTls {
    // The identity holds a private key: only say whether there is one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostTls")
            .field("roots", &self.roots.len())
            .field("client_certificate", &self.identity.is_some())
            .field("skip_verify", &self.skip_verify)
            .finish()
    }
}

impl HostTls {
    /// Reads and parses the files; any problem is an error, so a typo in
    /// the config stops the daemon instead of silently trusting less (or
    /// more) than intended.
    pub(crate) fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let roots = match &files.ca_file {
            Some(path) => {
                let pem = read_pem(path, false)?;
                let roots =
                    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| TlsError::Pem {
                        path: path.clone(),
                        what: "certificate",
                        source: Some(e),
                    })?;
                if roots.is_empty() {
                    return Err(TlsError::Pem {
                        path: path.clone(),
                        what: "certificate",
                        source: None,
                    });
                }
                roots
            }
            None => Vec::new(),
        };
        let identity = match (&files.client_cert_file, &files.client_key_file) {
            (Some(cert), Some(key)) => {
                let mut pem = read_pem(cert, false)?;
                if !pem.ends_with(b"\n") {
                    pem.push(b'\n');
                }
                pem.extend_from_slice(&read_pem(key, true)?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| TlsError::Pem {
                    path: cert.clone(),
                    what: "client certificate and key",
                    source: Some(e),
                })?;
                Some(identity)
            }
            _ => None,
        };
        Ok(HostTls {
            roots,
            identity,
            skip_verify: files.skip_verify,
        })
    }

    /// `builder` with this host's roots, client certificate and
    /// verification setting.
    pub(super) fn apply(&self, mut builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        if !self.roots.is_empty() {
            builder = builder.tls_certs_merge(self.roots.iter().cloned());
        }
        if let Some(identity) = &self.identity {
            builder = builder.identity(identity.clone());
        }
        if self.skip_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        builder
    }
}

/// A PEM file from the config: a regular file owned by root or by the
/// user the daemon runs as, which nobody else may write (and, for a
/// private key, read), at most [`PEM_MAX`] bytes. Whoever owns a CA file
/// decides which servers the daemon trusts, so a file of any other user is
/// refused however it is mode'd (its owner can chmod it at will).
fn read_pem(path: &Path, private: bool) -> Result<Vec<u8>, TlsError> {
    let unsafe_file = |reason: String| TlsError::Unsafe {
        path: path.to_owned(),
        reason,
    };
    let read_error = |source| TlsError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(unsafe_file("not a regular file".to_owned()));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(unsafe_file(format!(
            "owned by uid {}, not root or the daemon's uid {euid}",
            meta.uid()
        )));
    }
    let forbidden = if private { 0o077 } else { 0o022 };
    if meta.mode() & forbidden != 0 {
        return Err(unsafe_file(format!(
            "mode {:o} lets other users {} it",
            meta.mode() & 0o7777,
            if private { "read or write" } else { "write" }
        )));
    }
    if meta.len() > PEM_MAX {
        return Err(unsafe_file(format!("larger than {PEM_MAX} bytes")));
    }
    let mut pem = Vec::new();
    file.take(PEM_MAX)
        .read_to_end(&mut pem)
        .map_err(read_error)?;
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn unsafe_or_empty_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let writable = write(dir.path(), "ca.pem", "x", 0o666);
        let files = TlsFiles {
            ca_file: Some(writable),
            ..TlsFiles::default()
        };
        let err = HostTls::load(&files).unwrap_err().to_string();
        assert!(err.contains("ca.pem") && err.contains("write"), "{err}");

        let empty = write(dir.path(), "empty.pem", "no pem here\n", 0o644);
        let files = TlsFiles {
            ca_file: Some(empty),
            ..TlsFiles::default()
        };
        let err = HostTls::load(&files).unwrap_err().to_string();
        assert!(err.contains("no usable PEM certificate"), "{err}");

        let files = TlsFiles {
            ca_file: Some(dir.path().to_owned()),
            ..TlsFiles::default()
        };
        assert!(HostTls::load(&files).is_err());

        let cert = write(dir.path(), "c.pem", "", 0o644);
        let key = write(dir.path(), "k.pem", "", 0o644);
        let files = TlsFiles {
            client_cert_file: Some(cert),
            client_key_file: Some(key),
            ..TlsFiles::default()
        };
        let err = HostTls::load(&files).unwrap_err().to_string();
        assert!(
            err.contains("k.pem") && err.contains("read or write"),
            "{err}"
        );
    }

    /// A file in any other user's hands is refused even with a tight mode.
    #[test]
    fn files_of_other_users_are_refused() {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                std::env::var_os("CI").is_none_or(|v| v != "true"),
                "CI=true but not root: file ownership cannot be tested"
            );
            eprintln!("skipping: giving a file to another user needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ca = write(dir.path(), "ca.pem", "x", 0o644);
        let key = write(dir.path(), "k.pem", "x", 0o600);
        std::os::unix::fs::chown(&ca, Some(1000), None).unwrap();
        std::os::unix::fs::chown(&key, Some(1000), None).unwrap();
        let files = TlsFiles {
            ca_file: Some(ca.clone()),
            ..TlsFiles::default()
        };
        let err = HostTls::load(&files).unwrap_err().to_string();
        assert!(err.contains("ca.pem") && err.contains("uid 1000"), "{err}");
        let cert = write(dir.path(), "c.pem", "x", 0o644);
        let files = TlsFiles {
            client_cert_file: Some(cert),
            client_key_file: Some(key),
            ..TlsFiles::default()
        };
        let err = HostTls::load(&files).unwrap_err().to_string();
        assert!(err.contains("k.pem") && err.contains("uid 1000"), "{err}");
        // Root's own file with the same mode passes the check (and then
        // fails for holding no PEM).
        std::os::unix::fs::chown(&ca, Some(0), None).unwrap();
        let files = TlsFiles {
            ca_file: Some(ca),
            ..TlsFiles::default()
        };
        let err = HostTls::load(&files).unwrap_err().to_string();
        assert!(err.contains("no usable PEM"), "{err}");
    }

    #[test]
    fn nothing_configured_changes_nothing() {
        let tls = HostTls::load(&TlsFiles::default()).unwrap();
        assert!(tls.roots.is_empty() && tls.identity.is_none() && !tls.skip_verify);
        assert!(format!("{tls:?}").contains("client_certificate: false"));
    }
}
