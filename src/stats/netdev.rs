//! Network interface counters of a pod's network namespace.
//!
//! `/proc/thread-self/net/dev` shows the namespace of the reading thread, so
//! the reader enters the pod's namespace on a short-lived thread of its own:
//! no thread the daemon keeps ever changes namespace.

use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct InterfaceStats {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Parses `/proc/net/dev`: two header lines, then
/// `name: rx_bytes rx_packets rx_errs ... (8 rx fields) tx_bytes tx_packets tx_errs ...`.
pub(crate) fn parse(text: &str) -> Vec<InterfaceStats> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|v| v.parse().ok())
                .collect::<Option<_>>()?;
            if f.len() < 12 {
                return None;
            }
            Some(InterfaceStats {
                name: name.trim().to_owned(),
                rx_bytes: f[0],
                rx_packets: f[1],
                rx_errors: f[2],
                rx_dropped: f[3],
                tx_bytes: f[8],
                tx_packets: f[9],
                tx_errors: f[10],
                tx_dropped: f[11],
            })
        })
        .collect()
}

/// The interfaces of the network namespace pinned at `netns` (an nsfs
/// bind mount), loopback included.
pub(crate) fn read_in_netns(netns: &Path) -> std::io::Result<Vec<InterfaceStats>> {
    let file = std::fs::File::open(netns)?;
    let handle = std::thread::Builder::new()
        .name("pvecri-netdev".into())
        .spawn(move || -> std::io::Result<Vec<InterfaceStats>> {
            // Only this thread enters the namespace, and it ends right after
            // the read.
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            let text = std::fs::read_to_string("/proc/thread-self/net/dev")?;
            Ok(parse(&text))
        })?;
    handle
        .join()
        .map_err(|_| std::io::Error::other("the netdev reader thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     840      10    0    0    0     0          0         0      840      10    0    0    0     0       0          0
  eth0: 1234567    900    3    0    0     0          0         0   765432     800    1    0    0     0       0          0
";

    #[test]
    fn parses_proc_net_dev() {
        let all = parse(DEV);
        assert_eq!(all.len(), 2);
        assert_eq!(
            all[1],
            InterfaceStats {
                name: "eth0".into(),
                rx_bytes: 1_234_567,
                rx_packets: 900,
                rx_errors: 3,
                rx_dropped: 0,
                tx_bytes: 765_432,
                tx_packets: 800,
                tx_errors: 1,
                tx_dropped: 0,
            }
        );
        assert!(parse("header\nheader\nbroken line\n").is_empty());
    }

    #[test]
    fn reads_the_own_namespace() {
        let all = read_in_netns(Path::new("/proc/self/ns/net")).unwrap();
        assert!(all.iter().any(|i| i.name == "lo"), "{all:?}");
    }
}
