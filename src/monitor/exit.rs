//! The exit record: how a container ended, written once by its monitor to
//! `<run-dir>/exit.json` and read by the daemon (also after a restart).
//!
//! liblxc reports init's end in `c->error_num` in its own encoding:
//! `code << 8` for an exit and `sig << 8 | 0x7f` for a death by signal —
//! which `WIFSIGNALED` would misread, so [`decode`] handles it explicitly
//! (and a kernel-style signal status defensively).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::container::run_dir::RunDir;

/// The exit code recorded when liblxc could not start the container at all
/// (containerd reports 128 for a failed start too).
pub(crate) const START_FAILED_CODE: i32 = 128;
/// The exit code recorded when the exit status was lost.
pub(crate) const UNKNOWN_EXIT_CODE: i32 = 255;

/// How init ended, decoded from liblxc's `error_num`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    Exited(i32),
    Signaled(i32),
}

impl Termination {
    /// The shell-style exit code: the code itself, or 128 + signal.
    pub fn exit_code(self) -> i32 {
        match self {
            Termination::Exited(code) => code,
            Termination::Signaled(sig) => 128 + sig,
        }
    }

    pub fn signal(self) -> Option<i32> {
        match self {
            Termination::Exited(_) => None,
            Termination::Signaled(sig) => Some(sig),
        }
    }
}

/// Decodes a raw wait status as liblxc stores it in `error_num`.
pub(crate) fn decode(raw: i32) -> Termination {
    let low = raw & 0x7f;
    let high = (raw >> 8) & 0xff;
    match low {
        0 => Termination::Exited(high),
        // liblxc's encoding of a signal death (the kernel uses 0x7f only for
        // "stopped", which is never a final status).
        0x7f => Termination::Signaled(high),
        // A kernel-format status (signal in the low 7 bits, 0x80 = core).
        sig => Termination::Signaled(sig),
    }
}

/// Why the container ended, as the CRI `ContainerStatus.reason` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitReason {
    Completed,
    Error,
    #[serde(rename = "OOMKilled")]
    OomKilled,
    StartError,
}

/// The contents of `exit.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub finished_at_ns: i64,
    pub reason: ExitReason,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ExitRecordError {
    #[error("cannot write exit record {path:?}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read exit record {path:?}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("exit record {path:?} is not valid")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl ExitRecord {
    /// The record for a container whose init ended as `how`. `start_error`
    /// is the text of the run dir's `start-error` file, if there is one.
    pub fn new(
        how: Termination,
        oom_killed: bool,
        start_error: Option<String>,
        finished_at_ns: i64,
    ) -> Self {
        let exit_code = how.exit_code();
        let (reason, message) = match (oom_killed, start_error) {
            (true, _) => (ExitReason::OomKilled, String::new()),
            (false, Some(text)) => (ExitReason::StartError, text),
            (false, None) if exit_code == 0 => (ExitReason::Completed, String::new()),
            (false, None) => (ExitReason::Error, String::new()),
        };
        Self {
            exit_code,
            signal: how.signal(),
            oom_killed,
            finished_at_ns,
            reason,
            message,
        }
    }

    /// The record for a container liblxc could not start.
    pub fn start_failed(message: String, finished_at_ns: i64) -> Self {
        Self {
            exit_code: START_FAILED_CODE,
            signal: None,
            oom_killed: false,
            finished_at_ns,
            reason: ExitReason::StartError,
            message,
        }
    }

    /// The record for a container that ran but whose exit status was lost.
    pub fn unknown(oom_killed: bool, message: String, finished_at_ns: i64) -> Self {
        Self {
            exit_code: UNKNOWN_EXIT_CODE,
            signal: None,
            oom_killed,
            finished_at_ns,
            reason: if oom_killed {
                ExitReason::OomKilled
            } else {
                ExitReason::Error
            },
            message,
        }
    }

    /// Writes `run_dir/exit.json` so a reader sees the old state or the
    /// whole new record: temp file, fsync, rename, fsync of the directory.
    pub fn write_atomic(&self, run_dir: &RunDir) -> Result<(), ExitRecordError> {
        let path = run_dir.exit();
        let tmp = run_dir.exit_tmp();
        let err = |source| ExitRecordError::Write {
            path: path.clone(),
            source,
        };
        let json = serde_json::to_vec(self).map_err(|e| err(io::Error::other(e)))?;
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(err)?;
        file.write_all(&json).map_err(err)?;
        file.sync_all().map_err(err)?;
        drop(file);
        fs::rename(&tmp, &path).map_err(err)?;
        File::open(run_dir.path())
            .and_then(|d| d.sync_all())
            .map_err(err)
    }

    /// Reads `run_dir/exit.json`; `None` while the container has not exited.
    pub fn read(run_dir: &RunDir) -> Result<Option<Self>, ExitRecordError> {
        let path = run_dir.exit();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(ExitRecordError::Read { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ExitRecordError::Parse { path, source })
    }
}

/// The text of `run_dir/start-error`, trimmed, if the file exists and is
/// not empty (pvecri-init creates it before dropping privileges and only
/// writes it when the start fails).
pub(crate) fn read_start_error(run_dir: &RunDir) -> Option<String> {
    let text = fs::read(run_dir.start_error()).ok()?;
    let text = String::from_utf8_lossy(&text).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_liblxc_exit_statuses() {
        assert_eq!(decode(0), Termination::Exited(0));
        assert_eq!(decode(3 << 8), Termination::Exited(3));
        assert_eq!(decode(768), Termination::Exited(3));
        assert_eq!(decode(255 << 8), Termination::Exited(255));
        assert_eq!(decode(9 << 8 | 0x7f), Termination::Signaled(9));
        assert_eq!(decode(15 << 8 | 0x7f), Termination::Signaled(15));
    }

    #[test]
    fn decodes_kernel_style_signal_statuses() {
        assert_eq!(decode(9), Termination::Signaled(9));
        // SIGSEGV with the core-dump bit.
        assert_eq!(decode(11 | 0x80), Termination::Signaled(11));
    }

    #[test]
    fn exit_codes_and_signals() {
        assert_eq!(Termination::Exited(3).exit_code(), 3);
        assert_eq!(Termination::Exited(3).signal(), None);
        assert_eq!(Termination::Signaled(9).exit_code(), 137);
        assert_eq!(Termination::Signaled(9).signal(), Some(9));
    }

    #[test]
    fn reasons() {
        let r = |how, oom, err: Option<&str>| ExitRecord::new(how, oom, err.map(str::to_owned), 1);
        assert_eq!(
            r(Termination::Exited(0), false, None).reason,
            ExitReason::Completed
        );
        assert_eq!(
            r(Termination::Exited(3), false, None).reason,
            ExitReason::Error
        );
        assert_eq!(
            r(Termination::Signaled(9), false, None).reason,
            ExitReason::Error
        );
        let oom = r(Termination::Signaled(9), true, Some("ignored"));
        assert_eq!(
            (oom.reason, oom.exit_code, oom.signal),
            (ExitReason::OomKilled, 137, Some(9))
        );
        let start = r(
            Termination::Exited(127),
            false,
            Some("StartError: no such file"),
        );
        assert_eq!(start.reason, ExitReason::StartError);
        assert_eq!(start.message, "StartError: no such file");
        assert_eq!(start.exit_code, 127);
        let failed = ExitRecord::start_failed("liblxc start failed".into(), 5);
        assert_eq!(
            (failed.reason, failed.exit_code),
            (ExitReason::StartError, 128)
        );
        assert_eq!(ExitRecord::unknown(false, "lost".into(), 5).exit_code, 255);
        assert_eq!(
            ExitRecord::unknown(true, "lost".into(), 5).reason,
            ExitReason::OomKilled
        );
    }

    #[test]
    fn json_has_the_contract_shape() {
        let rec = ExitRecord::new(Termination::Exited(0), false, None, 42);
        let value: serde_json::Value = serde_json::to_value(&rec).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"exit_code": 0, "signal": null, "oom_killed": false,
                "finished_at_ns": 42, "reason": "Completed", "message": ""})
        );
        let oom = ExitRecord::new(Termination::Signaled(9), true, None, 0);
        let text = serde_json::to_string(&oom).unwrap();
        assert!(text.contains(r#""reason":"OOMKilled""#), "{text}");
        assert!(text.contains(r#""signal":9"#), "{text}");
    }

    #[test]
    fn write_then_read_round_trips_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::at(tmp.path());
        assert_eq!(ExitRecord::read(&dir).unwrap(), None);
        let rec = ExitRecord::new(
            Termination::Signaled(15),
            false,
            None,
            1_700_000_000_000_000_000,
        );
        rec.write_atomic(&dir).unwrap();
        assert_eq!(ExitRecord::read(&dir).unwrap(), Some(rec.clone()));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["exit.json".to_owned()]);
        // A second write replaces the record whole.
        let rec2 = ExitRecord::new(Termination::Exited(0), false, None, 7);
        rec2.write_atomic(&dir).unwrap();
        assert_eq!(ExitRecord::read(&dir).unwrap(), Some(rec2));
    }

    #[test]
    fn corrupt_record_is_a_parse_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::at(tmp.path());
        fs::write(dir.exit(), "{\"exit_code\":").unwrap();
        assert!(matches!(
            ExitRecord::read(&dir),
            Err(ExitRecordError::Parse { .. })
        ));
    }

    #[test]
    fn start_error_file_is_read_trimmed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RunDir::at(tmp.path());
        assert_eq!(read_start_error(&dir), None);
        fs::write(dir.start_error(), "StartError: exec: no such file\n").unwrap();
        assert_eq!(
            read_start_error(&dir).as_deref(),
            Some("StartError: exec: no such file")
        );
    }
}
