use std::path::PathBuf;

use thiserror::Error;

use super::nft::NftError;
use crate::store::StoreError;

/// Why pods cannot get a network yet: the whole cause chain of the last
/// setup failure as one reason, since it is kept and reported (as the
/// NetworkReady condition's message) long after the error itself.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{0}")]
pub(crate) struct NotReady(pub String);

impl NotReady {
    pub(crate) fn from_error(e: &(dyn std::error::Error + 'static)) -> Self {
        NotReady(crate::errors::chain(e))
    }
}

#[derive(Debug, Error)]
pub(crate) enum NetworkError {
    #[error("pod networking is not ready: {0}")]
    NotReady(#[source] NotReady),
    #[error("cannot open a netlink socket")]
    Socket(#[source] std::io::Error),
    #[error("cannot enter the network namespace {path}")]
    Netns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("netlink: cannot {op} {name}")]
    Netlink {
        op: &'static str,
        name: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("netlink: cannot remove {port} from VLAN {vid}")]
    VlanRemove {
        port: String,
        vid: u16,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("link {0} does not exist")]
    NoLink(String),
    #[error("network.vlan = {vlan} needs a VLAN-aware bridge, and {bridge} has vlan_filtering off (on Proxmox: tick \"VLAN aware\" on the bridge, or `bridge-vlan-aware yes` in /etc/network/interfaces)")]
    NotVlanAware { bridge: String, vlan: u16 },
    #[error("network.vlan needs VLAN filtering on bridge {bridge}, and this kernel has none (CONFIG_BRIDGE_VLAN_FILTERING), or {bridge} is not a bridge")]
    NoVlanFiltering { bridge: String },
    #[error("no free address left in the pod subnet {0}")]
    Exhausted(String),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("cannot write pvecri's nftables table")]
    NftTable(#[source] NftError),
    #[error("cannot set host ports")]
    Nft(#[source] NftError),
    #[error("cannot write {path}")]
    Sysctl {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Cni(#[from] super::cni::CniError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl NetworkError {
    pub(crate) fn netlink(op: &'static str, name: &str, source: rtnetlink::Error) -> Self {
        NetworkError::Netlink {
            op,
            name: name.to_owned(),
            source,
        }
    }
}
