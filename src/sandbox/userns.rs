//! The user namespace of a `hostUsers: false` pod.
//!
//! `pvecri-init userns` (see its module docs for the line protocol)
//! creates the namespace and, inside it, the pod's net/ipc/uts (and PID)
//! namespaces; [`Holder`] drives it: writes the kubelet's ID maps, pins the
//! user namespace at `R/ns/<pod>/user` and lets [`super::ns::pin`] join and
//! pin the others. Containers then join the user namespace with
//! `lxc.namespace.share.user` and see their files through idmapped mounts
//! ([`super::idmap`]).

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use nix::mount::{mount, MsFlags};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// One contiguous ID range: `length` IDs from `container_id` inside map to
/// `host_id` outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

impl IdMapping {
    /// The `/proc/<pid>/uid_map` (and `lxc.idmap`) text of this range.
    pub fn map_line(&self) -> String {
        format!("{} {} {}\n", self.container_id, self.host_id, self.length)
    }

    /// The host ID of `id` inside, if mapped.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        let offset = id.checked_sub(self.container_id)?;
        (offset < self.length).then(|| self.host_id + offset)
    }
}

/// The ID maps of a pod's user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNamespace {
    pub uids: IdMapping,
    pub gids: IdMapping,
}

impl UserNamespace {
    /// Host uid and gid of the pod's root.
    pub fn root(&self) -> (u32, u32) {
        (
            self.uids.to_host(0).unwrap_or(self.uids.host_id),
            self.gids.to_host(0).unwrap_or(self.gids.host_id),
        )
    }
}

#[derive(Debug, Error)]
pub enum UsernsError {
    #[error("cannot run {init} userns")]
    Spawn {
        init: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{init} userns: {step} failed: {message}")]
    Protocol {
        init: PathBuf,
        step: &'static str,
        message: String,
    },
    #[error("writing {path} failed")]
    Map {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pinning the user namespace at {path} failed")]
    Pin {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A running `pvecri-init userns` whose namespaces are mapped and made.
pub struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Host PID of the new PID namespace's PID 1, when one was asked for.
    pub pid1: Option<i32>,
}

impl Holder {
    /// Runs the helper and maps its user namespace; `namespaces` are the
    /// helper's arguments (`net`, `ipc`, `uts`, `pid`). Blocking.
    pub fn start(
        init: &Path,
        ids: &UserNamespace,
        namespaces: &[&str],
    ) -> Result<Self, UsernsError> {
        let mut child = Command::new(init)
            .arg("userns")
            .args(namespaces)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| UsernsError::Spawn {
                init: init.to_owned(),
                source,
            })?;
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut holder = Holder {
            child,
            stdin,
            pid1: None,
        };
        let result = holder.handshake(init, ids, &mut stdout);
        if let Err(e) = result {
            holder.kill();
            return Err(e);
        }
        Ok(holder)
    }

    fn handshake(
        &mut self,
        init: &Path,
        ids: &UserNamespace,
        stdout: &mut BufReader<ChildStdout>,
    ) -> Result<(), UsernsError> {
        let ready = self.read_line(init, "creating the user namespace", stdout)?;
        if ready != "ready" {
            return Err(self.protocol(init, "creating the user namespace", ready));
        }
        let pid = self.child.id();
        for (file, mapping) in [("uid_map", ids.uids), ("gid_map", ids.gids)] {
            let path = PathBuf::from(format!("/proc/{pid}/{file}"));
            std::fs::write(&path, mapping.map_line())
                .map_err(|source| UsernsError::Map { path, source })?;
        }
        let go = self
            .stdin
            .as_mut()
            .expect("stdin until finish")
            .write_all(b"go\n");
        if let Err(e) = go {
            return Err(self.protocol(init, "sending go", e.to_string()));
        }
        let pid1 = self.read_line(init, "creating the pod namespaces", stdout)?;
        match pid1.parse::<i32>() {
            Ok(0) => {}
            Ok(p) => self.pid1 = Some(p),
            Err(_) => return Err(self.protocol(init, "creating the pod namespaces", pid1)),
        }
        Ok(())
    }

    fn read_line(
        &mut self,
        init: &Path,
        step: &'static str,
        stdout: &mut BufReader<ChildStdout>,
    ) -> Result<String, UsernsError> {
        let mut line = String::new();
        match stdout.read_line(&mut line) {
            Ok(n) if n > 0 => Ok(line.trim().to_owned()),
            _ => {
                let stderr = self.stderr();
                Err(self.protocol(init, step, stderr))
            }
        }
    }

    fn stderr(&mut self) -> String {
        let _ = self.child.wait();
        let mut text = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = io::Read::read_to_string(&mut e, &mut text);
        }
        text.trim().to_owned()
    }

    fn protocol(&self, init: &Path, step: &'static str, message: String) -> UsernsError {
        UsernsError::Protocol {
            init: init.to_owned(),
            step,
            message,
        }
    }

    /// The helper's host PID: its `/proc/<pid>/ns/*` are the pod's.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Opens the helper's user namespace.
    pub fn open_userns(&self) -> io::Result<File> {
        File::open(format!("/proc/{}/ns/user", self.pid()))
    }

    /// Pins the helper's user namespace at `dir/user`.
    pub fn pin_user(&self, dir: &Path) -> Result<PathBuf, UsernsError> {
        let path = dir.join("user");
        let fail = |source| UsernsError::Pin {
            path: path.clone(),
            source,
        };
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(fail)?;
        mount(
            Some(Path::new(&format!("/proc/{}/ns/user", self.pid()))),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| fail(e.into()))?;
        Ok(path)
    }

    /// Lets the helper exit (its PID 1, if any, stays) and reaps it.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }

    fn kill(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(p) = self.pid1 {
            super::infra::kill(p, None);
        }
    }
}

/// Why this node cannot run user-namespace pods.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProbeError {
    #[error("cannot start a user namespace holder")]
    Holder(#[source] UsernsError),
    #[error("opening the helper's user namespace")]
    Open(#[source] std::io::Error),
    #[error("idmapped mounts do not work here")]
    Idmap(#[source] super::idmap::IdmapError),
}

/// Whether this node can run user-namespace pods: a throwaway user
/// namespace from the helper, and an idmapped clone of `path` (where root
/// filesystems live). `Err` says why not.
pub(crate) fn probe(init: &Path, path: &Path) -> Result<(), ProbeError> {
    let ids = UserNamespace {
        uids: IdMapping {
            container_id: 0,
            host_id: 65536,
            length: 65536,
        },
        gids: IdMapping {
            container_id: 0,
            host_id: 65536,
            length: 65536,
        },
    };
    let holder = Holder::start(init, &ids, &[]).map_err(ProbeError::Holder)?;
    let result = holder
        .open_userns()
        .map_err(ProbeError::Open)
        .and_then(|ns| super::idmap::supported(path, &ns).map_err(ProbeError::Idmap));
    holder.finish();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_translate_inside_ids() {
        let m = IdMapping {
            container_id: 0,
            host_id: 1000,
            length: 100,
        };
        assert_eq!(m.map_line(), "0 1000 100\n");
        assert_eq!(m.to_host(0), Some(1000));
        assert_eq!(m.to_host(99), Some(1099));
        assert_eq!(m.to_host(100), None);
    }
}
