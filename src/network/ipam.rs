//! Address allocation from a pod subnet.
//!
//! Allocation is round-robin: the next address after the last one handed
//! out, wrapping, skipping addresses in use. Together with the persisted
//! cursor this means an address comes back only after the whole range was
//! walked, so a released address is not reused while a stale peer may still
//! hold it in its ARP cache.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::store::Record;

/// One pod subnet. Its network address, its first host (the gateway, on the
/// bridge) and, for IPv4, its broadcast address are never handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Subnet {
    net: IpNet,
}

impl Subnet {
    pub(crate) fn new(net: IpNet) -> Self {
        Self { net: net.trunc() }
    }

    pub(crate) fn net(&self) -> IpNet {
        self.net
    }

    pub(crate) fn prefix_len(&self) -> u8 {
        self.net.prefix_len()
    }

    pub(crate) fn gateway(&self) -> IpAddr {
        self.at_offset(1)
    }

    /// The first address after `last` (or from the start) that is neither
    /// in `used` nor reserved; `None` when the subnet is full.
    pub(crate) fn next_free(&self, last: Option<IpAddr>, used: &HashSet<IpAddr>) -> Option<IpAddr> {
        let (first, end) = self.usable_offsets();
        if first > end {
            return None;
        }
        let size = end - first + 1;
        let start = match last.and_then(|ip| self.offset_of(ip)) {
            Some(o) if (first..=end).contains(&o) => o - first + 1,
            _ => 0,
        };
        // Among used.len() + 1 consecutive candidates at least one is free,
        // so a huge IPv6 range is never walked.
        let tries = size.min(used.len() as u128 + 1);
        (0..tries)
            .map(|i| self.at_offset(first + (start + i) % size))
            .find(|ip| !used.contains(ip))
    }

    fn usable_offsets(&self) -> (u128, u128) {
        let host_bits = u32::from(self.net.max_prefix_len() - self.net.prefix_len());
        let size: u128 = if host_bits >= 128 {
            u128::MAX
        } else {
            1u128 << host_bits
        };
        let last = match self.net {
            IpNet::V4(_) => size.saturating_sub(2),
            IpNet::V6(_) => size - 1,
        };
        (2, last)
    }

    fn offset_of(&self, ip: IpAddr) -> Option<u128> {
        if !self.net.contains(&ip) {
            return None;
        }
        Some(as_u128(ip) - as_u128(self.net.network()))
    }

    fn at_offset(&self, offset: u128) -> IpAddr {
        let value = as_u128(self.net.network()) + offset;
        match self.net {
            IpNet::V4(_) => IpAddr::V4(Ipv4Addr::from(value as u32)),
            IpNet::V6(_) => IpAddr::V6(Ipv6Addr::from(value)),
        }
    }
}

fn as_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// The last address handed out from each subnet, persisted so that a
/// restart does not start over at the bottom of the range.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct IpamCursors {
    /// Subnet (CIDR text) -> last address handed out.
    pub last: std::collections::BTreeMap<String, String>,
}

impl IpamCursors {
    pub(crate) const KEY: &'static str = "cursors";
}

impl Record for IpamCursors {
    const TABLE: &'static str = "ipam";
    fn key(&self) -> String {
        Self::KEY.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subnet(s: &str) -> Subnet {
        Subnet::new(s.parse().unwrap())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn gateway_network_and_broadcast_are_never_handed_out() {
        let s = subnet("10.1.2.0/30");
        assert_eq!(s.gateway(), ip("10.1.2.1"));
        let used = HashSet::new();
        assert_eq!(s.next_free(None, &used), Some(ip("10.1.2.2")));
        // Only .2 is usable in a /30: after it comes .2 again.
        assert_eq!(
            s.next_free(Some(ip("10.1.2.2")), &used),
            Some(ip("10.1.2.2"))
        );
        let used = HashSet::from([ip("10.1.2.2")]);
        assert_eq!(s.next_free(None, &used), None);
    }

    #[test]
    fn allocation_walks_the_range_before_reusing() {
        let s = subnet("10.1.2.0/29");
        let mut used = HashSet::new();
        let mut last = None;
        let mut order = Vec::new();
        for _ in 0..5 {
            let next = s.next_free(last, &used).unwrap();
            used.insert(next);
            order.push(next.to_string());
            last = Some(next);
        }
        assert_eq!(
            order,
            ["10.1.2.2", "10.1.2.3", "10.1.2.4", "10.1.2.5", "10.1.2.6"]
        );
        assert_eq!(s.next_free(last, &used), None);
        // .3 released: it is the only choice, and it is found by wrapping.
        used.remove(&ip("10.1.2.3"));
        assert_eq!(s.next_free(last, &used), Some(ip("10.1.2.3")));
        // .5 released too: after .3 the walk goes on upwards, not back to .3.
        used.remove(&ip("10.1.2.5"));
        assert_eq!(
            s.next_free(Some(ip("10.1.2.4")), &used),
            Some(ip("10.1.2.5"))
        );
    }

    #[test]
    fn a_cursor_outside_the_subnet_starts_from_the_bottom() {
        let s = subnet("10.1.2.0/24");
        let used = HashSet::new();
        assert_eq!(
            s.next_free(Some(ip("10.9.9.9")), &used),
            Some(ip("10.1.2.2"))
        );
    }

    #[test]
    fn ipv6_ranges_use_the_last_address_and_stay_cheap() {
        let s = subnet("fd00:1::/64");
        assert_eq!(s.gateway(), ip("fd00:1::1"));
        let used = HashSet::from([ip("fd00:1::2"), ip("fd00:1::3")]);
        assert_eq!(s.next_free(None, &used), Some(ip("fd00:1::4")));
        let s = subnet("fd00:1::/126");
        let last = ip("fd00:1::3");
        assert_eq!(
            s.next_free(Some(last), &HashSet::new()),
            Some(ip("fd00:1::2"))
        );
    }
}
