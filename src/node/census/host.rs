//! The census's view of the node: the one seam between its counting and
//! the kernel's interfaces (`/proc`, cgroupfs, sysfs, `nft`), so every
//! kind is tested on fixtures and only [`RealHost`] reads the machine.

use std::path::PathBuf;

use crate::cgroups::tree::{self, Hierarchy};

/// A process as the census sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Process {
    pub pid: i32,
    pub argv: Vec<String>,
}

/// Why a source of the census could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostError {
    #[error("cannot read {what}")]
    Read {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot list the cgroup hierarchies")]
    Cgroups(#[source] tree::TreeError),
    #[error("cannot run `nft -j list ruleset`")]
    NftSpawn(#[source] std::io::Error),
    #[error("`nft -j list ruleset` failed: {stderr}")]
    NftFailed { stderr: String },
}

/// What the census reads from the node.
pub(crate) trait Host {
    /// The mounted cgroup hierarchies.
    fn hierarchies(&self) -> Result<Vec<Hierarchy>, HostError>;
    /// The text of `/proc/self/mountinfo`.
    fn mountinfo(&self) -> Result<String, HostError>;
    /// Every live (not zombie) process with its command line.
    fn processes(&self) -> Result<Vec<Process>, HostError>;
    /// The directory listing network interfaces (`/sys/class/net`).
    fn net_dir(&self) -> PathBuf;
    /// `nft -j list ruleset`; `None` when nft is not installed (then no
    /// pvecri table can exist either).
    fn nft_ruleset(&self) -> Result<Option<String>, HostError>;
}

/// The machine the census runs on.
pub(crate) struct RealHost;

impl Host for RealHost {
    fn hierarchies(&self) -> Result<Vec<Hierarchy>, HostError> {
        tree::hierarchies().map_err(HostError::Cgroups)
    }

    fn mountinfo(&self) -> Result<String, HostError> {
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| HostError::Read {
            what: "/proc/self/mountinfo",
            source,
        })
    }

    fn processes(&self) -> Result<Vec<Process>, HostError> {
        let entries = std::fs::read_dir("/proc").map_err(|source| HostError::Read {
            what: "/proc",
            source,
        })?;
        let mut out = Vec::new();
        for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
            // Gone since the listing, or a kernel thread: no command line.
            let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            if raw.is_empty() || tree::is_zombie(pid) {
                continue;
            }
            let argv = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            out.push(Process { pid, argv });
        }
        Ok(out)
    }

    fn net_dir(&self) -> PathBuf {
        PathBuf::from("/sys/class/net")
    }

    fn nft_ruleset(&self) -> Result<Option<String>, HostError> {
        let out = match std::process::Command::new("nft")
            .args(["-j", "list", "ruleset"])
            .stdin(std::process::Stdio::null())
            .output()
        {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(HostError::NftSpawn(e)),
        };
        if !out.status.success() {
            return Err(HostError::NftFailed {
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
    }
}
