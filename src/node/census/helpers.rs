//! `pvecri monitor` and `pvecri exec-helper` processes, found by their
//! command lines and read with the same clap structs that parse them, so
//! the census knows which container and which LXC path each serves.

use std::collections::BTreeSet;
use std::path::Path;

use clap::Parser;

use super::host::Process;
use crate::exec::ExecHelperArgs;
use crate::monitor::{MonitorArgs, SpareArgs};

/// The helper verbs of the `pvecri` command line.
#[derive(Parser)]
enum HelperCommand {
    Monitor(MonitorArgs),
    ExecHelper(ExecHelperArgs),
    MonitorSpare(SpareArgs),
}

/// A helper process and what it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Helper {
    pub pid: i32,
    pub verb: &'static str,
    pub id: String,
    pub lxcpath: String,
}

impl Helper {
    pub(super) fn line(&self) -> String {
        format!(
            "pid {} {} of {} (lxcpath {})",
            self.pid, self.verb, self.id, self.lxcpath
        )
    }
}

/// A command line as one of pvecri's helper verbs.
fn command(p: &Process) -> Option<HelperCommand> {
    let exe = Path::new(p.argv.first()?).file_name()?.to_str()?;
    if !exe.starts_with("pvecri") {
        return None;
    }
    HelperCommand::try_parse_from(&p.argv).ok()
}

/// The helper a command line belongs to, if it serves a container.
fn parse(p: &Process) -> Option<Helper> {
    let (verb, id, lxcpath) = match command(p)? {
        HelperCommand::Monitor(a) => ("monitor", a.id, a.lxcpath),
        HelperCommand::ExecHelper(a) => ("exec-helper", a.id, a.lxcpath),
        HelperCommand::MonitorSpare(_) => return None,
    };
    Some(Helper {
        pid: p.pid,
        verb,
        id,
        lxcpath: lxcpath.display().to_string(),
    })
}

/// Helpers serving containers under `lxcpath` or with an ID in `ids`, or
/// every helper on the node with `node`.
pub(super) fn find(
    processes: &[Process],
    lxcpath: &Path,
    ids: &BTreeSet<String>,
    node: bool,
) -> Vec<Helper> {
    processes
        .iter()
        .filter_map(parse)
        .filter(|h| node || Path::new(&h.lxcpath) == lxcpath || ids.contains(&h.id))
        .collect()
}

/// Spare monitors (`crate::monitor::spare`) of the daemon of `lxcpath`,
/// or every one with `node`: they serve no container yet and belong to
/// their daemon, which ends them when it stops.
pub(super) fn spares(processes: &[Process], lxcpath: &Path, node: bool) -> Vec<String> {
    processes
        .iter()
        .filter_map(|p| match command(p)? {
            HelperCommand::MonitorSpare(a) if node || a.lxcpath == lxcpath => Some(format!(
                "pid {} spare monitor (lxcpath {})",
                p.pid,
                a.lxcpath.display()
            )),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, argv: &str) -> Process {
        Process {
            pid,
            argv: argv.split(' ').map(str::to_owned).collect(),
        }
    }

    #[test]
    fn monitors_and_exec_helpers_are_told_apart_by_their_clap_parse() {
        let procs = [
            p(10, "/usr/bin/pvecri monitor --id c1 --lxcpath /var/lib/pvecri/lxc --run-dir /run/pvecri/containers/c1 --ready-fd 3"),
            p(11, "/usr/bin/pvecri exec-helper --id c1 --lxcpath /var/lib/pvecri/lxc --spec /x/spec.json --init /i --timeout 5 -- true"),
            p(12, "/tmp/t/target/debug/pvecri monitor --id c2 --lxcpath /tmp/t/state/lxc --run-dir /tmp/t/run/containers/c2"),
            p(13, "/usr/bin/pvecri daemon"),
            p(14, "/usr/bin/vim monitor --id c1 --lxcpath /var/lib/pvecri/lxc --run-dir /r"),
            p(15, "/usr/bin/pvecri monitor --id"),
            p(16, "/usr/bin/pvecri exec-helper --id c3 --lxcpath /var/lib/pvecri/lxc --spec /x/spec.json --init /i --timeout 0 --init-pid 42 --init-start-time 977 -- true"),
            p(17, "/usr/lib/pvecri/pvecri-helper monitor --id c4 --lxcpath /var/lib/pvecri/lxc --run-dir /run/pvecri/containers/c4"),
        ];
        let ours = find(
            &procs,
            Path::new("/var/lib/pvecri/lxc"),
            &BTreeSet::new(),
            false,
        );
        assert_eq!(
            ours.iter().map(|h| (h.pid, h.verb)).collect::<Vec<_>>(),
            [
                (10, "monitor"),
                (11, "exec-helper"),
                (16, "exec-helper"),
                (17, "monitor")
            ]
        );
        assert_eq!(
            ours[0].line(),
            "pid 10 monitor of c1 (lxcpath /var/lib/pvecri/lxc)"
        );
        let by_id: BTreeSet<String> = ["c2".to_owned()].into_iter().collect();
        let found = find(&procs, Path::new("/elsewhere"), &by_id, false);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "c2");
        assert_eq!(
            find(&procs, Path::new("/elsewhere"), &BTreeSet::new(), true).len(),
            5
        );
    }

    #[test]
    fn spares_are_found_by_lxcpath_and_are_no_container_helpers() {
        let procs = [
            p(20, "/usr/lib/pvecri/pvecri-helper monitor-spare --lxcpath /var/lib/pvecri/lxc --socket-fd 3"),
            p(21, "/tmp/t/target/release/pvecri-helper monitor-spare --lxcpath /tmp/t/state/lxc --socket-fd 3"),
            p(22, "/usr/bin/vim monitor-spare --lxcpath /var/lib/pvecri/lxc --socket-fd 3"),
            p(23, "/usr/lib/pvecri/pvecri-helper monitor-spare --lxcpath /var/lib/pvecri/lxc"),
        ];
        assert_eq!(
            spares(&procs, Path::new("/var/lib/pvecri/lxc"), false),
            ["pid 20 spare monitor (lxcpath /var/lib/pvecri/lxc)"]
        );
        assert_eq!(spares(&procs, Path::new("/elsewhere"), true).len(), 2);
        assert!(find(
            &procs,
            Path::new("/var/lib/pvecri/lxc"),
            &BTreeSet::new(),
            true
        )
        .is_empty());
    }
}
