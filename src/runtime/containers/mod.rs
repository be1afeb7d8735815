//! Containers, one file per CRI operation: `create` (root filesystem,
//! LXC config, the monitor with init waiting; its mounts in `mounts`, the
//! monitor's start-up in `monitor`), `start` (release init), `stop` (the
//! stop signal, then SIGKILL), `remove`, `status` (status and list),
//! `update` (live resources), `reopen` (the log after rotation),
//! `checkpoint` (a CRIU archive of a running container) and `restore`
//! (a container made from one).

mod checkpoint;
mod create;
mod monitor;
mod mounts;
mod remove;
mod reopen;
mod restore;
mod start;
mod status;
mod stop;
mod update;

use std::path::PathBuf;

use super::error::RuntimeError;
use super::Runtime;
use crate::container::run_dir::RunDir;

pub(crate) use checkpoint::CheckpointRequest;
pub(crate) use status::ContainerFilter;

impl Runtime {
    /// Where a user-namespace container's volumes are staged
    /// (`crate::container::staging`).
    pub(crate) fn staging_dir(&self, id: &str) -> PathBuf {
        self.config.runtime_dir.join("staging").join(id)
    }

    pub(super) fn container_run_dir(&self, id: &str) -> Result<RunDir, RuntimeError> {
        Ok(RunDir::new(&self.config.runtime_dir, id)?)
    }
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Field 22 of /proc/<pid>/stat: the process start time in clock ticks.
pub(crate) use crate::sandbox::infra::proc_start_time;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_self() {
        assert!(proc_start_time(std::process::id() as i32).is_some());
        assert_eq!(proc_start_time(-5), None);
    }
}
