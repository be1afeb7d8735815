//! Content and metadata of ordinary entries.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use tar::EntryType;

use super::{needs_root, Layer, Scratch, MTIME};
use crate::snapshot::unpack::{xattr, UnpackStats, WhiteoutMode};

#[test]
fn files_dirs_symlinks_and_hardlinks_are_recreated() {
    let mut s = Scratch::new();
    let layer = Layer::new()
        .dir("etc", 0o755)
        .file("etc/hostname", b"box\n", 0o644)
        .symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
        .hardlink("etc/hostname.bak", "etc/hostname")
        .file("implicit/parents/f", b"x", 0o600)
        .tar();
    let stats = s.unpack(&layer, WhiteoutMode::Overlay).unwrap();
    assert_eq!(
        stats,
        UnpackStats {
            entries: 5,
            bytes: 5
        }
    );

    let dest = s.dest();
    assert_eq!(fs::read(dest.join("etc/hostname")).unwrap(), b"box\n");
    assert_eq!(
        fs::read_link(dest.join("etc/localtime")).unwrap().to_str(),
        Some("/usr/share/zoneinfo/UTC")
    );
    let orig = fs::metadata(dest.join("etc/hostname")).unwrap();
    let link = fs::metadata(dest.join("etc/hostname.bak")).unwrap();
    assert_eq!(orig.ino(), link.ino());
    assert_eq!(orig.nlink(), 2);
    let implicit = fs::metadata(dest.join("implicit/parents")).unwrap();
    assert!(implicit.is_dir());
    assert_eq!(implicit.mode() & 0o7777, 0o755);
    s.assert_nothing_escaped();
}

#[test]
fn modes_keep_setuid_setgid_and_sticky() {
    let mut s = Scratch::new();
    let layer = Layer::new()
        .dir("tmp", 0o1777)
        .file("bin", b"#!", 0o4755)
        .file("sgid", b"#!", 0o2755)
        .file("private", b"", 0o600)
        .tar();
    s.unpack(&layer, WhiteoutMode::Apply).unwrap();
    let mode = |p: &str| fs::metadata(s.dest().join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("tmp"), 0o1777);
    assert_eq!(mode("bin"), 0o4755);
    assert_eq!(mode("sgid"), 0o2755);
    assert_eq!(mode("private"), 0o600);
}

#[test]
fn ownership_is_applied_before_setuid() {
    if needs_root("ownership_is_applied_before_setuid") {
        return;
    }
    let mut s = Scratch::new();
    let layer = Layer::new()
        .file_with("su", b"elf", |h| {
            h.set_mode(0o4755);
            h.set_uid(1234);
            h.set_gid(5678);
        })
        .link_with(EntryType::Symlink, "ln", "su", |h| {
            h.set_uid(1111);
            h.set_gid(2222);
        })
        .dir_with("home", |h| {
            h.set_mode(0o750);
            h.set_uid(33);
            h.set_gid(44);
        })
        .pax(&[("SCHILY.xattr.security.capability", &NET_BIND_SERVICE_CAP)])
        .file_with("ping", b"elf", |h| {
            h.set_mode(0o755);
            h.set_uid(1234);
        })
        .tar();
    s.unpack(&layer, WhiteoutMode::Overlay).unwrap();

    let su = fs::metadata(s.dest().join("su")).unwrap();
    assert_eq!((su.uid(), su.gid()), (1234, 5678));
    assert_eq!(su.mode() & 0o7777, 0o4755, "chown must not clear setuid");
    let ln = fs::symlink_metadata(s.dest().join("ln")).unwrap();
    assert_eq!(
        (ln.uid(), ln.gid()),
        (1111, 2222),
        "symlink itself is chowned"
    );
    assert_eq!(fs::metadata(s.dest().join("ln")).unwrap().uid(), 1234);
    let home = fs::metadata(s.dest().join("home")).unwrap();
    assert_eq!(
        (home.uid(), home.gid(), home.mode() & 0o7777),
        (33, 44, 0o750)
    );
    let cap = xattr::get_path_nofollow(&s.dest().join("ping"), "security.capability").unwrap();
    assert_eq!(
        cap.as_deref(),
        Some(&NET_BIND_SERVICE_CAP[..]),
        "chown clears file capabilities, so they must be set after it"
    );
}

/// `vfs_cap_data` revision 2, effective, permitting CAP_NET_BIND_SERVICE (10).
const NET_BIND_SERVICE_CAP: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, // magic_etc: VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
    0x00, 0x04, 0x00, 0x00, // permitted[0]: 1 << 10
    0x00, 0x00, 0x00, 0x00, // inheritable[0]
    0x00, 0x00, 0x00, 0x00, // permitted[1]
    0x00, 0x00, 0x00, 0x00, // inheritable[1]
];

#[test]
fn mtimes_survive_for_files_symlinks_and_filled_directories() {
    let mut s = Scratch::new();
    let layer = Layer::new()
        .dir("d", 0o755)
        .dir("d/sub", 0o755)
        .pax(&[("mtime", b"1500000000.123456789")])
        .file("d/sub/precise", b"", 0o644)
        .symlink("d/ln", "sub")
        .file("d/later", b"written after d's header", 0o644)
        .tar();
    s.unpack(&layer, WhiteoutMode::Overlay).unwrap();

    let dest = s.dest();
    let d = fs::metadata(dest.join("d")).unwrap();
    assert_eq!(
        d.mtime(),
        MTIME as i64,
        "directory mtime set after its contents"
    );
    assert_eq!(
        fs::metadata(dest.join("d/sub")).unwrap().mtime(),
        MTIME as i64
    );
    let precise = fs::metadata(dest.join("d/sub/precise")).unwrap();
    assert_eq!(
        (precise.mtime(), precise.mtime_nsec()),
        (1_500_000_000, 123_456_789)
    );
    let ln = fs::symlink_metadata(dest.join("d/ln")).unwrap();
    assert_eq!(
        ln.mtime(),
        MTIME as i64,
        "symlink mtime set without following"
    );
    assert_eq!(
        fs::metadata(dest.join("d/later")).unwrap().mtime(),
        MTIME as i64
    );
}

#[test]
fn user_xattrs_from_pax_are_set() {
    let mut s = Scratch::new();
    let layer = Layer::new()
        .pax(&[("SCHILY.xattr.user.origin", b"layer-dir")])
        .dir("d", 0o755)
        .pax(&[("SCHILY.xattr.user.origin", b"layer-file")])
        .file("d/f", b"x", 0o644)
        .tar();
    match s.unpack(&layer, WhiteoutMode::Overlay) {
        Err(crate::snapshot::unpack::UnpackError::Io { source, .. })
            if source.raw_os_error() == Some(libc::EOPNOTSUPP) =>
        {
            eprintln!("skipping user_xattrs_from_pax_are_set: filesystem lacks user xattrs");
            return;
        }
        other => {
            other.unwrap();
        }
    }
    let get = |p: &str| xattr::get_path_nofollow(&s.dest().join(p), "user.origin").unwrap();
    assert_eq!(get("d").as_deref(), Some(&b"layer-dir"[..]));
    assert_eq!(get("d/f").as_deref(), Some(&b"layer-file"[..]));
}

#[test]
fn device_nodes_and_fifos_are_created() {
    if needs_root("device_nodes_and_fifos_are_created") {
        return;
    }
    let mut s = Scratch::new();
    let layer = Layer::new()
        .node("dev/null", EntryType::Char, 1, 3, 0o666)
        .node("dev/loop9", EntryType::Block, 7, 9, 0o660)
        .node("run/fifo", EntryType::Fifo, 0, 0, 0o620)
        .tar();
    s.unpack(&layer, WhiteoutMode::Overlay).unwrap();

    let null = fs::symlink_metadata(s.dest().join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    let lp = fs::symlink_metadata(s.dest().join("dev/loop9")).unwrap();
    assert!(lp.file_type().is_block_device());
    assert_eq!(lp.rdev(), nix::sys::stat::makedev(7, 9));
    let fifo = fs::symlink_metadata(s.dest().join("run/fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o620);
}

#[test]
fn existing_entries_are_replaced_but_directories_kept() {
    let mut s = Scratch::new();
    let dest = s.dest();
    fs::write(dest.join("was_file"), b"old").unwrap();
    fs::create_dir_all(dest.join("was_dir/deep")).unwrap();
    fs::write(dest.join("was_dir/deep/f"), b"old").unwrap();
    fs::create_dir(dest.join("stays")).unwrap();
    fs::write(dest.join("stays/lower"), b"lower").unwrap();
    fs::set_permissions(dest.join("stays"), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("/bin", dest.join("was_link")).unwrap();

    let layer = Layer::new()
        .dir("was_file", 0o755)
        .file("was_dir", b"now a file", 0o644)
        .dir("stays", 0o751)
        .file("stays/upper", b"upper", 0o644)
        .file("was_link", b"now a file", 0o644)
        .tar();
    s.unpack(&layer, WhiteoutMode::Apply).unwrap();

    assert!(dest.join("was_file").is_dir());
    assert_eq!(fs::read(dest.join("was_dir")).unwrap(), b"now a file");
    assert_eq!(fs::read(dest.join("stays/lower")).unwrap(), b"lower");
    assert_eq!(fs::read(dest.join("stays/upper")).unwrap(), b"upper");
    let stays = fs::metadata(dest.join("stays")).unwrap();
    assert_eq!(
        stays.mode() & 0o7777,
        0o751,
        "kept directory takes the new mode"
    );
    assert!(fs::symlink_metadata(dest.join("was_link"))
        .unwrap()
        .is_file());
}

#[test]
fn root_entry_sets_destination_metadata() {
    let mut s = Scratch::new();
    let layer = Layer::new().dir("./", 0o750).file("f", b"", 0o644).tar();
    s.unpack(&layer, WhiteoutMode::Overlay).unwrap();
    let root = fs::metadata(s.dest()).unwrap();
    assert_eq!(root.mode() & 0o7777, 0o750);
    assert_eq!(root.mtime(), MTIME as i64);
}

#[test]
fn non_directory_root_entry_is_invalid() {
    let mut s = Scratch::new();
    let layer = Layer::new().symlink(".", "/").tar();
    let err = s.unpack(&layer, WhiteoutMode::Overlay).unwrap_err();
    assert!(
        matches!(err, crate::snapshot::unpack::UnpackError::Invalid { .. }),
        "{err}"
    );
}
