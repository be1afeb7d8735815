//! Whiteouts in both modes.

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt};
use std::path::Path;

use super::{names, needs_root, Layer, Scratch};
use crate::snapshot::unpack::{xattr, UnpackError, WhiteoutMode};

fn write(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

#[test]
fn overlay_whiteouts_become_char_devices_and_opaque_xattrs() {
    if needs_root("overlay_whiteouts_become_char_devices_and_opaque_xattrs") {
        return;
    }
    let mut s = Scratch::new();
    let layer = Layer::new()
        .dir("etc", 0o755)
        .file("etc/.wh.passwd", b"", 0o644)
        .dir("var/lib", 0o755)
        .file("var/lib/.wh..wh..opq", b"", 0o644)
        // Opaque marker for a directory the layer never lists.
        .file("implicit/.wh..wh..opq", b"", 0o644)
        // A same-layer entry shadows a whiteout of the same name.
        .file("etc/kept", b"mine", 0o644)
        .file("etc/.wh.kept", b"", 0o644)
        .file(".wh..wh.plnk", b"", 0o644)
        .tar();
    s.unpack(&layer, WhiteoutMode::Overlay).unwrap();

    let dest = s.dest();
    let wh = fs::symlink_metadata(dest.join("etc/passwd")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert_eq!((wh.uid(), wh.gid()), (0, 0));
    assert_eq!(fs::read(dest.join("etc/kept")).unwrap(), b"mine");
    assert_eq!(
        names(&dest.join("etc")),
        ["kept", "passwd"],
        "no .wh. files written"
    );
    for dir in ["var/lib", "implicit"] {
        let opaque = xattr::get_path_nofollow(&dest.join(dir), "trusted.overlay.opaque").unwrap();
        assert_eq!(opaque.as_deref(), Some(&b"y"[..]), "{dir}");
        assert!(names(&dest.join(dir)).is_empty(), "{dir}");
    }
    assert!(!dest.join(".wh..wh.plnk").exists());
}

#[test]
fn apply_whiteouts_delete_lower_files_and_trees() {
    let mut s = Scratch::new();
    let dest = s.dest();
    write(&dest.join("etc/passwd"), b"lower");
    write(&dest.join("etc/group"), b"lower");
    write(&dest.join("var/cache/apt/deep/f"), b"lower");
    symlink(s.outside(), dest.join("etc/link-out")).unwrap();

    let layer = Layer::new()
        .file("etc/.wh.passwd", b"", 0o644)
        .file("var/.wh.cache", b"", 0o644)
        .file("etc/.wh.link-out", b"", 0o644)
        .file("missing/dir/.wh.x", b"", 0o644)
        .file("etc/.wh.group", b"", 0o644)
        .file("etc/group", b"upper", 0o644)
        .tar();
    s.unpack(&layer, WhiteoutMode::Apply).unwrap();

    assert_eq!(names(&dest.join("etc")), ["group"]);
    assert_eq!(fs::read(dest.join("etc/group")).unwrap(), b"upper");
    assert!(names(&dest.join("var")).is_empty());
    assert!(!dest.join("missing").exists(), "whiteouts create nothing");
    s.assert_nothing_escaped();
}

#[test]
fn apply_whiteout_spares_same_layer_entry_written_before_it() {
    let mut s = Scratch::new();
    write(&s.dest().join("etc/motd"), b"lower");
    let layer = Layer::new()
        .file("etc/motd", b"upper", 0o644)
        .file("etc/.wh.motd", b"", 0o644)
        .tar();
    s.unpack(&layer, WhiteoutMode::Apply).unwrap();
    assert_eq!(fs::read(s.dest().join("etc/motd")).unwrap(), b"upper");
}

fn opaque_layer(marker_first: bool) -> Vec<u8> {
    let marker = |l: Layer| l.file("d/.wh..wh..opq", b"", 0o644);
    let mut layer = Layer::new().dir("d", 0o755);
    if marker_first {
        layer = marker(layer);
    }
    layer = layer
        .file("d/new", b"upper", 0o644)
        .dir("d/keepdir", 0o755)
        .file("d/keepdir/new2", b"upper", 0o644);
    if !marker_first {
        layer = marker(layer);
    }
    layer.tar()
}

#[test]
fn apply_opaque_clears_lower_content_in_either_tar_order() {
    for marker_first in [true, false] {
        let mut s = Scratch::new();
        let dest = s.dest();
        write(&dest.join("d/lower1"), b"lower");
        write(&dest.join("d/sub/lower2"), b"lower");
        write(&dest.join("d/keepdir/lower3"), b"lower");
        write(&dest.join("d/new"), b"lower");
        write(&dest.join("other/untouched"), b"lower");
        s.unpack(&opaque_layer(marker_first), WhiteoutMode::Apply)
            .unwrap();

        let order = if marker_first {
            "marker first"
        } else {
            "marker last"
        };
        assert_eq!(names(&dest.join("d")), ["keepdir", "new"], "{order}");
        assert_eq!(names(&dest.join("d/keepdir")), ["new2"], "{order}");
        assert_eq!(fs::read(dest.join("d/new")).unwrap(), b"upper", "{order}");
        assert!(dest.join("other/untouched").exists(), "{order}");
        assert!(!dest.join("d/.wh..wh..opq").exists(), "{order}");
    }
}

#[test]
fn apply_whiteout_through_lower_symlink_is_refused() {
    let mut s = Scratch::new();
    symlink(s.outside(), s.dest().join("etc")).unwrap();
    let layer = Layer::new().file("etc/.wh.sentinel", b"", 0o644).tar();
    let err = s.unpack(&layer, WhiteoutMode::Apply).unwrap_err();
    match &err {
        UnpackError::Escape { entry, .. } => assert_eq!(entry, Path::new("etc/.wh.sentinel")),
        other => panic!("expected escape, got {other:?}"),
    }
    s.assert_nothing_escaped();

    let layer = Layer::new().file("etc/.wh..wh..opq", b"", 0o644).tar();
    let err = s.unpack(&layer, WhiteoutMode::Apply).unwrap_err();
    assert!(matches!(err, UnpackError::Escape { .. }), "{err:?}");
    s.assert_nothing_escaped();
}
