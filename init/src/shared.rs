//! `pvecri-init mount-shared <pid> <source> <target> [...]`, run by the
//! daemon on the host for containers with bidirectional (rshared) volumes.
//!
//! liblxc turns the container's copy of the host mount tree into dependent
//! (slave) mounts before it binds the volumes, so the binds it makes receive
//! the host's mounts but never send the container's back. This clones each
//! host mount with open_tree(2) while still in the host namespace (a clone of
//! a shared mount joins its peer group), enters the container's mount
//! namespace and attaches the clones over the targets with move_mount(2).
//! It runs while the container's init still waits for StartContainer.

use std::ffi::{CString, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

use crate::sys::{self, Errno};

pub(crate) fn run(args: &[OsString]) -> ! {
    match mount_all(args) {
        Ok(()) => std::process::exit(0),
        Err(message) => {
            let _ = writeln!(
                std::io::stderr().lock(),
                "pvecri-init mount-shared: {message}"
            );
            std::process::exit(1)
        }
    }
}

fn mount_all(args: &[OsString]) -> Result<(), String> {
    let usage = || "usage: pvecri-init mount-shared <pid> <source> <target> [...]".to_owned();
    let (pid, pairs) = args.split_first().ok_or_else(usage)?;
    if pairs.is_empty() || pairs.len() % 2 != 0 {
        return Err(usage());
    }
    let pid: u32 = pid
        .to_str()
        .and_then(|p| p.parse().ok())
        .ok_or_else(usage)?;
    let c = |s: &OsString| CString::new(s.as_bytes()).map_err(|_| usage());
    let mut clones = Vec::new();
    for pair in pairs.chunks(2) {
        let (source, target) = (c(&pair[0])?, c(&pair[1])?);
        let fd = sys::clone_tree(&source)
            .map_err(|e| format!("clone {}: {e}", source.to_string_lossy()))?;
        clones.push((fd, target));
    }
    let ns = CString::new(format!("/proc/{pid}/ns/mnt")).expect("no NUL");
    sys::enter_mount_ns(&ns).map_err(|e: Errno| format!("enter {}: {e}", ns.to_string_lossy()))?;
    for (fd, target) in clones {
        sys::attach_mount(fd, &target)
            .map_err(|e| format!("attach at {}: {e}", target.to_string_lossy()))?;
    }
    Ok(())
}
