//! Pod network namespaces made ahead of need: creating a network namespace
//! is the single largest kernel cost of RunPodSandbox (about half a
//! millisecond), so the daemon keeps `netns_spares` of them made, `lo` up,
//! each pinned at `R/ns/.spare-net-<n>/net`.
//!
//! A pod that gets its own network namespace (and no user namespace: its
//! namespaces are made inside that one) takes a spare, and the pin thread
//! joins it with `setns` where it would have called `unshare`; the rest
//! (hostname, sysctls, the pod's own pins) is as for a new one. The
//! spare's own pin is dropped at once; the pod's keeps the namespace. A
//! spare is used once, by one pod, and was never seen by any other.
//!
//! Refills wait for pod and container starts to pause, at idle priority,
//! as the spare monitors' do (`super::refills`). At shutdown the
//! idle spares are unpinned; spares a crashed daemon left are unpinned
//! when the next one starts ([`NetnsSpares::sweep`]), before the first
//! refill.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tracing::warn;

use super::refills::{Activity, Maker, Pool};
use crate::sandbox::ns;

/// The name prefix of a spare's directory under `R/ns` (never a pod id).
const PREFIX: &str = ".spare-net-";

/// The pool.
pub(crate) struct NetnsSpares {
    /// `R/ns`, the private mount the pins live under.
    root: PathBuf,
    /// The idle spares' directories, each with its `net` pin.
    pool: Arc<Pool<PathBuf>>,
}

/// A spare a pod took: its namespace's pin, for [`ns::PinRequest::net_from`].
/// Dropping it drops the spare's own pin (blocking; the pod's pin, if
/// made, keeps the namespace).
pub(crate) struct TakenNetns {
    dir: PathBuf,
}

impl TakenNetns {
    pub(crate) fn net(&self) -> PathBuf {
        self.dir.join("net")
    }
}

impl Drop for TakenNetns {
    fn drop(&mut self) {
        if let Err(e) = ns::unpin(&self.dir) {
            warn!(dir = %self.dir.display(), error = %crate::errors::chain(&e), "cannot drop a used spare network namespace's pin");
        }
    }
}

impl NetnsSpares {
    /// `target` idle spares kept (0: each pod makes its own); refills wait
    /// on `activity`.
    /// Refills make them on a blocking thread at idle priority (the pin
    /// thread inherits it).
    pub(crate) fn new(root: PathBuf, target: usize, activity: Arc<Activity>) -> Arc<Self> {
        let (dir, seq) = (root.clone(), AtomicU64::new(0));
        let maker = Maker {
            make: Box::new(move || make_one(&dir, &seq).map_err(Into::into)),
            discard: unpin_quietly,
            failure: "cannot make a spare network namespace; pods make their own",
        };
        Arc::new(Self {
            root,
            pool: Pool::new(target, activity, maker),
        })
    }

    /// Unpins the spares an earlier daemon left under `R/ns` (a crash).
    /// Blocking; call it before the first refill.
    pub(crate) fn sweep(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return 0;
        };
        let mut swept = 0;
        for entry in entries.flatten() {
            if is_spare_dir(&entry.path()) {
                match ns::unpin(&entry.path()) {
                    Ok(()) => swept += 1,
                    Err(e) => {
                        warn!(error = %crate::errors::chain(&e), "cannot drop a spare network namespace left behind")
                    }
                }
            }
        }
        swept
    }

    /// An idle spare, if any.
    pub(crate) fn take(&self) -> Option<TakenNetns> {
        self.pool.pop().map(|dir| TakenNetns { dir })
    }

    /// Tops the pool up once pod and container starts pause
    /// (`Pool::refill_when_quiet`). Needs a tokio runtime.
    pub(crate) fn refill_when_quiet(&self) {
        self.pool.refill_when_quiet();
    }

    /// Makes spares until the target are idle or being made
    /// (`Pool::refill`). Needs a tokio runtime.
    pub(crate) fn refill(&self) {
        self.pool.refill();
    }

    /// Unpins every idle spare; none is made or handed out afterwards.
    /// Blocking.
    pub(crate) fn shutdown(&self) {
        for dir in self.pool.close() {
            unpin_quietly(dir);
        }
    }

    /// How many spares are idle now.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.pool.idle().len()
    }
}

/// Makes the next spare under `root`, named from `seq`.
fn make_one(root: &Path, seq: &AtomicU64) -> Result<PathBuf, ns::NsError> {
    let n = seq.fetch_add(1, Ordering::SeqCst);
    let dir = root.join(format!("{PREFIX}{n}"));
    // A name an earlier daemon used and somehow left: not ours to use.
    if dir.exists() {
        ns::unpin(&dir)?;
    }
    ns::make_spare_net(&dir)?;
    Ok(dir)
}

fn unpin_quietly(dir: PathBuf) {
    if let Err(e) = ns::unpin(&dir) {
        warn!(dir = %dir.display(), error = %crate::errors::chain(&e), "cannot drop a spare network namespace");
    }
}

/// Whether `dir` is a spare's directory (for the census).
pub(crate) fn is_spare_dir(dir: &Path) -> bool {
    dir.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::ns::{NsKind, PinRequest};
    use crate::snapshot::test_support::is_root;
    use std::time::Duration;

    /// A pool under an `R/ns` of its own.
    fn pool(target: usize) -> (tempfile::TempDir, Arc<NetnsSpares>) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("ns");
        std::fs::create_dir(&root).unwrap();
        let pool = NetnsSpares::new(root, target, Arc::new(Activity::new()));
        (tmp, pool)
    }

    fn netns_inode(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    }

    /// The names under `tmp`'s `ns/`.
    fn names_left(tmp: &tempfile::TempDir) -> Vec<String> {
        std::fs::read_dir(tmp.path().join("ns"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    }

    async fn wait_idle(pool: &NetnsSpares, n: usize) {
        for _ in 0..500 {
            if pool.idle_count() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} idle spares, not {n}", pool.idle_count());
    }

    #[tokio::test]
    async fn a_pod_joins_a_spare_and_the_spare_pin_goes() {
        if !is_root("a_pod_joins_a_spare_and_the_spare_pin_goes") {
            return;
        }
        let (tmp, pool) = pool(2);
        pool.refill();
        wait_idle(&pool, 2).await;
        let spare = pool.take().unwrap();
        let spare_ns = netns_inode(&spare.net());
        assert_ne!(spare_ns, netns_inode(Path::new("/proc/self/ns/net")));
        let pod_dir = tmp.path().join("ns").join("p1");
        ns::pin(&PinRequest {
            dir: &pod_dir,
            kinds: &[NsKind::Net, NsKind::Uts],
            hostname: Some("web-0"),
            sysctls: &[("net.ipv4.ip_unprivileged_port_start".into(), "80".into())],
            join: None,
            net_from: Some(&spare.net()),
        })
        .unwrap();
        let spare_dir = spare.dir.clone();
        drop(spare);
        assert!(!spare_dir.exists(), "the spare's own pin stays");
        // The pod has the spare's namespace, with its sysctl set inside.
        assert_eq!(netns_inode(&pod_dir.join("net")), spare_ns);
        let value = std::thread::scope(|s| {
            s.spawn(|| {
                let f = std::fs::File::open(pod_dir.join("net")).unwrap();
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap()
            })
            .join()
            .unwrap()
        });
        assert_eq!(value.trim(), "80");
        ns::unpin(&pod_dir).unwrap();
        // The pool refills to its size; shutdown leaves no pin behind.
        pool.refill();
        wait_idle(&pool, 2).await;
        pool.shutdown();
        assert!(pool.take().is_none());
        assert_eq!(names_left(&tmp), Vec::<String>::new());
    }

    #[tokio::test]
    async fn spares_left_by_a_crashed_daemon_are_swept() {
        if !is_root("spares_left_by_a_crashed_daemon_are_swept") {
            return;
        }
        let (tmp, pool) = pool(2);
        pool.refill();
        wait_idle(&pool, 2).await;
        // A new daemon on the same root (the old one's memory is gone).
        let again = NetnsSpares::new(tmp.path().join("ns"), 2, Arc::new(Activity::new()));
        std::fs::create_dir(tmp.path().join("ns").join("a".repeat(64))).unwrap();
        assert_eq!(again.sweep(), 2);
        assert_eq!(
            names_left(&tmp),
            vec!["a".repeat(64)],
            "only spares are swept"
        );
        drop(pool);
    }

    #[test]
    fn an_empty_or_closed_pool_hands_out_nothing() {
        let pool = NetnsSpares::new("/nonexistent".into(), 0, Arc::new(Activity::new()));
        assert!(pool.take().is_none());
        pool.shutdown();
        assert!(pool.take().is_none());
        assert!(is_spare_dir(Path::new("/run/pvecri/ns/.spare-net-3")));
        assert!(!is_spare_dir(Path::new(&format!(
            "/run/pvecri/ns/{}",
            "a".repeat(64)
        ))));
    }
}
