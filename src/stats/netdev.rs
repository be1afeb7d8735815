//! Network interface counters of a pod's network namespace.
//!
//! `/proc/<pid>/net/dev` shows the namespace of process `pid`, so a pod
//! with a running container is read through that container's init once
//! its `ns/net` is shown to be the pod's pinned namespace (no thread, no
//! `setns`). Otherwise the reader enters the pod's namespace on a
//! short-lived thread of its own (`/proc/thread-self/net/dev`): no thread
//! the daemon keeps ever changes namespace.

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

/// The interfaces of the network namespace pinned at `netns`, read through
/// process `pid` (started at `start_time`, field 22 of its stat) when that
/// process is in the namespace; `None` when it is not, or is gone.
pub(crate) fn read_via_process(
    netns: &Path,
    pid: i32,
    start_time: u64,
) -> Option<Vec<InterfaceStats>> {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{fstatat, Mode};
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    if pid <= 0 {
        return None;
    }
    // Everything below goes through this one directory: a pid reused after
    // it was opened makes the reads fail instead of reading another process.
    let dir = std::fs::File::open(format!("/proc/{pid}")).ok()?;
    if crate::sandbox::infra::proc_start_time(pid) != Some(start_time) {
        return None;
    }
    let pinned = std::fs::metadata(netns).ok()?;
    let in_pod = || {
        fstatat(&dir, "ns/net", nix::fcntl::AtFlags::empty())
            .is_ok_and(|st| (st.st_dev, st.st_ino) == (pinned.dev(), pinned.ino()))
    };
    if !in_pod() {
        return None;
    }
    let fd = openat(
        &dir,
        "net/dev",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    // `net/dev` shows the namespace the process was in when it was opened;
    // checked again after, so a process that just left the pod's is not
    // read (one that left and came back in between reads the pod's).
    if !in_pod() {
        return None;
    }
    let mut text = String::new();
    std::fs::File::from(fd).read_to_string(&mut text).ok()?;
    Some(parse(&text))
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
    fn a_process_outside_the_namespace_is_not_read_through() {
        let me = std::process::id() as i32;
        let start = crate::sandbox::infra::proc_start_time(me).unwrap();
        // This process is in the namespace /proc/self/ns/net names.
        let own = Path::new("/proc/self/ns/net");
        let read = read_via_process(own, me, start).expect("read through itself");
        assert!(read.iter().any(|i| i.name == "lo"));
        // A wrong start time (a reused pid) or another namespace: no.
        assert!(read_via_process(own, me, start + 1).is_none());
        assert!(read_via_process(Path::new("/proc/self/ns/mnt"), me, start).is_none());
        assert!(read_via_process(own, 0, 0).is_none());
    }

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
