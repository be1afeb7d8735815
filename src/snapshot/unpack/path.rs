//! Lexical normalisation of archive paths, the first of two escape checks
//! (the second, in `fsat`, refuses symlinks while walking the real tree).
//!
//! Normalising before touching the filesystem means `a/../b` is handled as
//! `b`: the walk never visits `a`, so a symlink there cannot redirect it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Turns raw tar path bytes into a path relative to the unpack root, with no
/// empty, `.` or `..` components. A leading `/` is dropped, as containerd and
/// Docker do: layers are always rooted at the destination. Returns `None` when
/// `..` would climb above the root. The empty path means the root itself.
pub(super) fn normalize(raw: &[u8]) -> Option<PathBuf> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    let mut out = PathBuf::new();
    for part in parts {
        out.push(OsStr::from_bytes(part));
    }
    Some(out)
}

/// The raw archive path as a `PathBuf`, for error messages.
pub(super) fn display_path(raw: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(raw))
}

/// Splits a normalised, non-root path into its parent and final name.
pub(super) fn split(rel: &Path) -> Option<(&Path, &OsStr)> {
    Some((rel.parent()?, rel.file_name()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Option<String> {
        normalize(raw.as_bytes()).map(|p| p.to_str().unwrap().to_owned())
    }

    #[test]
    fn plain_paths_are_kept() {
        assert_eq!(norm("etc/passwd").as_deref(), Some("etc/passwd"));
        assert_eq!(norm("./usr/bin/").as_deref(), Some("usr/bin"));
        assert_eq!(norm("a//b/./c").as_deref(), Some("a/b/c"));
    }

    #[test]
    fn root_forms_become_empty() {
        for raw in ["", ".", "./", "/", "//."] {
            assert_eq!(norm(raw).as_deref(), Some(""), "{raw:?}");
        }
    }

    #[test]
    fn leading_slash_is_dropped() {
        assert_eq!(norm("/etc/shadow").as_deref(), Some("etc/shadow"));
    }

    #[test]
    fn inner_dotdot_resolves_lexically() {
        assert_eq!(norm("a/../b").as_deref(), Some("b"));
        assert_eq!(norm("a/b/../../c").as_deref(), Some("c"));
        assert_eq!(norm("a/..").as_deref(), Some(""));
    }

    #[test]
    fn climbing_above_root_is_refused() {
        for raw in [
            "..",
            "../evil",
            "a/../../evil",
            "/../etc",
            "./../x",
            "a/b/../../../x",
        ] {
            assert_eq!(norm(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn non_utf8_names_survive() {
        let p = normalize(b"dir/\xff\xfe").unwrap();
        assert_eq!(p.as_os_str().as_bytes(), b"dir/\xff\xfe");
    }

    #[test]
    fn split_gives_parent_and_name() {
        let p = PathBuf::from("a/b/c");
        let (parent, name) = split(&p).unwrap();
        assert_eq!(parent, Path::new("a/b"));
        assert_eq!(name, "c");
        let top = PathBuf::from("c");
        assert_eq!(split(&top).unwrap().0, Path::new(""));
        assert!(split(Path::new("")).is_none());
    }
}
