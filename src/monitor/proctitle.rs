//! Changing what `/proc/<pid>/cmdline` shows for this process.
//!
//! A spare monitor ([`super::spare`]) is started before anyone knows its
//! container; once it has one it must look exactly like a monitor started
//! for it (`pvecri-helper monitor --id <id> ...`), because the daemon, the
//! census, `pgrep` and the test scripts recognise monitors by their command
//! line. The kernel reads that line from the memory range between the
//! process's `arg_start` and `arg_end`. `prctl(PR_SET_MM, PR_SET_MM_MAP)`
//! (made for CRIU, allowed to any process for its own layout) moves them;
//! every other field of the layout is handed back as it is. The single
//! field calls (`PR_SET_MM_ARG_START`) would need `CAP_SYS_RESOURCE`, which
//! not every root has (this project's CI machines lack it).

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStrExt;

/// `struct prctl_mm_map` of `<linux/prctl.h>`.
#[repr(C)]
#[derive(Debug, Default)]
struct MmMap {
    start_code: u64,
    end_code: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
    auxv: u64,
    auxv_size: u32,
    exe_fd: u32,
}

/// Makes `/proc/self/cmdline` read `argv`, NUL-separated. The new text is
/// leaked on purpose: the kernel reads it for as long as the process lives.
/// Call it single-threaded: another thread's allocation could move the
/// heap's end between reading it and handing it back.
pub(crate) fn set(argv: &[OsString]) -> io::Result<()> {
    if argv.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a command line needs at least the program name",
        ));
    }
    let mut text = Vec::new();
    for arg in argv {
        if arg.as_bytes().contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a command line argument holds a NUL byte",
            ));
        }
        text.extend_from_slice(arg.as_bytes());
        text.push(0);
    }
    let mut map = current_layout(&std::fs::read_to_string("/proc/self/stat")?)?;
    let text: &'static [u8] = Box::leak(text.into_boxed_slice());
    map.arg_start = text.as_ptr() as u64;
    map.arg_end = map.arg_start + text.len() as u64;
    // Nothing allocates from here to the call: the heap's end read now is
    // the one the kernel gets back.
    // SAFETY: brk(0) only reports the current end of the heap.
    map.brk = unsafe { libc::syscall(libc::SYS_brk, 0) } as u64;
    // SAFETY: the kernel reads `size_of::<MmMap>()` bytes from `map`, a
    // live `struct prctl_mm_map`; the layout it sets is this process's own
    // with only the argument range moved, into a leaked allocation that
    // stays mapped for the rest of the process's life. No auxv and no exe
    // fd are given (auxv_size 0, exe_fd -1), so neither changes.
    let ret = unsafe {
        libc::prctl(
            libc::PR_SET_MM,
            libc::PR_SET_MM_MAP as libc::c_ulong,
            &map as *const MmMap as libc::c_ulong,
            std::mem::size_of::<MmMap>() as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The memory layout fields of `/proc/self/stat` (`proc_pid_stat(5)`:
/// startcode 26, endcode 27, startstack 28, start_data 45 to env_end 51),
/// with no auxv and no exe fd; `brk` is not in the file.
fn current_layout(stat: &str) -> io::Result<MmMap> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/self/stat");
    // The command name may hold anything: fields count from the last ')'.
    let (_, rest) = stat.rsplit_once(')').ok_or_else(bad)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(bad)
    };
    Ok(MmMap {
        start_code: field(26)?,
        end_code: field(27)?,
        start_stack: field(28)?,
        start_data: field(45)?,
        end_data: field(46)?,
        start_brk: field(47)?,
        brk: 0,
        arg_start: field(48)?,
        arg_end: field(49)?,
        env_start: field(50)?,
        env_end: field(51)?,
        auxv: 0,
        auxv_size: 0,
        exe_fd: u32::MAX,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_read_from_the_fields_after_the_command_name() {
        // Fields 3 to 52; a command name with spaces and parentheses.
        let fields: Vec<String> = (3..=52).map(|n| (n * 10).to_string()).collect();
        let stat = format!("42 (a) b (c) {}", fields.join(" "));
        let m = current_layout(&stat).unwrap();
        assert_eq!((m.start_code, m.end_code, m.start_stack), (260, 270, 280));
        assert_eq!((m.start_data, m.end_data, m.start_brk), (450, 460, 470));
        assert_eq!(
            (m.arg_start, m.arg_end, m.env_start, m.env_end),
            (480, 490, 500, 510)
        );
        assert_eq!((m.auxv_size, m.exe_fd), (0, u32::MAX));
        assert!(current_layout("42 (x) R 1 2").is_err());
        assert_eq!(std::mem::size_of::<MmMap>(), 104, "struct prctl_mm_map");
    }

    #[test]
    fn bad_command_lines_are_refused_before_any_change() {
        assert!(set(&[]).is_err());
        let err = set(&["a\0b".into()]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    /// In a child process, so the test binary's own command line stays.
    #[test]
    fn the_new_command_line_is_what_proc_shows() {
        let (r, w) = nix::unistd::pipe().unwrap();
        // SAFETY: the child only calls `set` (allocation, prctl), reads
        // /proc and writes to a pipe before `_exit`; the test harness's
        // other threads hold no lock that code takes.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let long = "x".repeat(4096);
                let ok = set(&["/usr/lib/pvecri/pvecri-helper".into(), "monitor".into()])
                    .and_then(|()| std::fs::read("/proc/self/cmdline"))
                    .map(|c| c == b"/usr/lib/pvecri/pvecri-helper\0monitor\0")
                    // A second, longer line moves it again.
                    .and_then(|first| {
                        set(&["p".into(), long.clone().into()])?;
                        let c = std::fs::read("/proc/self/cmdline")?;
                        Ok(first && c == format!("p\0{long}\0").as_bytes())
                    })
                    .unwrap_or(false);
                let _ = nix::unistd::write(&w, if ok { b"y" } else { b"n" });
                // SAFETY: ends the forked child without running the
                // parent's destructors.
                unsafe { libc::_exit(0) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(w);
                let answer = std::io::read_to_string(std::fs::File::from(r)).unwrap();
                nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(answer, "y");
            }
        }
    }
}
