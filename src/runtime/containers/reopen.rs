//! ReopenContainerLog: the monitor reopens the log file the kubelet has
//! rotated.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::container::ContainerState;
use crate::runtime::error::RuntimeError;
use crate::runtime::Runtime;

impl Runtime {
    /// Asks the monitor to reopen the log file (after the kubelet rotated it).
    pub(crate) async fn reopen_container_log(&self, id: &str) -> Result<(), RuntimeError> {
        let c = self.container(id)?;
        if c.state != ContainerState::Running {
            return Err(RuntimeError::container_state(
                &c,
                "only a running container's log can be reopened",
            ));
        }
        let short = self
            .container_run_dir(&c.id)?
            .open_short()
            .map_err(|e| RuntimeError::os("connecting to the monitor", &c.id, e))?;
        let mut stream = tokio::net::UnixStream::connect(short.control_socket())
            .await
            .map_err(|e| RuntimeError::os("connecting to the monitor", &c.id, e))?;
        use tokio::io::AsyncWriteExt;
        stream
            .write_all(b"reopen\n")
            .await
            .map_err(|e| RuntimeError::os("asking the monitor to reopen the log", &c.id, e))?;
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
            .await
            .map_err(|_| RuntimeError::Timeout {
                op: "reopening the log",
                id: c.id.clone(),
                seconds: 10,
            })?
            .map_err(|e| RuntimeError::os("reading the monitor's answer", &c.id, e))?;
        if answer.trim() == "ok" {
            Ok(())
        } else {
            Err(RuntimeError::os("reopening the log", &c.id, answer.trim()))
        }
    }
}
