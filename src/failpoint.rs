//! Failure points: named steps inside the daemon's multi-step operations
//! (RunPodSandbox, CreateContainer, StartContainer, StopContainer, the
//! removals, PullImage) where a test makes the step fail, or the daemon
//! die on the spot as `kill -9` would, to prove that a failure or a crash
//! at any step leaves nothing behind once the daemon is back.
//!
//! Always compiled in and inert unless `PVECRI_FAILPOINTS` is set when the
//! daemon starts: `name=error` (fail the step once) or `name=crash`,
//! comma separated. The
//! variable is read once; nobody but root (who starts the daemon) sets it.

use std::collections::HashMap;
use std::sync::OnceLock;

/// The environment variable naming the armed points.
pub(crate) const ENV: &str = "PVECRI_FAILPOINTS";

/// Every point, in the order the operations reach them.
pub const POINTS: &[&str] = &[
    "run_pod.after_namespaces",
    "run_pod.after_network",
    "run_pod.before_record",
    "create.after_rootfs",
    "create.after_monitor",
    "create.before_record",
    "start.before_release",
    "start.before_record",
    "stop.after_signal",
    "remove_container.after_cgroups",
    "remove_container.before_record",
    "remove_pod.after_containers",
    "remove_pod.before_record",
    "pull.after_fetch",
    "pull.before_record",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// The step fails with an error naming the point, the first time it
    /// is reached: a transient failure, which the kubelet's retry gets
    /// past.
    Error,
    /// The daemon SIGKILLs itself: nothing after this runs, no destructor,
    /// no cleanup, exactly as an outside `kill -9`.
    Crash,
}

#[derive(Debug, thiserror::Error)]
#[error("failure point {0} fired")]
pub(crate) struct Fired(pub &'static str);

#[derive(Debug, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("{ENV}: {0:?} is not name=error or name=crash")]
    Syntax(String),
    #[error("{ENV}: no failure point is called {0:?}")]
    Unknown(String),
}

/// Parses the variable's value.
pub(crate) fn parse(spec: &str) -> Result<HashMap<&'static str, Action>, ParseError> {
    let mut out = HashMap::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, action) = item
            .split_once('=')
            .ok_or_else(|| ParseError::Syntax(item.to_owned()))?;
        let action = match action {
            "error" => Action::Error,
            "crash" => Action::Crash,
            _ => return Err(ParseError::Syntax(item.to_owned())),
        };
        let point = POINTS
            .iter()
            .find(|p| **p == name)
            .ok_or_else(|| ParseError::Unknown(name.to_owned()))?;
        out.insert(*point, action);
    }
    Ok(out)
}

static ARMED: OnceLock<HashMap<&'static str, Action>> = OnceLock::new();

/// The `error` points that have fired.
static FIRED: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());

/// Reads `PVECRI_FAILPOINTS`; the daemon calls this at start so that a
/// bad value stops it with a clear message instead of being ignored.
pub(crate) fn init() -> Result<(), ParseError> {
    let armed = match std::env::var(ENV) {
        Ok(spec) => parse(&spec)?,
        Err(_) => HashMap::new(),
    };
    if !armed.is_empty() {
        tracing::warn!(?armed, "failure points armed (testing only)");
    }
    let _ = ARMED.set(armed);
    Ok(())
}

/// Passes point `name`: nothing happens unless it is armed.
pub(crate) fn hit(name: &'static str) -> Result<(), Fired> {
    debug_assert!(POINTS.contains(&name), "unlisted failure point {name}");
    match ARMED.get().and_then(|armed| armed.get(name)) {
        None => Ok(()),
        Some(Action::Error) => {
            let mut fired = FIRED.lock().unwrap_or_else(|e| e.into_inner());
            if fired.contains(&name) {
                return Ok(());
            }
            fired.push(name);
            tracing::warn!(point = name, "failure point: failing the step");
            Err(Fired(name))
        }
        Some(Action::Crash) => {
            tracing::warn!(point = name, "failure point: crashing");
            // SAFETY: kill(2) on our own pid has no memory effects; SIGKILL
            // ends the process before the call returns.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            unreachable!("SIGKILL returned")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_points_and_actions() {
        let armed = parse("create.after_monitor=crash, pull.after_fetch=error,").unwrap();
        assert_eq!(armed["create.after_monitor"], Action::Crash);
        assert_eq!(armed["pull.after_fetch"], Action::Error);
        assert!(parse("").unwrap().is_empty());
        assert!(matches!(
            parse("create.after_monitor"),
            Err(ParseError::Syntax(_))
        ));
        assert!(matches!(parse("x=error"), Err(ParseError::Unknown(_))));
        assert!(matches!(
            parse("create.after_monitor=panic"),
            Err(ParseError::Syntax(_))
        ));
    }

    #[test]
    fn unarmed_points_pass() {
        for p in POINTS {
            assert!(hit(p).is_ok());
        }
    }
}
