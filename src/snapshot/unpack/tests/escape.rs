//! Hostile layers must not write, link or delete outside the destination.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use tar::EntryType;

use super::{Layer, Scratch};
use crate::snapshot::unpack::{UnpackError, WhiteoutMode};

/// Unpacks `layer` in both modes and asserts it is refused as an escape
/// naming `entry`, with nothing changed outside `dest`.
fn assert_escape(layer: impl Fn(&Scratch) -> Vec<u8>, entry: &str) {
    for mode in [WhiteoutMode::Overlay, WhiteoutMode::Apply] {
        let mut s = Scratch::new();
        let tar = layer(&s);
        match s.unpack(&tar, mode) {
            Err(UnpackError::Escape { entry: got, layer }) => {
                assert_eq!(got, Path::new(entry), "{mode:?}");
                assert!(layer.starts_with(s.tmp.path()), "{mode:?}: {layer:?}");
            }
            other => panic!("{mode:?}: {entry}: expected escape, got {other:?}"),
        }
        s.assert_nothing_escaped();
    }
}

#[test]
fn dotdot_entry_is_refused() {
    assert_escape(
        |_| {
            Layer::new()
                .raw(EntryType::Regular, b"../evil", b"", b"pwned")
                .tar()
        },
        "../evil",
    );
}

#[test]
fn dotdot_after_a_directory_is_refused() {
    assert_escape(
        |_| {
            Layer::new()
                .dir("a", 0o755)
                .raw(EntryType::Regular, b"a/../../evil", b"", b"pwned")
                .tar()
        },
        "a/../../evil",
    );
}

#[test]
fn deep_dotdot_directory_is_refused() {
    assert_escape(
        |_| {
            Layer::new()
                .raw(EntryType::Directory, b"x/../../../evil/", b"", b"")
                .tar()
        },
        "x/../../../evil/",
    );
}

#[test]
fn writing_through_absolute_symlink_is_refused() {
    assert_escape(
        |s| {
            Layer::new()
                .symlink("link", s.outside().to_str().unwrap())
                .file("link/file", b"pwned", 0o644)
                .tar()
        },
        "link/file",
    );
}

#[test]
fn writing_through_relative_symlink_is_refused() {
    assert_escape(
        |_| {
            Layer::new()
                .symlink("link", "../..")
                .file("link/x", b"pwned", 0o644)
                .tar()
        },
        "link/x",
    );
}

#[test]
fn directory_through_symlink_is_refused() {
    assert_escape(
        |s| {
            Layer::new()
                .symlink("link", s.outside().to_str().unwrap())
                .dir("link/sub", 0o777)
                .tar()
        },
        "link/sub",
    );
}

#[test]
fn symlink_nested_under_symlink_is_refused() {
    assert_escape(
        |s| {
            Layer::new()
                .dir("d", 0o755)
                .symlink("d/up", s.outside().to_str().unwrap())
                .symlink("d/up/sentinel", "/etc/shadow")
                .tar()
        },
        "d/up/sentinel",
    );
}

#[test]
fn hardlink_climbing_out_is_refused() {
    assert_escape(
        |_| Layer::new().hardlink("passwd", "../../etc/passwd").tar(),
        "passwd",
    );
}

#[test]
fn hardlink_through_symlink_is_refused() {
    assert_escape(
        |s| {
            Layer::new()
                .symlink("link", s.outside().to_str().unwrap())
                .hardlink("stolen", "link/sentinel")
                .tar()
        },
        "stolen",
    );
}

#[test]
fn escape_into_existing_lower_symlink_is_refused() {
    let mut s = Scratch::new();
    symlink(s.outside(), s.dest().join("etc")).unwrap();
    let layer = Layer::new().file("etc/sentinel", b"pwned", 0o644).tar();
    let err = s.unpack(&layer, WhiteoutMode::Apply).unwrap_err();
    assert!(matches!(err, UnpackError::Escape { .. }), "{err:?}");
    assert!(err.to_string().contains("etc/sentinel"), "{err}");
    s.assert_nothing_escaped();
}

#[test]
fn replacing_a_symlink_never_writes_through_it() {
    let mut s = Scratch::new();
    let sentinel = s.outside().join("sentinel");
    let layer = Layer::new()
        .symlink("f", sentinel.to_str().unwrap())
        .file("f", b"replaced", 0o644)
        .symlink("dev", sentinel.to_str().unwrap())
        .node("dev", EntryType::Fifo, 0, 0, 0o600)
        .tar();
    s.unpack(&layer, WhiteoutMode::Apply).unwrap();
    assert!(fs::symlink_metadata(s.dest().join("f")).unwrap().is_file());
    assert_eq!(fs::read(s.dest().join("f")).unwrap(), b"replaced");
    s.assert_nothing_escaped();
}

#[test]
fn absolute_paths_are_rooted_at_dest() {
    let mut s = Scratch::new();
    let layer = Layer::new()
        .raw(EntryType::Regular, b"/abs/file", b"", b"inside")
        .hardlink("hl", "/abs/file")
        .tar();
    s.unpack(&layer, WhiteoutMode::Overlay).unwrap();
    assert_eq!(fs::read(s.dest().join("abs/file")).unwrap(), b"inside");
    assert_eq!(fs::read(s.dest().join("hl")).unwrap(), b"inside");
    s.assert_nothing_escaped();
}

#[test]
fn inner_dotdot_never_visits_the_symlink() {
    let mut s = Scratch::new();
    let layer = Layer::new()
        .symlink("a", s.outside().to_str().unwrap())
        .raw(EntryType::Regular, b"a/../b", b"", b"inside")
        .tar();
    s.unpack(&layer, WhiteoutMode::Overlay).unwrap();
    assert_eq!(fs::read(s.dest().join("b")).unwrap(), b"inside");
    s.assert_nothing_escaped();
}
