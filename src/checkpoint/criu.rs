//! Finding CRIU and knowing whether it works on this kernel.
//!
//! The version alone does not say it: Debian 12's CRIU 3.17 cannot even
//! start on kernels >= 6.13 (their split vvar area breaks its vDSO
//! parsing; CRIU 4.1 handles it). So the probe runs `criu check` once per
//! process and keeps the answer, output included, for every later caller.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A CRIU binary that passed `criu check` here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Criu {
    pub path: PathBuf,
    /// `3.17.1` from `criu --version` ("" when it printed none).
    pub version: String,
}

/// Why checkpointing is not available on this node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CriuUnusable {
    #[error("criu is not installed (not found in PATH or the sbin directories)")]
    NotFound,
    #[error("cannot run {path}: {message}")]
    CannotRun { path: PathBuf, message: String },
    #[error("`criu check` fails with criu {version}: {first_error}")]
    CheckFailed {
        version: String,
        /// The first `Error` line of the output (the cause; later lines
        /// are its consequences).
        first_error: String,
        /// Everything `criu check` printed.
        output: String,
    },
}

/// The probe's answer for this process, computed at the first call:
/// `configured` (the config's `criu_path`) or else the one [`find`]
/// finds. Blocks for the duration of `criu check` (a fraction of a second)
/// once; the configuration cannot change while a process runs.
pub(crate) fn probe(configured: Option<&Path>) -> Result<Criu, CriuUnusable> {
    static PROBED: OnceLock<Result<Criu, CriuUnusable>> = OnceLock::new();
    PROBED
        .get_or_init(|| match configured {
            Some(path) if !path.exists() => Err(CriuUnusable::CannotRun {
                path: path.to_owned(),
                message: "criu_path names no file".into(),
            }),
            Some(path) => probe_at(Some(path.to_owned())),
            None => probe_at(find()),
        })
        .clone()
}

/// Where `criu` is: `PATH`, then the sbin directories (criu lives in
/// /usr/sbin, which a daemon's `PATH` may lack).
pub(crate) fn find() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("criu"))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn probe_at(path: Option<PathBuf>) -> Result<Criu, CriuUnusable> {
    let path = path.ok_or(CriuUnusable::NotFound)?;
    let run = |arg: &str| {
        Command::new(&path)
            .arg(arg)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| CriuUnusable::CannotRun {
                path: path.clone(),
                message: e.to_string(),
            })
    };
    let version = parse_version(&String::from_utf8_lossy(&run("--version")?.stdout));
    let check = run("check")?;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    judge(&path, version, check.status.success(), output)
}

/// The verdict on one `criu check` run.
fn judge(
    path: &Path,
    version: String,
    success: bool,
    output: String,
) -> Result<Criu, CriuUnusable> {
    if success {
        return Ok(Criu {
            path: path.to_owned(),
            version,
        });
    }
    let first_error = first_error_line(&output)
        .unwrap_or("exited with an error and no Error line")
        .to_owned();
    Err(CriuUnusable::CheckFailed {
        version,
        first_error,
        output,
    })
}

/// `Version: 3.17.1` -> `3.17.1`.
pub(crate) fn parse_version(out: &str) -> String {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

/// The first line CRIU marked as an error, without its source location
/// (`Error (criu/vdso.c:381): vdso: Unexpected ...` -> `vdso: Unexpected ...`).
pub(crate) fn first_error_line(out: &str) -> Option<&str> {
    out.lines()
        .map(str::trim)
        .find(|l| l.starts_with("Error"))
        .map(|l| match l.split_once("): ") {
            Some((_, rest)) => rest,
            None => l,
        })
}

/// The error lines of a CRIU log, at most `max`, for an error message.
pub(crate) fn error_lines(log: &str, max: usize) -> Vec<String> {
    log.lines()
        .map(str::trim)
        .filter(|l| l.contains("Error (") || l.starts_with("Error"))
        .take(max)
        .map(|l| match l.split_once("Error (") {
            Some((_, rest)) => format!("Error ({rest}"),
            None => l.to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VDSO_FAILURE: &str = "\
Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds
Error (criu/vdso.c:613): vdso: Failed to fill self vdso symtable
Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed when initializing kerndat.
Error (criu/crtools.c:260): Could not initialize kernel features detection.
";

    #[test]
    fn a_failing_check_names_the_version_and_its_first_error() {
        let err = judge(
            Path::new("/usr/sbin/criu"),
            parse_version("Version: 3.17.1\n"),
            false,
            VDSO_FAILURE.into(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`criu check` fails with criu 3.17.1: vdso: Unexpected rt vDSO area bounds"
        );
        let CriuUnusable::CheckFailed { output, .. } = err else {
            panic!("not a check failure")
        };
        assert_eq!(output, VDSO_FAILURE, "the whole output is kept");
    }

    #[test]
    fn a_passing_check_gives_the_binary_and_version() {
        let ok = judge(
            Path::new("/usr/local/sbin/criu"),
            parse_version("Version: 4.2\nGitID: v4.2\n"),
            true,
            "Looks good.\n".into(),
        )
        .unwrap();
        assert_eq!(ok.version, "4.2");
        assert_eq!(ok.path, Path::new("/usr/local/sbin/criu"));
    }

    #[test]
    fn a_failure_without_error_lines_still_says_so() {
        let err = judge(Path::new("/c"), String::new(), false, "Killed\n".into()).unwrap_err();
        assert!(err.to_string().contains("no Error line"), "{err}");
    }

    #[test]
    fn missing_binaries_are_their_own_reason() {
        assert_eq!(probe_at(None), Err(CriuUnusable::NotFound));
        let err = probe_at(Some(PathBuf::from("/nonexistent/criu"))).unwrap_err();
        assert!(matches!(err, CriuUnusable::CannotRun { .. }), "{err:?}");
    }

    #[test]
    fn log_error_lines_are_picked_out() {
        let log = "(00.001) Dumping\n(00.02) Error (criu/files.c:12): Can't lookup mount=24\n(00.03) Unfreezing\n";
        assert_eq!(
            error_lines(log, 5),
            ["Error (criu/files.c:12): Can't lookup mount=24"]
        );
        assert_eq!(first_error_line("Warn x\nError (a.c:1): b\n"), Some("b"));
    }
}
