//! Keeping resident memory small on nodes with many pods and many cores:
//! the daemon's allocator settings, and handing freed memory back (the
//! daemon's watcher, each monitor after its start).
//!
//! glibc gives every thread that allocates while another holds the main
//! heap's lock an arena of its own (up to eight per core), and memory freed
//! in an arena mostly stays mapped. The daemon's threads (tokio's workers
//! and its blocking pool, which grows with concurrent calls) would so keep
//! tens of MiB of freed memory after a burst of pod starts. Two arenas are
//! plenty for the daemon's allocation rate; the watcher hands freed memory
//! back to the kernel now and then ([`trim`]).

/// Arenas the daemon's allocator may use.
const ARENAS: i32 = 2;

/// Tokio worker threads: the daemon's async work is light (the heavy parts
/// run on the blocking pool), so a large node does not need one per core.
pub(crate) const MAX_WORKERS: usize = 8;

/// Limits glibc's arenas; call before the daemon starts its threads.
pub(crate) fn limit_arenas() {
    // SAFETY: mallopt only changes allocator parameters (it takes the
    // allocator's own lock); called first thing, before tokio's threads.
    let ok = unsafe { libc::mallopt(libc::M_ARENA_MAX, ARENAS) };
    if ok != 1 {
        tracing::debug!("mallopt(M_ARENA_MAX) refused; the allocator keeps its defaults");
    }
}

/// Returns freed heap memory to the kernel.
pub(crate) fn trim() {
    // SAFETY: malloc_trim walks the allocator's own free lists; it takes
    // their locks itself and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The number of tokio worker threads for this machine.
pub(crate) fn workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_WORKERS)
}
