//! `pvecri doctor`: one line per node check, with the fix whenever a line
//! is not ok. Exits 1 when any check fails; a warning is something pvecri
//! can do without, at a cost the line names.
//!
//! Each module covers one part of the node and exposes `checks(config)`,
//! which reads what it needs and hands the contents to pure functions that
//! decide the level, so that the decisions are tested on fixtures. A
//! warning or a failure cannot be built without its fix ([`Check::warn`],
//! [`Check::fail`]).

mod bandwidth;
mod checkpoint;
mod daemon;
mod devices;
mod host;
mod kubelet;
mod network;
mod proxmox;
mod storage;

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use super::view::{print_json, Output};
use crate::config::Config;

#[derive(clap::Args)]
pub(super) struct DoctorArgs {
    #[arg(short, long, value_enum, default_value = "table")]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
enum Level {
    Ok,
    Warn,
    Fail,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that the report's `{:<4}` aligns the column.
        f.pad(match self {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        })
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Check {
    name: &'static str,
    level: Level,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            level: Level::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::bad(name, Level::Warn, detail, fix)
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self::bad(name, Level::Fail, detail, fix)
    }

    fn bad(
        name: &'static str,
        level: Level,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            name,
            level,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

pub(super) fn run(config: &Config, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let checks = checks(config);
    match args.output {
        Output::Json => print_json(&checks)?,
        Output::Table => print!("{}", table(&checks)),
    }
    Ok(if failed(&checks) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn checks(config: &Config) -> Vec<Check> {
    let daemon = daemon::checks(config);
    let mut all = host::checks(config, daemon.running);
    all.extend(devices::checks());
    all.extend(storage::checks(config));
    all.extend(network::checks(config, daemon.running));
    all.extend(bandwidth::checks(config));
    all.extend(daemon.checks);
    all.extend(kubelet::checks(config));
    all.extend(proxmox::checks(config));
    all.extend(checkpoint::checks(config));
    all
}

/// The report: level, name and detail, and an indented `fix:` line under
/// every line that is not ok; a count of each level at the end.
fn table(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!(
            "{:<4}  {:<width$}  {}\n",
            c.level, c.name, c.detail
        ));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("{:<4}  {:<width$}  fix: {fix}\n", "", ""));
        }
    }
    let count = |l: Level| checks.iter().filter(|c| c.level == l).count();
    out.push_str(&format!(
        "{} ok, {} warn, {} fail\n",
        count(Level::Ok),
        count(Level::Warn),
        count(Level::Fail)
    ));
    out
}

/// Whether the exit code says failure.
fn failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.level == Level::Fail)
}

/// Where a program is found as the daemon would find it: `PATH`, then the
/// sbin directories, which a root shell and systemd have even when the
/// caller's `PATH` lacks them.
fn which(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_gives_every_bad_line_its_fix_and_counts_levels() {
        let checks = [
            Check::ok("liblxc", "version 6.0.0"),
            Check::warn("apparmor", "not enabled", "boot with apparmor=1"),
            Check::fail("devices", "/dev/null is a regular file", "mknod"),
        ];
        let text = table(&checks);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ok    liblxc    version 6.0.0");
        assert_eq!(lines[1], "warn  apparmor  not enabled");
        assert_eq!(lines[2], "                fix: boot with apparmor=1");
        assert!(lines[3].starts_with("FAIL  devices"), "{}", lines[3]);
        assert_eq!(lines.last(), Some(&"1 ok, 1 warn, 1 fail"));
        assert!(failed(&checks));
        assert!(!failed(&checks[..2]), "warnings alone pass");

        let json: serde_json::Value =
            serde_json::from_str(&serde_json::to_string(&checks).unwrap()).unwrap();
        assert_eq!(json[0]["level"], "ok");
        assert!(json[0].get("fix").is_none());
        assert_eq!(json[1]["level"], "warn");
        assert_eq!(json[2]["level"], "fail");
        assert_eq!(json[2]["fix"], "mknod");
    }
}
