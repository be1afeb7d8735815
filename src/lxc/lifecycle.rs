//! The liblxc calls that run a container: used by the single-threaded
//! `pvecri monitor` process, never by the daemon.
//!
//! liblxc's `start()` with `daemonize=false` runs the container in the
//! calling process: it forks the container init, serves the container's
//! command socket and returns only when init has exited, leaving init's raw
//! wait status in `c->error_num`. It refuses to run from a process with more
//! than one thread ("Cannot start non-daemonized container when threaded").

use std::ffi::{CStr, CString};
use std::os::raw::c_char;

use super::{check, Container, LxcError};

impl Container {
    /// Chooses between a daemonized start (liblxc double-forks and the
    /// caller gets no exit status) and a foreground one.
    pub(crate) fn want_daemonize(&self, daemonize: bool) -> Result<(), LxcError> {
        let c = self.raw();
        // SAFETY: live container; the call only sets a flag on it.
        let ok = unsafe {
            (*c).want_daemonize
                .map(|f| f(c, daemonize))
                .unwrap_or(false)
        };
        check(ok, self.name(), "want_daemonize")
    }

    /// The value of a config item as liblxc holds it in memory, `None` when
    /// liblxc does not know the key. An unset item is usually `Some("")`.
    pub(crate) fn config_item(&self, key: &str) -> Option<String> {
        let k = cstring("config key", key).ok()?;
        let c = self.raw();
        // SAFETY: live container; with a NULL buffer and length 0 liblxc only
        // reports the length the value needs.
        let len = unsafe {
            (*c).get_config_item
                .map(|f| f(c, k.as_ptr(), std::ptr::null_mut(), 0))
                .unwrap_or(-1)
        };
        let len = usize::try_from(len).ok()?;
        let mut buf = vec![0u8; len + 1];
        let inlen = i32::try_from(buf.len()).ok()?;
        // SAFETY: live container; `buf` is writable for `inlen` bytes and
        // liblxc writes at most `inlen` bytes including the NUL.
        let ret = unsafe {
            (*c).get_config_item
                .map(|f| f(c, k.as_ptr(), buf.as_mut_ptr().cast::<c_char>(), inlen))
                .unwrap_or(-1)
        };
        if ret < 0 {
            return None;
        }
        let value = CStr::from_bytes_until_nul(&buf).ok()?;
        Some(value.to_string_lossy().into_owned())
    }

    /// Every config key liblxc knows (`get_keys` without a key), for
    /// checking which ones a config file really set. Only the config
    /// tests ask.
    #[cfg(test)]
    pub(crate) fn known_config_keys(&self) -> Vec<String> {
        let c = self.raw();
        // SAFETY: live container; with a NULL key liblxc lists its config
        // table, and with a NULL buffer and length 0 only reports the length.
        let len = unsafe {
            (*c).get_keys
                .map(|f| f(c, std::ptr::null(), std::ptr::null_mut(), 0))
                .unwrap_or(-1)
        };
        let Ok(len) = usize::try_from(len) else {
            return Vec::new();
        };
        let mut buf = vec![0u8; len + 1];
        let Ok(inlen) = i32::try_from(buf.len()) else {
            return Vec::new();
        };
        // SAFETY: live container; `buf` is writable for `inlen` bytes and
        // liblxc writes at most `inlen` bytes including the NUL.
        let ret = unsafe {
            (*c).get_keys
                .map(|f| {
                    f(
                        c,
                        std::ptr::null(),
                        buf.as_mut_ptr().cast::<c_char>(),
                        inlen,
                    )
                })
                .unwrap_or(-1)
        };
        if ret < 0 {
            return Vec::new();
        }
        CStr::from_bytes_until_nul(&buf)
            .map(|s| {
                s.to_string_lossy()
                    .lines()
                    .map(str::to_owned)
                    .filter(|k| !k.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs the container in this process with its configured
    /// `lxc.init.cmd` (`start(c, 0, NULL)`) and returns when init has exited.
    ///
    /// Returns `c->error_num`, the raw wait status of init as liblxc encodes
    /// it (`code << 8` for an exit, `sig << 8 | 0x7f` for a signal).
    ///
    /// The caller must be single-threaded and must have called
    /// `want_daemonize(false)`: liblxc refuses a foreground start from a
    /// threaded process and fails. When this returns an error,
    /// [`Container::error_num`] is not a wait status (liblxc leaves 1 there
    /// for failures before init ran).
    pub(crate) fn start_foreground(&self) -> Result<i32, LxcError> {
        let c = self.raw();
        // SAFETY: live container; argv NULL means "use lxc.init.cmd". liblxc
        // forks inside this call, which is sound because the documented
        // contract makes the caller single-threaded (liblxc checks it too).
        let ok = unsafe {
            (*c).start
                .map(|f| f(c, 0, std::ptr::null()))
                .unwrap_or(false)
        };
        check(ok, self.name(), "start")?;
        Ok(self.error_num())
    }

    /// liblxc's `error_num` field: after a foreground start, init's raw wait
    /// status.
    pub(crate) fn error_num(&self) -> i32 {
        let c = self.raw();
        // SAFETY: live container; a plain int field read while no other
        // call on this handle runs (`Container` is not `Sync`).
        unsafe { (*c).error_num }
    }

    /// The host pid of the container's init, asked over liblxc's command
    /// socket. `None` while the container is stopped or still being set up
    /// (liblxc answers commands only once it has entered its main loop,
    /// which is after it marked the container RUNNING).
    pub(crate) fn init_pid(&self) -> Option<i32> {
        let c = self.raw();
        // SAFETY: live container; the call only talks to the command socket.
        let pid = unsafe { (*c).init_pid.map(|f| f(c)).unwrap_or(-1) };
        (pid > 0).then_some(pid)
    }
}

fn cstring(what: &'static str, value: &str) -> Result<CString, LxcError> {
    CString::new(value).map_err(|_| LxcError::Nul {
        what,
        value: value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_loaded_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let lxcpath = dir.path().to_str().unwrap();
        std::fs::create_dir(dir.path().join("c1")).unwrap();
        let config = dir.path().join("c1/config");
        std::fs::write(&config, "lxc.uts.name = one\n").unwrap();
        let c = Container::open("c1", lxcpath).unwrap();
        assert!(c.is_defined());
        assert_eq!(c.config_item("lxc.uts.name").as_deref(), Some("one"));
        assert_eq!(c.config_item("lxc.console.path").as_deref(), Some(""));
        assert_eq!(c.config_item("lxc.no.such.key"), None);
    }

    #[test]
    fn stopped_container_has_no_init_pid() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("c2")).unwrap();
        std::fs::write(dir.path().join("c2/config"), "lxc.uts.name = two\n").unwrap();
        let c = Container::open("c2", dir.path().to_str().unwrap()).unwrap();
        assert_eq!(c.init_pid(), None);
        c.want_daemonize(false).unwrap();
        // liblxc has no config to work with for an undefined container.
        let absent = Container::open("absent", dir.path().to_str().unwrap()).unwrap();
        assert!(absent.want_daemonize(false).is_err());
    }
}
