//! The CRI unix socket: created private (the process umask is 077) under a
//! temporary name, given its group and mode (0660 for the configured group,
//! else 0600), then renamed into place, so no client can reach it before
//! its permissions are final.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use tokio::net::UnixListener;

pub(super) fn bind(path: &Path, group: Option<&str>) -> anyhow::Result<UnixListener> {
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
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let std_listener = std::os::unix::net::UnixListener::bind(&tmp)
        .with_context(|| format!("cannot bind CRI socket {}", tmp.display()))?;
    let finish = || -> anyhow::Result<()> {
        if let Some(name) = group {
            let grp = nix::unistd::Group::from_name(name)
                .with_context(|| format!("cannot look up socket_group {name:?}"))?
                .with_context(|| format!("socket_group {name:?} does not exist"))?;
            nix::unistd::chown(&tmp, None, Some(grp.gid))
                .with_context(|| format!("cannot chown {} to group {name}", tmp.display()))?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o660))
                .with_context(|| format!("cannot chmod {}", tmp.display()))?;
        } else {
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot chmod {}", tmp.display()))?;
        }
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot move the CRI socket to {}", path.display()))
    };
    if let Err(err) = finish() {
        let _ = std::fs::remove_file(&tmp);
        return Err(err);
    }
    std_listener
        .set_nonblocking(true)
        .context("cannot make the CRI socket non-blocking")?;
    UnixListener::from_std(std_listener).context("cannot register the CRI socket")
}
