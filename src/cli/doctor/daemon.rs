//! The daemon as the kubelet sees it: its socket (a socket, root's, with
//! the configured mode) and, when it answers, the CRI `Status` conditions
//! the kubelet gates the node on.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::Duration;

use super::Check;
use crate::client::CriClient;
use crate::config::{Config, NetworkMode};
use crate::cri::v1;

/// What the other modules need to know besides the lines: some of their
/// verdicts depend on whether a daemon runs.
pub(super) struct DaemonChecks {
    /// The daemon answered a `Status` call.
    pub running: bool,
    pub checks: Vec<Check>,
}

/// How long the daemon gets to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn checks(config: &Config) -> DaemonChecks {
    let socket = socket(config);
    if socket.level != super::Level::Ok {
        return DaemonChecks {
            running: false,
            checks: vec![socket],
        };
    }
    let mut checks = vec![socket];
    let running = match status(config) {
        Ok(conditions) => {
            checks.extend(condition_checks(&conditions, config.network.mode));
            true
        }
        Err(err) => {
            checks.push(Check::warn(
                "daemon",
                format!("does not answer on {}: {err:#}", config.socket.display()),
                "start it (`systemctl start pvecri`); `journalctl -u pvecri` says why it stopped",
            ));
            false
        }
    };
    DaemonChecks { running, checks }
}

fn socket(config: &Config) -> Check {
    let path = &config.socket;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Check::warn(
            "socket",
            format!(
                "{} does not exist: the daemon is not running",
                path.display()
            ),
            "start the service: `systemctl start pvecri` (or `pvecri daemon`)",
        );
    };
    let mode = meta.mode() & 0o777;
    let expected = if config.socket_group.is_some() {
        0o660
    } else {
        0o600
    };
    if !meta.file_type().is_socket() {
        Check::fail(
            "socket",
            format!("{} is not a socket", path.display()),
            "remove it and restart the daemon",
        )
    } else if meta.uid() != 0 || mode & !expected != 0 {
        Check::fail(
            "socket",
            format!(
                "{} is owned by uid {} with mode {mode:o}; expected root and {expected:o}",
                path.display(),
                meta.uid()
            ),
            "restart the daemon, which recreates the socket with the right mode",
        )
    } else {
        Check::ok("socket", format!("{} mode {mode:o} uid 0", path.display()))
    }
}

/// The daemon's `Status` conditions.
fn status(config: &Config) -> anyhow::Result<Vec<v1::RuntimeCondition>> {
    super::super::view::runtime()?.block_on(async {
        let call = async {
            let mut client = CriClient::connect(&config.socket).await?;
            let resp = client
                .runtime
                .status(v1::StatusRequest { verbose: false })
                .await?;
            anyhow::Ok(resp.into_inner().status.unwrap_or_default().conditions)
        };
        tokio::time::timeout(TIMEOUT, call).await?
    })
}

/// One line per condition the kubelet requires: ready, or failed with the
/// daemon's reason and message. A condition missing from the answer fails
/// too: the kubelet treats it as not ready.
fn condition_checks(conditions: &[v1::RuntimeCondition], mode: NetworkMode) -> Vec<Check> {
    let network_fix = match mode {
        NetworkMode::Builtin => {
            "see the bridge and nftables lines above; the daemon retries at its next start \
             (`systemctl restart pvecri`)"
        }
        NetworkMode::Cni => {
            "install the cluster's network add-on, or a conflist in cni_conf_dir \
             (see the cni lines above)"
        }
    };
    [
        (
            "RuntimeReady",
            "see the lines above and `journalctl -u pvecri`, then restart the daemon",
        ),
        ("NetworkReady", network_fix),
    ]
    .into_iter()
    .map(
        |(kind, fix)| match conditions.iter().find(|c| c.r#type == kind) {
            Some(c) if c.status => Check::ok(kind, "ready"),
            Some(c) => Check::fail(kind, format!("false: {}: {}", c.reason, c.message), fix),
            None => Check::fail(
                kind,
                "the daemon does not report it",
                "upgrade pvecri: the kubelet keeps the node NotReady without it",
            ),
        },
    )
    .collect()
}

#[cfg(test)]
mod tests {
    use super::super::Level;
    use super::*;

    fn cond(kind: &str, status: bool, reason: &str, message: &str) -> v1::RuntimeCondition {
        v1::RuntimeCondition {
            r#type: kind.to_owned(),
            status,
            reason: reason.to_owned(),
            message: message.to_owned(),
        }
    }

    #[test]
    fn conditions_carry_the_reason_and_a_fix_for_the_mode() {
        let ready = [
            cond("RuntimeReady", true, "", ""),
            cond("NetworkReady", true, "", ""),
        ];
        let c = condition_checks(&ready, NetworkMode::Builtin);
        assert!(c.iter().all(|c| c.level == Level::Ok), "{c:?}");

        let not_ready = [
            cond("RuntimeReady", true, "", ""),
            cond(
                "NetworkReady",
                false,
                "NetworkPluginNotReady",
                "no CNI network config in /etc/cni/net.d",
            ),
        ];
        let c = condition_checks(&not_ready, NetworkMode::Cni);
        assert_eq!(c[1].level, Level::Fail);
        assert_eq!(
            c[1].detail,
            "false: NetworkPluginNotReady: no CNI network config in /etc/cni/net.d"
        );
        assert!(c[1].fix.as_deref().unwrap().contains("conflist"));
        let c = condition_checks(&not_ready, NetworkMode::Builtin);
        assert!(c[1].fix.as_deref().unwrap().contains("bridge"));

        // A condition the daemon leaves out is not ready for the kubelet.
        let c = condition_checks(&ready[..1], NetworkMode::Builtin);
        assert_eq!(c[1].name, "NetworkReady");
        assert_eq!(c[1].level, Level::Fail);
    }
}
