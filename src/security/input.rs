//! The one rule for strings that cross from a CRI request into an LXC
//! config line, a file path, a command line or a log line: no control
//! characters. A newline would start a second config line (liblxc runs
//! `lxc.hook.*` commands as root on the host), a NUL cuts a C string short,
//! and an escape sequence or carriage return forges a log line.
//!
//! The gRPC layer (`cri/convert.rs`) applies these checks where a request
//! enters; the writers (`container/lxc_config.rs`) check again.

/// Why a string from a request was refused. The text names the value, so
/// callers prefix only the request field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InputError {
    #[error("{value:?} contains the control character {ch:?} at byte {at}")]
    ControlCharacter { value: String, ch: char, at: usize },
    #[error("{0:?} contains a NUL byte")]
    Nul(String),
    #[error("an environment variable needs a name")]
    EmptyEnvName,
    #[error("{0:?} contains '='")]
    EnvNameWithEquals(String),
    #[error("{0:?} contains white space")]
    WhiteSpace(String),
    #[error("{0:?} contains \"..\"")]
    DotDot(String),
    #[error("{0:?} has a \".\", \"..\" or \"cgroup.*\" component")]
    CgroupComponent(String),
    #[error("{0:?} is not an absolute path")]
    NotAbsolute(String),
    #[error("{0:?} contains a \"..\" component")]
    DotDotComponent(String),
    #[error("a mount cannot replace the container's root")]
    RootMount,
    #[error("{0:?} is under /proc or /sys, which only privileged containers may mount over")]
    KernelInterface(String),
    #[error("{0:?} is not under /dev")]
    NotUnderDev(String),
    #[error("{0:?} is not a subset of \"rwm\"")]
    DevicePermissions(String),
}

/// Refuses control characters: C0 (below 0x20, tab and newline
/// included), DEL and C1 (U+0080 to U+009F).
pub(crate) fn check_text(value: &str) -> Result<(), InputError> {
    match value.char_indices().find(|(_, c)| c.is_control()) {
        None => Ok(()),
        Some((at, ch)) => Err(InputError::ControlCharacter {
            value: value.to_owned(),
            ch,
            at,
        }),
    }
}

/// [`check_text`] for each string of a list.
pub(crate) fn check_all<'a>(
    values: impl IntoIterator<Item = &'a String>,
) -> Result<(), InputError> {
    values.into_iter().try_for_each(|v| check_text(v))
}

/// A string that becomes a C string (an argument or environment entry):
/// anything but NUL, since multi-line scripts and values are legitimate.
pub(crate) fn check_no_nul(value: &str) -> Result<(), InputError> {
    if value.contains('\0') {
        Err(InputError::Nul(value.to_owned()))
    } else {
        Ok(())
    }
}

/// An environment variable name: not empty, no `=`, no NUL, no control
/// characters (names with `-` or `.` are allowed, as Kubernetes allows
/// them).
pub(crate) fn check_env_name(name: &str) -> Result<(), InputError> {
    if name.is_empty() {
        return Err(InputError::EmptyEnvName);
    }
    if name.contains('=') {
        return Err(InputError::EnvNameWithEquals(name.to_owned()));
    }
    check_text(name)
}

/// A cgroup relative path from the kubelet (`cgroup_parent`): text
/// without `.` or `..` components, so it cannot leave the hierarchy.
/// liblxc refuses `..` anywhere in `lxc.cgroup.dir.*`, so such a name is
/// refused here with a clear message instead of a failed config load.
pub(crate) fn check_cgroup_path(path: &str) -> Result<(), InputError> {
    check_text(path)?;
    if path.contains(char::is_whitespace) {
        return Err(InputError::WhiteSpace(path.to_owned()));
    }
    if path.contains("..") {
        return Err(InputError::DotDot(path.to_owned()));
    }
    if path
        .split('/')
        .any(|c| c == "." || c == ".." || c.starts_with("cgroup."))
    {
        return Err(InputError::CgroupComponent(path.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_wherever_they_are() {
        for bad in [
            "/x\nlxc.hook.pre-start=/usr/bin/touch",
            "a\rb",
            "tab\there",
            "nul\0",
            "\u{1b}[31mred",
            "del\u{7f}",
            "c1\u{85}next-line",
        ] {
            let err = check_text(bad).unwrap_err();
            assert!(matches!(err, InputError::ControlCharacter { .. }), "{err}");
            assert!(err.to_string().contains("control character"), "{err}");
        }
        for good in ["", "/data dir/x", "s0:c1,c2", "ünïcödé", "a=b#c"] {
            check_text(good).unwrap();
        }
    }

    #[test]
    fn environment_names() {
        check_env_name("MY-VAR.x").unwrap();
        assert!(check_env_name("").is_err());
        assert!(check_env_name("A=B").is_err());
        assert!(check_env_name("A\nB").is_err());
    }

    #[test]
    fn arguments_may_span_lines_but_not_hold_nul() {
        check_no_nul("echo a\necho b").unwrap();
        assert!(check_no_nul("a\0b").is_err());
    }

    #[test]
    fn cgroup_paths_stay_in_the_hierarchy() {
        check_cgroup_path("kubepods/burstable/pod1").unwrap();
        check_cgroup_path("/kubepods.slice/kubepods-pod1.slice").unwrap();
        check_cgroup_path("").unwrap();
        for bad in [
            "../../x",
            "a/./b",
            "a\nb",
            "kubepods/cgroup.procs",
            "..a/b",
            "a/b..c",
        ] {
            assert!(check_cgroup_path(bad).is_err(), "{bad}");
        }
    }
}
