//! Running a command inside a container with liblxc `attach`. liblxc forks
//! inside these calls, so they are only used from the single-threaded
//! `pvecri exec-helper` process, never from the daemon.

use std::ffi::CString;
use std::os::fd::RawFd;

use super::{Container, LxcError};

/// Who and where the attached command runs, and its stdio.
#[derive(Debug, Clone)]
pub(crate) struct AttachOptions {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub cwd: String,
    /// The whole environment (the caller's is not inherited).
    pub env: Vec<String>,
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
    /// Let liblxc give the attached process the container init's LSM label
    /// at its exec (`LXC_ATTACH_LSM_EXEC`). Off when the process applies
    /// its own label: once under the init's AppArmor profile it may no
    /// longer choose one (the kernel refuses the write to `attr/exec`).
    pub lsm_exec: bool,
}

/// The C strings and arrays an attach call points into; they must outlive it.
struct Prepared {
    args: Vec<CString>,
    arg_ptrs: Vec<*mut libc::c_char>,
    _env: Vec<CString>,
    env_ptrs: Vec<*mut libc::c_char>,
    cwd: CString,
    groups: Vec<libc::gid_t>,
}

impl Prepared {
    fn new(opts: &AttachOptions, argv: &[String]) -> Result<Self, LxcError> {
        let to_c = |what: &'static str, s: &str| {
            CString::new(s).map_err(|_| LxcError::Nul {
                what,
                value: s.to_owned(),
            })
        };
        let args: Vec<CString> = argv
            .iter()
            .map(|a| to_c("argument", a))
            .collect::<Result<_, _>>()?;
        let env: Vec<CString> = opts
            .env
            .iter()
            .map(|e| to_c("environment entry", e))
            .collect::<Result<_, _>>()?;
        let mut arg_ptrs: Vec<*mut libc::c_char> =
            args.iter().map(|a| a.as_ptr() as *mut _).collect();
        arg_ptrs.push(std::ptr::null_mut());
        let mut env_ptrs: Vec<*mut libc::c_char> =
            env.iter().map(|e| e.as_ptr() as *mut _).collect();
        env_ptrs.push(std::ptr::null_mut());
        Ok(Self {
            args,
            arg_ptrs,
            _env: env,
            env_ptrs,
            cwd: to_c("working directory", &opts.cwd)?,
            groups: opts.groups.clone(),
        })
    }

    /// liblxc's options; every pointer in it points into `self`.
    fn options(&mut self, opts: &AttachOptions) -> lxc_sys::lxc_attach_options_t {
        lxc_sys::lxc_attach_options_t {
            // Not LXC_ATTACH_DROP_CAPABILITIES: liblxc would copy the
            // workload's bounding set, leaving pvecri-init's exec mode
            // without the CAP_SETPCAP/CAP_SYS_ADMIN it needs to apply the
            // same confinement (capabilities and seccomp) itself.
            attach_flags: attach_flags(opts.lsm_exec),
            namespaces: -1,
            personality: -1,
            initial_cwd: self.cwd.as_ptr() as *mut _,
            uid: opts.uid,
            gid: opts.gid,
            env_policy: lxc_sys::lxc_attach_env_policy_t_LXC_ATTACH_CLEAR_ENV,
            extra_env_vars: self.env_ptrs.as_mut_ptr(),
            extra_keep_env: std::ptr::null_mut(),
            stdin_fd: opts.stdin,
            stdout_fd: opts.stdout,
            stderr_fd: opts.stderr,
            log_fd: -libc::EBADF,
            lsm_label: std::ptr::null_mut(),
            groups: lxc_sys::lxc_groups_t {
                size: self.groups.len() as _,
                list: self.groups.as_mut_ptr(),
            },
        }
    }

    fn program(&self) -> *mut libc::c_char {
        self.args
            .first()
            .map_or(std::ptr::null_mut(), |a| a.as_ptr() as *mut _)
    }
}

/// The attach flags: liblxc's defaults without dropping capabilities (see
/// `options`), with supplementary groups set, and without the LSM exec
/// label unless asked for.
fn attach_flags(lsm_exec: bool) -> i32 {
    let mut flags = (lxc_sys::LXC_ATTACH_DEFAULT & !lxc_sys::LXC_ATTACH_DROP_CAPABILITIES)
        | lxc_sys::LXC_ATTACH_SETGROUPS;
    if !lsm_exec {
        flags &= !lxc_sys::LXC_ATTACH_LSM_EXEC;
    }
    flags as i32
}

impl Container {
    /// Starts `argv` in all of the container's namespaces and its cgroup
    /// and returns its pid (in this process's PID namespace) without
    /// waiting, so the caller can bound how long it runs.
    pub(crate) fn attach_command(
        &self,
        opts: &AttachOptions,
        argv: &[String],
    ) -> Result<i32, LxcError> {
        let mut prepared = Prepared::new(opts, argv)?;
        let mut o = prepared.options(opts);
        let mut command = lxc_sys::lxc_attach_command_t {
            program: prepared.program(),
            argv: prepared.arg_ptrs.as_mut_ptr(),
        };
        let mut pid: libc::pid_t = -1;
        let c = self.raw();
        // SAFETY: `c` is a live container; `o` and `command` point into
        // `prepared`, which outlives the call; lxc_attach_run_command is
        // liblxc's own exec function for an `lxc_attach_command_t` payload.
        let ret = unsafe {
            (*c).attach
                .map(|f| {
                    f(
                        c,
                        Some(lxc_sys::lxc_attach_run_command),
                        &mut command as *mut _ as *mut libc::c_void,
                        &mut o,
                        &mut pid,
                    )
                })
                .unwrap_or(-1)
        };
        if ret < 0 || pid <= 0 {
            return Err(LxcError::Call {
                name: self.name().to_owned(),
                op: "attach",
            });
        }
        Ok(pid)
    }
}

#[cfg(test)]
mod flag_tests {
    use super::attach_flags;

    #[test]
    fn the_lsm_exec_label_is_the_callers_choice_and_capabilities_stay() {
        let lsm = lxc_sys::LXC_ATTACH_LSM_EXEC as i32;
        let drop_caps = lxc_sys::LXC_ATTACH_DROP_CAPABILITIES as i32;
        let groups = lxc_sys::LXC_ATTACH_SETGROUPS as i32;
        assert_eq!(attach_flags(true) & lsm, lsm);
        assert_eq!(attach_flags(false) & lsm, 0);
        for flags in [attach_flags(true), attach_flags(false)] {
            assert_eq!(flags & drop_caps, 0);
            assert_eq!(flags & groups, groups);
        }
    }
}
