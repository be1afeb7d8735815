//! A container's cgroup on every hierarchy of the node: who is still in
//! it, how to kill all of them, and how to remove it.
//!
//! liblxc creates the container's cgroup (and its monitor's) on every
//! mounted hierarchy: each v1 controller, named ones like `name=systemd`,
//! and cgroup2. When the container's init is not PID 1 of a namespace of
//! its own (hostPID, or a pod sharing one PID namespace), its children
//! survive it; the cgroup is the only complete list of them. So a stop
//! ends with [`kill`] and a removal with [`remove`], which fails while
//! anything is left.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::CgroupMount;

/// One mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount_point: PathBuf,
    /// cgroup2 (has `cgroup.kill` on kernels >= 5.14, `cgroup.freeze`).
    pub v2: bool,
    /// A v1 hierarchy carrying the freezer controller.
    pub freezer: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("cannot read the node's cgroup mounts: {0}")]
    Mounts(#[source] io::Error),
    #[error("{count} process(es) still in cgroup {path} after {seconds}s: {pids:?}")]
    Busy {
        path: String,
        count: usize,
        pids: Vec<i32>,
        seconds: u64,
    },
    #[error("cannot remove cgroup directory {dir}: {source}")]
    Remove {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One hierarchy per superblock among the cgroup mounts (a later mount of
/// the same superblock is a bind mount of it).
pub fn hierarchies_of(mounts: &[CgroupMount]) -> Vec<Hierarchy> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for m in mounts {
        if seen.contains(&m.dev) {
            continue;
        }
        seen.push(m.dev);
        out.push(Hierarchy {
            mount_point: m.mount_point.clone(),
            v2: m.v2,
            freezer: m.has_v1_controller("freezer"),
        });
    }
    out
}

/// The hierarchies mounted in this process's mount namespace.
pub fn hierarchies() -> Result<Vec<Hierarchy>, TreeError> {
    let mounts = super::read_mounts().map_err(TreeError::Mounts)?;
    Ok(hierarchies_of(&mounts))
}

/// A cgroup given relative to the hierarchy roots. Refuses what could
/// leave the hierarchy or name the root itself.
fn checked(rel: &str) -> Option<&str> {
    let rel = rel.trim_matches('/');
    let ok = !rel.is_empty()
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    ok.then_some(rel)
}

/// The directory of `rel` on each hierarchy where it exists.
pub fn dirs(hierarchies: &[Hierarchy], rel: &str) -> Vec<(Hierarchy, PathBuf)> {
    let Some(rel) = checked(rel) else {
        return Vec::new();
    };
    hierarchies
        .iter()
        .map(|h| (h.clone(), h.mount_point.join(rel)))
        .filter(|(_, d)| d.is_dir())
        .collect()
}

/// `dir` and every cgroup below it, parents before children.
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = std::fs::read_dir(&out[i]) {
            for e in entries.flatten() {
                // A cgroup directory's children are cgroups; its files are
                // not directories, and nothing in cgroupfs is a symlink.
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

/// A process that has exited but is not reaped yet (or is gone) holds
/// nothing.
pub fn is_zombie(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the command name, which is in parentheses and may
    // itself contain them.
    match stat.rfind(')') {
        Some(i) => stat[i + 1..].trim_start().starts_with(['Z', 'X']),
        None => true,
    }
}

/// The live processes in `rel` or below it, on any hierarchy.
pub fn members(hierarchies: &[Hierarchy], rel: &str) -> Vec<i32> {
    let mut out: Vec<i32> = dirs(hierarchies, rel)
        .iter()
        .flat_map(|(_, d)| subtree(d))
        .flat_map(|d| super::procs(&d))
        .filter(|pid| !is_zombie(*pid))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Every cgroup below the hierarchy roots for which `matches(rel, name)`
/// holds (`rel` relative to the root, `name` its last component): the
/// index of its hierarchy in `hierarchies` and `rel`, once per hierarchy.
pub fn walk(
    hierarchies: &[Hierarchy],
    matches: impl Fn(&str, &str) -> bool,
) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, h) in hierarchies.iter().enumerate() {
        for dir in subtree(&h.mount_point).into_iter().skip(1) {
            let (Some(name), Ok(rel)) = (
                dir.file_name().and_then(|n| n.to_str()),
                dir.strip_prefix(&h.mount_point),
            ) else {
                continue;
            };
            let Some(rel) = rel.to_str() else {
                continue;
            };
            if matches(rel, name) {
                out.push((i, rel.to_owned()));
            }
        }
    }
    out
}

/// Every cgroup, on any hierarchy, whose directory name is in `names`:
/// (name, path relative to the hierarchy root), each path once.
pub fn find_named(
    hierarchies: &[Hierarchy],
    names: &std::collections::HashSet<String>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (_, rel) in walk(hierarchies, |_, name| names.contains(name)) {
        let name = rel.rsplit('/').next().unwrap_or_default().to_owned();
        let found = (name, rel);
        if !out.contains(&found) {
            out.push(found);
        }
    }
    out
}

/// How [`kill`] reached every process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillMethod {
    /// Nothing was left.
    Empty,
    /// cgroup2's `cgroup.kill`: the kernel kills the whole subtree, forks
    /// in flight included.
    CgroupKill,
    /// Frozen (v1 freezer or cgroup2 `cgroup.freeze`), SIGKILLed one by
    /// one, thawed: frozen processes cannot fork away.
    Frozen,
    /// SIGKILL one by one, repeated until none is left.
    Signals,
}

/// SIGKILLs every process in `rel` and below, on every hierarchy. Does not
/// wait for them to die; see [`kill_and_wait`].
pub fn kill(hierarchies: &[Hierarchy], rel: &str) -> KillMethod {
    let found = dirs(hierarchies, rel);
    if members(hierarchies, rel).is_empty() {
        return KillMethod::Empty;
    }
    for (h, dir) in &found {
        if h.v2 && std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
            return KillMethod::CgroupKill;
        }
    }
    let freezer = found.iter().find_map(|(h, d)| {
        if h.freezer && d.join("freezer.state").exists() {
            Some((d.join("freezer.state"), "FROZEN", "THAWED"))
        } else if h.v2 && d.join("cgroup.freeze").exists() {
            Some((d.join("cgroup.freeze"), "1", "0"))
        } else {
            None
        }
    });
    if let Some((file, freeze, thaw)) = freezer {
        if std::fs::write(&file, freeze).is_ok() {
            // Freezing takes effect asynchronously; a SIGKILL to a frozen
            // task is delivered when it thaws, which is what we want.
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                let state = std::fs::read_to_string(&file).unwrap_or_default();
                if state.trim() == freeze
                    || std::fs::read_to_string(file.with_file_name("cgroup.events"))
                        .is_ok_and(|e| e.lines().any(|l| l == "frozen 1"))
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            signal_all(&members(hierarchies, rel));
            let _ = std::fs::write(&file, thaw);
            return KillMethod::Frozen;
        }
    }
    signal_all(&members(hierarchies, rel));
    KillMethod::Signals
}

fn signal_all(pids: &[i32]) {
    for pid in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Kills everything in `rel` and waits (blocking, up to `timeout`) until
/// no live process is left; errors with the survivors.
pub fn kill_and_wait(
    hierarchies: &[Hierarchy],
    rel: &str,
    timeout: Duration,
) -> Result<KillMethod, TreeError> {
    let deadline = Instant::now() + timeout;
    let method = kill(hierarchies, rel);
    loop {
        let left = members(hierarchies, rel);
        if left.is_empty() {
            return Ok(method);
        }
        if Instant::now() >= deadline {
            return Err(TreeError::Busy {
                path: rel.to_owned(),
                count: left.len(),
                pids: left,
                seconds: timeout.as_secs(),
            });
        }
        // Whatever forked between the listing and the signals.
        if method != KillMethod::CgroupKill {
            signal_all(&left);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Removes `rel` and every cgroup below it on every hierarchy, children
/// first. Missing directories are fine; a busy one is retried until
/// `timeout` (an exiting process leaves its cgroup a moment after it is
/// reaped), then reported.
pub fn remove(hierarchies: &[Hierarchy], rel: &str, timeout: Duration) -> Result<(), TreeError> {
    let deadline = Instant::now() + timeout;
    for (_, dir) in dirs(hierarchies, rel) {
        for d in subtree(&dir).into_iter().rev() {
            loop {
                match std::fs::remove_dir(&d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(source) => return Err(TreeError::Remove { dir: d, source }),
                }
            }
        }
    }
    Ok(())
}

/// Kills what is left in `rel`, waits for it, and removes the cgroup on
/// every hierarchy.
pub fn kill_and_remove(rel: &str, timeout: Duration) -> Result<KillMethod, TreeError> {
    let h = hierarchies()?;
    let method = kill_and_wait(&h, rel, timeout)?;
    remove(&h, rel, timeout)?;
    Ok(method)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::cgroup_mounts;
    use crate::node::mountinfo;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
90 41 0:38 / /mnt/again\\040there rw,relatime - cgroup2 cgroup2 rw
91 23 0:50 / /mnt/other\\040cg rw,relatime - cgroup cgroup rw,net_cls
";

    #[test]
    fn every_hierarchy_once_with_its_kind() {
        let h = hierarchies_of(&cgroup_mounts(mountinfo::parse(HYBRID)));
        let points: Vec<_> = h.iter().map(|h| h.mount_point.to_str().unwrap()).collect();
        assert_eq!(
            points,
            [
                "/sys/fs/cgroup/cpu",
                "/sys/fs/cgroup/freezer",
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/unified",
                "/mnt/other cg",
            ]
        );
        assert!(h[1].freezer && !h[0].freezer && !h[3].freezer);
        assert!(h[3].v2 && !h[2].v2);
    }

    #[test]
    fn paths_that_leave_the_hierarchy_name_nothing() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pvecri/c1")).unwrap();
        let h = vec![Hierarchy {
            mount_point: dir.path().join("pvecri"),
            v2: true,
            freezer: false,
        }];
        assert_eq!(dirs(&h, "c1").len(), 1);
        for bad in ["", "/", "..", "c1/../..", "./c1", "c1//x"] {
            assert!(dirs(&h, bad).is_empty(), "{bad:?}");
        }
        assert!(remove(&h, "..", Duration::ZERO).is_ok());
        assert!(dir.path().join("pvecri/c1").is_dir());
    }

    #[test]
    fn named_cgroups_are_found_at_any_depth_once() {
        let dir = tempfile::tempdir().unwrap();
        for p in [
            "a/pvecri/c1",
            "a/kubepods/pod1/c1/sub",
            "a/other/c2",
            "b/pvecri/c1",
        ] {
            std::fs::create_dir_all(dir.path().join(p)).unwrap();
        }
        let h: Vec<Hierarchy> = ["a", "b"]
            .iter()
            .map(|m| Hierarchy {
                mount_point: dir.path().join(m),
                v2: false,
                freezer: false,
            })
            .collect();
        let names = ["c1".to_owned()].into_iter().collect();
        let mut found = find_named(&h, &names);
        found.sort();
        assert_eq!(
            found,
            [
                ("c1".to_owned(), "kubepods/pod1/c1".to_owned()),
                ("c1".to_owned(), "pvecri/c1".to_owned()),
            ]
        );
    }

    #[test]
    fn subtree_lists_parents_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
        std::fs::create_dir_all(dir.path().join("a/d")).unwrap();
        std::fs::write(dir.path().join("a/cgroup.procs"), "1\n").unwrap();
        let t = subtree(&dir.path().join("a"));
        assert_eq!(t.len(), 4);
        assert_eq!(t[0], dir.path().join("a"));
        let pos = |p: &str| t.iter().position(|x| x == &dir.path().join(p)).unwrap();
        assert!(pos("a/b") < pos("a/b/c"));
    }

    #[test]
    fn zombies_and_vanished_pids_are_not_members() {
        assert!(!is_zombie(std::process::id() as i32));
        assert!(is_zombie(i32::MAX));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !is_zombie(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(is_zombie(pid), "an exited, unreaped child is a zombie");
        child.wait().unwrap();
    }
}
