//! Running a command inside a container with liblxc `attach_run_wait`.
//! liblxc forks inside this call, so it is only used from the
//! single-threaded `pvecri exec-helper` process, never from the daemon.

use std::ffi::CString;
use std::os::fd::RawFd;

use super::{Container, LxcError};

/// Who and where the attached command runs, and its stdio.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub cwd: String,
    /// The whole environment (the caller's is not inherited).
    pub env: Vec<String>,
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
}

impl Container {
    /// Runs `argv` in all of the container's namespaces and its cgroup and
    /// waits for it. Returns the raw wait status.
    pub fn attach_run_wait(&self, opts: &AttachOptions, argv: &[String]) -> Result<i32, LxcError> {
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
        let cwd = to_c("working directory", &opts.cwd)?;
        let mut arg_ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        arg_ptrs.push(std::ptr::null());
        let mut env_ptrs: Vec<*mut libc::c_char> =
            env.iter().map(|e| e.as_ptr() as *mut _).collect();
        env_ptrs.push(std::ptr::null_mut());
        let mut groups: Vec<libc::gid_t> = opts.groups.clone();

        let mut o = lxc_sys::lxc_attach_options_t {
            attach_flags: (lxc_sys::LXC_ATTACH_DEFAULT | lxc_sys::LXC_ATTACH_SETGROUPS) as i32,
            namespaces: -1,
            personality: -1,
            initial_cwd: cwd.as_ptr() as *mut _,
            uid: opts.uid,
            gid: opts.gid,
            env_policy: lxc_sys::lxc_attach_env_policy_t_LXC_ATTACH_CLEAR_ENV,
            extra_env_vars: env_ptrs.as_mut_ptr(),
            extra_keep_env: std::ptr::null_mut(),
            stdin_fd: opts.stdin,
            stdout_fd: opts.stdout,
            stderr_fd: opts.stderr,
            log_fd: -libc::EBADF,
            lsm_label: std::ptr::null_mut(),
            groups: lxc_sys::lxc_groups_t {
                size: groups.len() as _,
                list: groups.as_mut_ptr(),
            },
        };
        let c = self.raw();
        let program = args.first().map(|a| a.as_ptr()).unwrap_or(std::ptr::null());
        // SAFETY: `c` is a live container; every pointer in `o`, `program`
        // and the NULL-terminated argv/env arrays points into locals that
        // outlive this call, and liblxc only reads them.
        let status = unsafe {
            (*c).attach_run_wait
                .map(|f| f(c, &mut o, program, arg_ptrs.as_ptr()))
                .unwrap_or(-1)
        };
        if status < 0 {
            return Err(LxcError::Call {
                name: self.name().to_owned(),
                op: "attach_run_wait",
            });
        }
        Ok(status)
    }
}
