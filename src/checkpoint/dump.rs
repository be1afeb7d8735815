//! One checkpoint, start to end, on a blocking thread:
//!
//! 1. init's mounts and stdio read from /proc (what CRIU must be told is
//!    external);
//! 2. the cgroup frozen;
//! 3. `criu dump --leave-running` run through `pvecri criu-exec` inside the
//!    pod's namespaces, killed at the deadline;
//! 4. the writable layer copied while still frozen, then thawed;
//! 5. the metadata written and the archive put in place.
//!
//! The work directory is private (0700) and removed at the end, whatever
//! happened. The deadline is checked before the archive is renamed into
//! place, so a call that timed out leaves no archive behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::archive::{self, ArchiveError, ConfigDump, Destination, Provenance};
use super::criu::{self, Criu};
use super::freeze::{FreezeError, Freezer};
use super::mounts;
use super::nsexec::CriuExecArgs;
use super::rootfs_diff::{self, DiffError};
use super::stdio::{self, StdioError};
use crate::container::ContainerRecord;
use crate::pod::PodRecord;

/// Everything one dump needs, gathered by the runtime.
pub(crate) struct DumpJob {
    pub container: ContainerRecord,
    pub pod: PodRecord,
    pub criu: Criu,
    /// This binary, for `criu-exec`.
    pub self_exe: PathBuf,
    /// A fresh directory to work in (created here, removed at the end).
    pub work: PathBuf,
    pub destination: Destination,
    pub freezer: Freezer,
    /// The container's overlay upper dir.
    pub upper: PathBuf,
    pub cgroup_version: &'static str,
    /// `--leave-running`: the container goes on after the dump.
    pub leave_running: bool,
    /// Memory pre-dumps before the final dump, each saving what changed
    /// since the one before while the container runs (0: none; needs the
    /// kernel's soft-dirty tracking, [`soft_dirty_available`]).
    pub pre_copy: u32,
}

/// What a finished checkpoint reports.
#[derive(Debug)]
pub(crate) struct DumpReport {
    pub archive_bytes: u64,
    /// From the moment the cgroup froze to the thaw.
    pub frozen: Duration,
    pub external_mounts: usize,
    pub deleted_files: usize,
    /// Pre-dumps made before the final dump.
    pub pre_copies: u32,
    /// When the final freeze began (ns since the epoch): from then on the
    /// container did not run (for good, without `leave_running`).
    pub frozen_at_ns: i64,
    /// Without `leave_running`: the container, still frozen. The caller
    /// ends it once everything is saved, or drops it to let it run on.
    pub held: Option<super::freeze::HeldFreeze>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum DumpError {
    #[error("the checkpoint took longer than {0:?}")]
    Deadline(Duration),
    #[error("cannot {op}")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Stdio(#[from] StdioError),
    #[error(transparent)]
    Freeze(#[from] FreezeError),
    #[error("criu dump failed ({status}): {errors}")]
    Criu { status: String, errors: String },
    #[error(transparent)]
    Diff(#[from] DiffError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> DumpError {
    move |source| DumpError::Io { op, source }
}

/// Removes the work directory on drop.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove a checkpoint work dir");
        }
    }
}

/// The criu arguments of a keep-running dump.
pub(crate) fn dump_args(
    pid: i32,
    work: &Path,
    freeze_dir: &Path,
    external_mounts: &[String],
    external_files: &[String],
    parent: Option<&str>,
) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = Vec::new();
    let mut push = |s: &str| a.push(s.into());
    for s in [
        "dump",
        "--tree",
        &pid.to_string(),
        "--images-dir",
        &work.join(archive::CHECKPOINT_DIR).display().to_string(),
        "--work-dir",
        &work.display().to_string(),
        "--log-file",
        archive::DUMP_LOG,
        "-v4",
        "--tcp-established",
        "--file-locks",
        "--manage-cgroups=soft",
        "--freeze-cgroup",
        &freeze_dir.display().to_string(),
    ] {
        push(s);
    }
    // Always: a dump that is to end the container ends it only once the
    // archive is complete (`run`), so a failure on the way loses nothing.
    push("--leave-running");
    if let Some(parent) = parent {
        // Only the pages dirtied since the last pre-dump are written; the
        // rest stay in the parent images (linked as `parent`).
        push("--track-mem");
        push("--prev-images-dir");
        push(&format!("../{parent}"));
    }
    for f in external_files {
        push("--external");
        push(f);
    }
    for m in external_mounts {
        // The key is the mount point itself; a restore maps it to the new
        // source.
        push("--ext-mount-map");
        push(&format!("{m}:{m}"));
    }
    a
}

/// The criu arguments of pre-dump `n` (1-based) into `work/pre-<n>`,
/// linked to the one before. The container runs on; criu freezes the
/// cgroup only while it collects the pages.
pub(crate) fn pre_dump_args(
    pid: i32,
    work: &Path,
    n: u32,
    freeze_dir: &Path,
    external_mounts: &[String],
    external_files: &[String],
) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> = Vec::new();
    let mut push = |s: &str| a.push(s.into());
    for s in [
        "pre-dump",
        "--tree",
        &pid.to_string(),
        "--images-dir",
        &work.join(archive::pre_dump_dir(n)).display().to_string(),
        "--work-dir",
        &work.display().to_string(),
        "--log-file",
        &format!("pre-dump-{n}.log"),
        "-v4",
        "--track-mem",
        "--manage-cgroups=soft",
        "--freeze-cgroup",
        &freeze_dir.display().to_string(),
    ] {
        push(s);
    }
    if n > 1 {
        push("--prev-images-dir");
        push(&format!("../{}", archive::pre_dump_dir(n - 1)));
    }
    for f in external_files {
        push("--external");
        push(f);
    }
    for m in external_mounts {
        push("--ext-mount-map");
        push(&format!("{m}:{m}"));
    }
    a
}

/// Whether the kernel tracks soft-dirty pages (what a pre-dump needs):
/// after this process's soft-dirty bits are cleared (`4` into
/// `/proc/self/clear_refs`, which touches nothing else), a page it writes
/// shows bit 55 in its pagemap entry only where the kernel tracks them
/// (`CONFIG_MEM_SOFT_DIRTY`); elsewhere the bit is always 0.
pub fn soft_dirty_available() -> bool {
    // Once per process: the probe clears this process's soft-dirty bits,
    // and two at once could clear each other's.
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(probe_soft_dirty)
}

fn probe_soft_dirty() -> bool {
    use std::io::{Read, Seek, SeekFrom};
    // SAFETY: sysconf has no memory effects.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => return false,
    };
    let mut buf = vec![0u8; page * 2];
    let start = buf.as_mut_ptr() as usize;
    let aligned = (start + page - 1) & !(page - 1);
    if std::fs::write("/proc/self/clear_refs", b"4").is_err() {
        return false;
    }
    // SAFETY: `aligned` lies within `buf` (at most page - 1 bytes past its
    // start, and `buf` is two pages long), which is alive and exclusively
    // ours; a volatile write so the store is not optimised away.
    unsafe { std::ptr::write_volatile(aligned as *mut u8, 1) };
    let mut entry = [0u8; 8];
    let read = std::fs::File::open("/proc/self/pagemap").and_then(|mut f| {
        f.seek(SeekFrom::Start((aligned / page * 8) as u64))?;
        f.read_exact(&mut entry)
    });
    drop(buf);
    read.is_ok() && (u64::from_le_bytes(entry) >> 55) & 1 == 1
}

/// Runs criu (through `criu-exec`, in the pod's namespaces) to the end,
/// killing it at the deadline; `log` names its log in `work`.
fn run_criu(
    job: &DumpJob,
    work: &Path,
    argv: Vec<std::ffi::OsString>,
    log: &str,
    deadline: Instant,
    budget: Duration,
) -> Result<(), DumpError> {
    let args = CriuExecArgs {
        criu: job.criu.path.clone(),
        net: job.pod.net_ns.clone().unwrap_or_default().into(),
        ipc: job.pod.ipc_ns.clone().unwrap_or_default().into(),
        uts: job.pod.uts_ns.clone().unwrap_or_default().into(),
        argv,
    };
    let out = std::fs::File::create(work.join("criu.out")).map_err(io("create criu.out"))?;
    let err = out.try_clone().map_err(io("create criu.out"))?;
    let mut child = Command::new(&job.self_exe)
        .args(args.to_args())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(io("spawn criu"))?;
    let status = loop {
        match child.try_wait().map_err(io("wait for criu"))? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                // criu ignores SIGTERM while it holds the tree; SIGKILL
                // detaches its ptrace, and the guard thaws the cgroup.
                let _ = child.kill();
                let _ = child.wait();
                return Err(DumpError::Deadline(budget));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    if !status.success() {
        let log = std::fs::read_to_string(work.join(log)).unwrap_or_default();
        let out = std::fs::read_to_string(work.join("criu.out")).unwrap_or_default();
        let mut errors = criu::error_lines(&log, 5);
        if errors.is_empty() {
            errors = out.lines().take(5).map(str::to_owned).collect();
        }
        return Err(DumpError::Criu {
            status: status.to_string(),
            errors: errors.join("; "),
        });
    }
    Ok(())
}

/// Runs the job; `deadline` bounds all of it.
pub(crate) fn run(job: DumpJob, deadline: Instant) -> Result<DumpReport, DumpError> {
    let started = Instant::now();
    let budget = deadline.saturating_duration_since(started);
    let pid = job.container.init_pid;
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(job.work.join(archive::CHECKPOINT_DIR))
            .map_err(io("create the checkpoint work directory"))?;
    }
    let work = WorkDir(job.work.clone());

    let mountinfo = mounts::of_pid(pid).map_err(io("read init's mounts"))?;
    let external_mounts = mounts::external(&mountinfo);
    let fds = stdio::inspect(pid, &mounts::ids(&mountinfo))?;
    let keys: Vec<&str> = fds.iter().map(|f| f.key.as_str()).collect();
    std::fs::write(
        work.0
            .join(archive::CHECKPOINT_DIR)
            .join(archive::DESCRIPTORS),
        serde_json::to_vec(&keys).unwrap_or_default(),
    )
    .map_err(io("write descriptors.json"))?;
    std::fs::write(
        work.0
            .join(archive::CHECKPOINT_DIR)
            .join(super::confinement::FILE),
        serde_json::to_vec(&super::confinement::Confinement::of(&job.container.config))
            .unwrap_or_default(),
    )
    .map_err(io("write container.json"))?;
    let external_files: Vec<String> = fds
        .iter()
        .filter(|f| f.external)
        .map(|f| f.key.clone())
        .collect();

    // Pre-copy: memory saved while the container runs, so that the final
    // dump, frozen, writes only what changed since.
    let pre_copies = if job.pre_copy > 0 && soft_dirty_available() {
        job.pre_copy
    } else {
        if job.pre_copy > 0 {
            tracing::warn!(
                container_id = %job.container.id,
                "the kernel has no soft-dirty tracking: no pre-copy, one full dump"
            );
        }
        0
    };
    for n in 1..=pre_copies {
        std::fs::create_dir(work.0.join(archive::pre_dump_dir(n)))
            .map_err(io("create a pre-dump directory"))?;
        let argv = pre_dump_args(
            pid,
            &work.0,
            n,
            job.freezer.dir(),
            &external_mounts,
            &external_files,
        );
        run_criu(
            &job,
            &work.0,
            argv,
            &format!("pre-dump-{n}.log"),
            deadline,
            budget,
        )?;
        let _ = std::fs::remove_file(work.0.join(format!("pre-dump-{n}.log")));
    }
    let parent = (pre_copies > 0).then(|| archive::pre_dump_dir(pre_copies));

    let frozen_at_ns = crate::runtime::now_ns();
    let frozen_guard = job.freezer.freeze(budget.min(Duration::from_secs(10)))?;
    let frozen_at = Instant::now();

    let argv = dump_args(
        pid,
        &work.0,
        job.freezer.dir(),
        &external_mounts,
        &external_files,
        parent.as_deref(),
    );
    run_criu(&job, &work.0, argv, archive::DUMP_LOG, deadline, budget)?;

    let diff = rootfs_diff::write(
        &job.upper,
        &external_mounts,
        &work.0.join(archive::ROOTFS_DIFF),
        &work.0.join(archive::DELETED_FILES),
    )?;
    let frozen = frozen_at.elapsed();
    // A container that is to end stays frozen until its archive is in
    // place; one that goes on is thawed now.
    let frozen_guard = if job.leave_running {
        drop(frozen_guard);
        None
    } else {
        Some(frozen_guard)
    };

    // CRIU keeps its statistics next to the images; the layout has them at
    // the top.
    let stats = work
        .0
        .join(archive::CHECKPOINT_DIR)
        .join(archive::STATS_DUMP);
    if stats.exists() {
        std::fs::rename(&stats, work.0.join(archive::STATS_DUMP)).map_err(io("move stats-dump"))?;
    }
    let config = ConfigDump::new(&job.container, crate::runtime::now_ns());
    std::fs::write(
        work.0.join(archive::CONFIG_DUMP),
        serde_json::to_vec_pretty(&config).unwrap_or_default(),
    )
    .map_err(io("write config.dump"))?;
    let node = Provenance {
        criu_version: job.criu.version.clone(),
        kernel: crate::node::kernel::release(),
        cgroup_version: job.cgroup_version,
    };
    let spec = archive::spec_dump(&job.container, &job.pod, &external_mounts, &node);
    std::fs::write(
        work.0.join(archive::SPEC_DUMP),
        serde_json::to_vec_pretty(&spec).unwrap_or_default(),
    )
    .map_err(io("write spec.dump"))?;
    // The criu helper's own output stays out of the archive.
    let _ = std::fs::remove_file(work.0.join("criu.out"));

    if Instant::now() >= deadline {
        return Err(DumpError::Deadline(budget));
    }
    let archive_bytes = job.destination.write_from(&work.0, pre_copies)?;
    drop(work);
    // Saved; one that is to end stays frozen for the caller, who ends it
    // once all it needs is saved (a pod's other containers too).
    let held = frozen_guard.map(|guard| guard.hold(&job.container.cgroup));
    Ok(DumpReport {
        archive_bytes,
        frozen,
        external_mounts: external_mounts.len(),
        deleted_files: diff.deleted.len(),
        pre_copies,
        frozen_at_ns,
        held,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_dirty_probe_matches_the_kernel_config() {
        // Where the running kernel's config is readable, the probe agrees
        // with it (this host's 6.18 has no soft-dirty; the VM's 6.1 has).
        let release = crate::node::kernel::release();
        let Ok(config) = std::fs::read_to_string(format!("/boot/config-{release}")) else {
            eprintln!("no /boot/config of the running kernel: probe only");
            let _ = soft_dirty_available();
            return;
        };
        assert_eq!(
            probe_soft_dirty(),
            config.lines().any(|l| l == "CONFIG_MEM_SOFT_DIRTY=y")
        );
    }

    #[test]
    fn dumps_keep_running_in_the_frozen_cgroup_with_externals_declared() {
        let args = dump_args(
            42,
            Path::new("/var/lib/pvecri/checkpoints/c1.1"),
            Path::new("/sys/fs/cgroup/k/c1"),
            &["/etc/hostname".into()],
            &["file[18:3]".into()],
            None,
        );
        let args: Vec<String> = args.into_iter().map(|a| a.into_string().unwrap()).collect();
        let joined = args.join(" ");
        assert!(joined.starts_with("dump --tree 42 --images-dir /var/lib/pvecri/checkpoints/c1.1/checkpoint --work-dir /var/lib/pvecri/checkpoints/c1.1 --log-file dump.log"), "{joined}");
        for want in [
            "--leave-running",
            "--tcp-established",
            "--freeze-cgroup /sys/fs/cgroup/k/c1",
            "--external file[18:3]",
            "--ext-mount-map /etc/hostname:/etc/hostname",
        ] {
            assert!(joined.contains(want), "{want} missing from {joined}");
        }
    }
}
