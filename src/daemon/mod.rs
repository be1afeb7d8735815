//! `pvecri daemon`: the long-running CRI server.
//!
//! Start-up order matters: the state-dir lock is taken before anything else
//! is touched, so a second daemon refuses to start without disturbing the
//! first one's socket or store. On SIGTERM/SIGINT the server stops accepting
//! calls and exits; containers are separate processes and keep running.

mod deadline;
mod lock;
mod server;
mod socket;

use std::path::Path;

use anyhow::Context;
use tracing::info;

use crate::config::Config;
use crate::runtime::Runtime;
use crate::store::Store;

pub(crate) use lock::{holder as lock_holder, StateLock};

/// Runs the daemon until a termination signal arrives.
pub(crate) fn run(config: Config) -> anyhow::Result<()> {
    crate::memory::limit_arenas();
    crate::failpoint::init()?;
    create_dir(&config.state_dir, 0o711)?;
    create_dir(&config.runtime_dir, 0o711)?;
    let _lock = StateLock::acquire(&config.lock_path())?;
    // Traversable: the root of a user-namespace pod is an unprivileged
    // host ID while liblxc sets its container up.
    create_dir(&config.lxc_path(), 0o711)?;
    set_mode(&config.lxc_path(), 0o711)?;
    for dir in [
        config.state_dir.join("sandboxes"),
        crate::container::run_dir::RunDir::all(&config.runtime_dir),
        config.runtime_dir.join("staging"),
    ] {
        create_dir(&dir, 0o711)?;
        set_mode(&dir, 0o711)?;
    }
    if let Some(parent) = config.socket.parent() {
        create_dir(parent, 0o711)?;
    }
    let store = Store::open(&config.store_path())?;
    info!(
        state_dir = %config.state_dir.display(),
        store_schema = crate::store::SCHEMA_VERSION,
        liblxc = %crate::lxc::version(),
        "state store opened"
    );
    let runtime = Runtime::new(config, store)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(crate::memory::workers())
        .thread_name("pvecri-worker")
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(server::serve(runtime))
}

fn create_dir(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !path.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
            .with_context(|| format!("cannot create directory {}", path.display()))?;
        set_mode(path, mode)?;
    }
    Ok(())
}

/// For a directory pvecri owns, also when an older version made it with
/// another mode.
fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set mode of {}", path.display()))?;
    Ok(())
}
