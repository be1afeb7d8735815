//! Excerpts of liblxc's own log (`lxc.log.file`) for start-failure messages:
//! liblxc prints nothing to stderr when used as a library, so its ERROR
//! lines are the only account of why a start failed.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// How many ERROR lines go into a message at most (the last ones).
const MAX_LINES: usize = 3;
/// How much of the log's new part is read at most (its end).
const MAX_BYTES: u64 = 64 * 1024;

/// The `lxc.log.file` a container config sets, if any (last one wins).
pub(super) fn log_file_of_config(config: &str) -> Option<PathBuf> {
    config
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == "lxc.log.file").then(|| value.trim())
        })
        .next_back()
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Where a container's liblxc log ends now, to read only what follows.
#[derive(Debug, Clone)]
pub(super) struct LogMark {
    pub path: PathBuf,
    offset: u64,
}

impl LogMark {
    /// Marks the end of the log `<lxcpath>/<id>/config` names, if any.
    pub(super) fn take(lxcpath: &str, id: &str) -> Option<Self> {
        let config = std::fs::read_to_string(Path::new(lxcpath).join(id).join("config")).ok()?;
        let path = log_file_of_config(&config)?;
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Some(Self { path, offset })
    }

    /// The container's ERROR messages written since the mark.
    pub(super) fn errors_since(&self, id: &str) -> Vec<String> {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let end = file.metadata().map(|m| m.len()).unwrap_or(0);
        let start = self.offset.max(end.saturating_sub(MAX_BYTES));
        if start >= end || file.seek(SeekFrom::Start(start)).is_err() {
            return Vec::new();
        }
        let mut bytes = Vec::new();
        if file.take(end - start).read_to_end(&mut bytes).is_err() {
            return Vec::new();
        }
        error_messages(&String::from_utf8_lossy(&bytes), id)
    }
}

/// The messages of the last ERROR lines of container `id` in liblxc log
/// text: `lxc <id> <time> ERROR <module> - <file:func:line> - <message>`.
pub(super) fn error_messages(text: &str, id: &str) -> Vec<String> {
    let prefix = format!("lxc {id} ");
    let mut out: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter(|l| l.split_whitespace().nth(3) == Some("ERROR"))
        .filter_map(|l| {
            let parts: Vec<&str> = l.splitn(3, " - ").collect();
            parts.get(2).map(|m| m.trim().to_owned())
        })
        .collect();
    let excess = out.len().saturating_sub(MAX_LINES);
    out.drain(..excess);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
lxc x 20261127083206.428 ERROR    conf - ../src/lxc/conf.c:lxc_rootfs_init:576 - No such file or directory - Failed to open \"/nonexistent\"
lxc other 20261127083206.428 ERROR    conf - ../src/lxc/conf.c:f:1 - not ours
lxc x 20261127083206.428 WARN     conf - ../src/lxc/conf.c:f:2 - just a warning
lxc x 20261127083206.428 ERROR    start - ../src/lxc/start.c:__lxc_start:2079 - Failed to handle rootfs pinning for container \"x\"
";

    #[test]
    fn picks_this_containers_error_messages() {
        assert_eq!(
            error_messages(LOG, "x"),
            vec![
                "No such file or directory - Failed to open \"/nonexistent\"".to_owned(),
                "Failed to handle rootfs pinning for container \"x\"".to_owned(),
            ]
        );
        assert!(error_messages(LOG, "y").is_empty());
    }

    #[test]
    fn keeps_only_the_last_lines() {
        let many: String = (0..10)
            .map(|i| format!("lxc x 1 ERROR m - f:1 - error {i}\n"))
            .collect();
        assert_eq!(
            error_messages(&many, "x"),
            vec!["error 7", "error 8", "error 9"]
        );
    }

    #[test]
    fn finds_the_log_file_in_a_config() {
        let config = "lxc.uts.name = t\nlxc.log.file = /var/log/a.log\nlxc.log.file=/tmp/b.log\n";
        assert_eq!(
            log_file_of_config(config),
            Some(PathBuf::from("/tmp/b.log"))
        );
        assert_eq!(log_file_of_config("lxc.log.level = ERROR\n"), None);
    }

    #[test]
    fn reads_only_what_was_written_after_the_mark() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("x")).unwrap();
        let log = dir.path().join("lxc.log");
        std::fs::write(
            dir.path().join("x/config"),
            format!("lxc.log.file = {}\n", log.display()),
        )
        .unwrap();
        std::fs::write(&log, "lxc x 1 ERROR m - f:1 - old failure\n").unwrap();
        let mark = LogMark::take(dir.path().to_str().unwrap(), "x").unwrap();
        assert!(mark.errors_since("x").is_empty());
        let mut text = std::fs::read_to_string(&log).unwrap();
        text.push_str("lxc x 2 ERROR m - f:1 - new failure\n");
        std::fs::write(&log, text).unwrap();
        assert_eq!(mark.errors_since("x"), vec!["new failure"]);
    }
}
