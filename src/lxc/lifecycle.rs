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
use std::path::Path;

use super::{check, Container, LxcError};

impl Container {
    /// Loads a config file into this handle, or reloads the container's own
    /// `<lxcpath>/<name>/config` when `path` is `None`.
    ///
    /// Rarely needed: `lxc_container_new` (that is, [`Container::open`])
    /// already loads `<lxcpath>/<name>/config` when the file exists.
    pub(crate) fn load_config(&self, path: Option<&Path>) -> Result<(), LxcError> {
        let c_path = match path {
            Some(p) => Some(cstring("config path", &p.to_string_lossy())?),
            None => None,
        };
        let alt = c_path.as_ref().map_or(std::ptr::null(), |p| p.as_ptr());
        let c = self.raw();
        // SAFETY: `c` is a live container (we hold a reference); `alt` is
        // NULL or a valid C string that outlives the call and is only read.
        let ok = unsafe { (*c).load_config.map(|f| f(c, alt)).unwrap_or(false) };
        check(ok, self.name(), "load_config")
    }

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
    /// checking which ones a config file really set.
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

    /// Waits up to `timeout_secs` (-1: forever, 0: just check) for liblxc
    /// state `state` (`RUNNING`, `STOPPED`, ...). True when it was reached.
    pub(crate) fn wait_state(&self, state: &str, timeout_secs: i32) -> bool {
        let Ok(s) = cstring("state", state) else {
            return false;
        };
        let c = self.raw();
        // SAFETY: live container; `s` is a valid C string for the call.
        unsafe {
            (*c).wait
                .map(|f| f(c, s.as_ptr(), timeout_secs))
                .unwrap_or(false)
        }
    }

    /// Kills the container: liblxc sends SIGKILL to its init, which takes the
    /// whole PID namespace down with it. Succeeds when it is not running.
    pub(crate) fn stop(&self) -> Result<(), LxcError> {
        let c = self.raw();
        // SAFETY: live container; the call only talks to the command socket.
        let ok = unsafe { (*c).stop.map(|f| f(c)).unwrap_or(false) };
        check(ok, self.name(), "stop")
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
    fn config_is_loaded_on_open_and_reloadable() {
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

        let alt = dir.path().join("alt.conf");
        std::fs::write(&alt, "lxc.uts.name = two\n").unwrap();
        c.load_config(Some(&alt)).unwrap();
        assert_eq!(c.config_item("lxc.uts.name").as_deref(), Some("two"));
    }

    #[test]
    fn stopped_container_has_no_init_pid() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("c2")).unwrap();
        std::fs::write(dir.path().join("c2/config"), "lxc.uts.name = two\n").unwrap();
        let c = Container::open("c2", dir.path().to_str().unwrap()).unwrap();
        assert_eq!(c.init_pid(), None);
        assert!(c.wait_state("STOPPED", 0));
        assert!(!c.wait_state("RUNNING", 0));
        c.want_daemonize(false).unwrap();
        c.stop().expect("stopping a stopped container is a no-op");
        // liblxc has no config to work with for an undefined container.
        let absent = Container::open("absent", dir.path().to_str().unwrap()).unwrap();
        assert!(absent.want_daemonize(false).is_err());
    }
}
