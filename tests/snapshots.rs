//! Snapshot backends on real filesystems: layer whiteouts as a container
//! sees them in its mounted root, for overlay and dir, and root
//! filesystems idmapped for a user namespace.

// Helpers outside #[test] functions unwrap too: a panic there fails the
// test, which is what a test wants.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{init_path, require_init, require_root};
use pvecri::testing::snapshot::{BackendKind, Snapshots};

/// Writes a gzip layer with the given (path, contents) entries; a `None`
/// content makes a directory.
fn layer(dir: &Path, name: &str, entries: &[(&str, Option<&str>)]) -> PathBuf {
    let path = dir.join(name);
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    for (p, content) in entries {
        let mut h = header();
        match content {
            Some(data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                tar.append_data(&mut h, p, data.as_bytes()).unwrap();
            }
            None => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
                h.set_cksum();
                tar.append_data(&mut h, p, std::io::empty()).unwrap();
            }
        }
    }
    tar.into_inner().unwrap().finish().unwrap();
    path
}

fn header() -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

fn check_whiteouts(kind: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let l1 = layer(
        dir.path(),
        "l1.tgz",
        &[
            ("a", None),
            ("a/keep", Some("k")),
            ("a/gone", Some("g")),
            ("opq", None),
            ("opq/old", Some("o")),
            ("dir-gone", None),
            ("dir-gone/x", Some("x")),
        ],
    );
    let l2 = layer(
        dir.path(),
        "l2.tgz",
        &[
            ("a/.wh.gone", Some("")),
            ("opq/new", Some("n")),
            ("opq/.wh..wh..opq", Some("")),
            (".wh.dir-gone", Some("")),
        ],
    );
    let state = dir.path().join("state");
    let snaps = Snapshots::open(&state, kind, None).unwrap();
    let c1 = format!("sha256:{}", "1".repeat(64));
    let c2 = format!("sha256:{}", "2".repeat(64));
    snaps.commit_layer(&c1, None, &l1).unwrap();
    snaps.commit_layer(&c2, Some(&c1), &l2).unwrap();
    assert_eq!(snaps.layers().unwrap(), vec![c1.clone(), c2.clone()]);

    let root = snaps.prepare_rootfs("ctr-1", Some(&c2), None).unwrap();
    assert_eq!(std::fs::read_to_string(root.join("a/keep")).unwrap(), "k");
    assert!(!root.join("a/gone").exists(), "whited-out file visible");
    assert!(!root.join("dir-gone").exists(), "whited-out dir visible");
    assert!(
        !root.join("opq/old").exists(),
        "opaque dir shows lower content"
    );
    assert_eq!(std::fs::read_to_string(root.join("opq/new")).unwrap(), "n");
    // The container's writes stay in its own layer.
    std::fs::write(root.join("a/keep"), "changed").unwrap();
    let other = snaps.prepare_rootfs("ctr-2", Some(&c2), None).unwrap();
    assert_eq!(std::fs::read_to_string(other.join("a/keep")).unwrap(), "k");

    snaps.remove_rootfs("ctr-1").unwrap();
    snaps.remove_rootfs("ctr-2").unwrap();
    snaps.remove_rootfs("ctr-2").unwrap(); // idempotent
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(state.to_str().unwrap()),
        "a rootfs mount leaked"
    );
    snaps.remove_layer(&c2).unwrap();
    snaps.remove_layer(&c1).unwrap();
    assert!(snaps.layers().unwrap().is_empty());
}

#[test]
fn overlay_whiteouts_in_a_mounted_rootfs() {
    if require_root("overlay_whiteouts_in_a_mounted_rootfs") {
        check_whiteouts(BackendKind::Overlay);
    }
}

#[test]
fn dir_backend_whiteouts() {
    if require_root("dir_backend_whiteouts") {
        check_whiteouts(BackendKind::Dir);
    }
}

#[test]
fn a_layer_with_an_escaping_entry_is_refused_and_not_committed() {
    if !require_root("a_layer_with_an_escaping_entry_is_refused_and_not_committed") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let blob = dir.path().join("evil.tar");
    {
        let mut tar = tar::Builder::new(std::fs::File::create(&blob).unwrap());
        let mut h = header();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        tar.append_link(&mut h, "link", "/").unwrap();
        let mut h = header();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(4);
        h.set_mode(0o644);
        tar.append_data(&mut h, "link/pvecri-escape-test", &b"evil"[..])
            .unwrap();
        tar.finish().unwrap();
    }
    let snaps = Snapshots::open(&dir.path().join("state"), BackendKind::Overlay, None).unwrap();
    let chain = format!("sha256:{}", "3".repeat(64));
    let err = snaps.commit_layer(&chain, None, &blob).unwrap_err();
    let msg = pvecri_error_chain(&err);
    assert!(msg.contains("link/pvecri-escape-test"), "{msg}");
    assert!(!Path::new("/pvecri-escape-test").exists());
    assert!(!snaps.has_layer(&chain));
    assert!(snaps.layers().unwrap().is_empty());
}

fn pvecri_error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = err.to_string();
    let mut src = err.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// A root filesystem prepared for a user-namespace pod shows the layer's
/// files as owned by the pod root's host ID, keeps what the pod writes in
/// the container's own layer, and leaves no mount behind or shared layer
/// damaged when removed (removal must never recurse through an idmapped
/// layer clone).
fn check_idmapped(kind: BackendKind) {
    use pvecri::testing::sandbox::{Holder, IdMapping, UserNamespace};
    use std::os::unix::fs::MetadataExt;
    const HOST: u32 = 300000;
    let dir = tempfile::tempdir().unwrap();
    let l1 = layer(
        dir.path(),
        "l1.tgz",
        &[("etc", None), ("etc/conf", Some("c"))],
    );
    let state = dir.path().join("state");
    let snaps = Snapshots::open(&state, kind, None).unwrap();
    let c1 = format!("sha256:{}", "1".repeat(64));
    snaps.commit_layer(&c1, None, &l1).unwrap();

    let m = IdMapping {
        container_id: 0,
        host_id: HOST,
        length: 65536,
    };
    let holder = Holder::start(&init_path(), &UserNamespace { uids: m, gids: m }, &[]).unwrap();
    let userns = dir.path().join("userns");
    std::fs::write(&userns, "").unwrap();
    let pin = nix::mount::mount(
        Some(std::path::Path::new(&format!(
            "/proc/{}/ns/user",
            holder.pid()
        ))),
        &userns,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    );
    holder.finish();
    pin.unwrap();
    let idmap = pvecri::testing::snapshot::Idmap {
        userns: userns.clone(),
        uid: HOST,
        gid: HOST,
    };
    let root = snaps
        .prepare_rootfs("ctr-u", Some(&c1), Some(&idmap))
        .unwrap();
    let conf = std::fs::metadata(root.join("etc/conf")).unwrap();
    assert_eq!((conf.uid(), conf.gid()), (HOST, HOST), "{kind:?}");
    let top = std::fs::metadata(&root).unwrap();
    assert_eq!(top.uid(), HOST, "{kind:?}: the root dir");
    let layer_file = std::fs::read_dir(snaps.layers_root())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("fs/etc/conf");
    assert_eq!(std::fs::metadata(&layer_file).unwrap().uid(), 0);

    snaps.remove_rootfs("ctr-u").unwrap();
    assert_eq!(
        std::fs::read_to_string(&layer_file).unwrap(),
        "c",
        "{kind:?}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let here = state.display().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&here)),
        "{kind:?}: mounts left under {here}:\n{mounts}"
    );
    nix::mount::umount2(&userns, nix::mount::MntFlags::MNT_DETACH).unwrap();
}

#[test]
fn overlay_rootfs_idmapped_for_a_user_namespace() {
    if require_root("overlay_rootfs_idmapped_for_a_user_namespace")
        && require_init("overlay_rootfs_idmapped_for_a_user_namespace")
    {
        check_idmapped(BackendKind::Overlay);
    }
}

#[test]
fn dir_rootfs_idmapped_for_a_user_namespace() {
    if require_root("dir_rootfs_idmapped_for_a_user_namespace")
        && require_init("dir_rootfs_idmapped_for_a_user_namespace")
    {
        check_idmapped(BackendKind::Dir);
    }
}
