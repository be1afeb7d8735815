//! Resolving `args[0]` the way execvp(3) and runc do, but against the
//! workload's `PATH` from spec.json rather than pvecri-init's own environment.
//!
//! The search runs after the credentials are dropped and the working
//! directory is entered, so "executable" means executable by the workload and
//! relative entries resolve against its cwd.

use std::path::PathBuf;

use crate::sys;

/// The program to execute: `name` itself when it contains a `/`, otherwise
/// the first executable regular file named `name` in `path_var`; `None`
/// when there is none.
pub(crate) fn resolve(name: &str, path_var: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    candidates(name, path_var).find(|candidate| {
        candidate.metadata().is_ok_and(|m| m.is_file()) && sys::is_executable(candidate)
    })
}

/// `dir/name` for each `PATH` entry; an empty entry means the current
/// directory (POSIX).
fn candidates<'a>(name: &'a str, path_var: &'a str) -> impl Iterator<Item = PathBuf> + 'a {
    path_var.split(':').map(move |dir| {
        let dir = if dir.is_empty() { "." } else { dir };
        PathBuf::from(dir).join(name)
    })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::Path;

    use super::*;

    fn file(path: &Path, mode: u32) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, "#!/bin/sh\n").unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn path_of(dirs: &[&Path]) -> String {
        let dirs: Vec<_> = dirs.iter().map(|d| d.to_str().unwrap()).collect();
        dirs.join(":")
    }

    #[test]
    fn skips_directories_and_non_executables() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, plain, exe) = (
            tmp.path().join("a"),
            tmp.path().join("b"),
            tmp.path().join("c"),
        );
        fs::create_dir_all(dir.join("cmd")).unwrap();
        file(&plain.join("cmd"), 0o644);
        file(&exe.join("cmd"), 0o755);
        let missing = tmp.path().join("missing");

        let path = path_of(&[&missing, &dir, &plain, &exe]);
        assert_eq!(resolve("cmd", &path), Some(exe.join("cmd")));
    }

    #[test]
    fn first_match_wins_and_symlinks_are_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let (first, second) = (tmp.path().join("1"), tmp.path().join("2"));
        file(&tmp.path().join("real/tool"), 0o755);
        fs::create_dir_all(&first).unwrap();
        symlink(tmp.path().join("real/tool"), first.join("tool")).unwrap();
        file(&second.join("tool"), 0o755);

        assert_eq!(
            resolve("tool", &path_of(&[&first, &second])),
            Some(first.join("tool"))
        );
    }

    #[test]
    fn not_found() {
        let tmp = tempfile::tempdir().unwrap();
        file(&tmp.path().join("only-data"), 0o600);
        let path = path_of(&[tmp.path()]);
        assert_eq!(resolve("only-data", &path), None);
        assert_eq!(resolve("absent", &path), None);
        assert_eq!(resolve("absent", ""), None);
        // A dangling symlink is not an executable.
        symlink(tmp.path().join("gone"), tmp.path().join("dangling")).unwrap();
        assert_eq!(resolve("dangling", &path), None);
    }

    #[test]
    fn names_with_a_slash_are_not_searched() {
        assert_eq!(
            resolve("/no/such/thing", "/bin"),
            Some("/no/such/thing".into())
        );
        assert_eq!(resolve("./run.sh", "/bin"), Some("./run.sh".into()));
    }

    #[test]
    fn empty_entries_mean_the_current_directory() {
        let got: Vec<_> = candidates("x", ":/bin:").collect();
        assert_eq!(got, [PathBuf::from("./x"), "/bin/x".into(), "./x".into()]);
    }
}
