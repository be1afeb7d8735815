//! The CRI unix socket: created private (the process umask is 077), then
//! widened to 0660 for the configured group, if any.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use tokio::net::UnixListener;

pub fn bind(path: &Path, group: Option<&str>) -> anyhow::Result<UnixListener> {
    // Only reached with the state lock held, so a socket left here belongs
    // to a daemon that is gone.
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?,
        Ok(_) => bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        ),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("cannot stat {}", path.display())),
    }
    let std_listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("cannot bind CRI socket {}", path.display()))?;
    if let Some(name) = group {
        let grp = nix::unistd::Group::from_name(name)
            .with_context(|| format!("cannot look up socket_group {name:?}"))?
            .with_context(|| format!("socket_group {name:?} does not exist"))?;
        nix::unistd::chown(path, None, Some(grp.gid))
            .with_context(|| format!("cannot chown {} to group {name}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .with_context(|| format!("cannot chmod {}", path.display()))?;
    } else {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot chmod {}", path.display()))?;
    }
    std_listener
        .set_nonblocking(true)
        .context("cannot make the CRI socket non-blocking")?;
    UnixListener::from_std(std_listener).context("cannot register the CRI socket")
}
