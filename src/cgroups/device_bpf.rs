//! The device policy of a cgroup2 cgroup, as a BPF program pvecri builds
//! and attaches itself.
//!
//! cgroup2 has no `devices.allow`: on every open and mknod of a device node
//! the kernel runs the BPF_PROG_TYPE_CGROUP_DEVICE programs of the cgroup
//! and its ancestors, and refuses with EPERM unless all of them return 1.
//! liblxc compiles a container's `lxc.cgroup2.devices.*` lines into such a
//! program; a container restored from a checkpoint is not started by
//! liblxc, so its cgroup gets the same policy from here.
//!
//! [`compile`] turns allow rules on top of default deny into one block per
//! rule, which jumps to the next block at its first mismatch and returns 1
//! otherwise, followed by `return 0`. Every jump goes forward, so the
//! verifier has no loop to bound. [`attach`] loads the program and attaches
//! it with BPF_F_ALLOW_MULTI, as liblxc does, so a program an ancestor has
//! still applies too. The encoding follows the kernel's uapi
//! (`linux/bpf.h`, `linux/bpf_common.h`); the comparisons use the JMP32
//! class, which needs Linux 5.1.

use std::ffi::CStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::container::devices::{Kind, Rule};

#[derive(Debug, thiserror::Error)]
pub(crate) enum DeviceBpfError {
    #[error("cannot open cgroup directory {dir}")]
    Open {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "bpf(BPF_PROG_LOAD) refused the device program for cgroup {dir} \
         ({insns} instructions); verifier log: {log}"
    )]
    Load {
        dir: PathBuf,
        insns: usize,
        /// The last lines of the verifier's log, which end with its reason.
        log: String,
        #[source]
        source: io::Error,
    },
    #[error("bpf(BPF_PROG_ATTACH) of the device program to cgroup {dir} failed")]
    Attach {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Compiles `rules` into the cgroup's device program and attaches it to
/// the cgroup2 directory `cgroup_dir`: devices the rules allow stay usable
/// there, every other device is refused.
pub(crate) fn attach(cgroup_dir: &Path, rules: &[Rule]) -> Result<(), DeviceBpfError> {
    let insns = compile(rules);
    let cgroup = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(cgroup_dir)
        .map_err(|source| DeviceBpfError::Open {
            dir: cgroup_dir.to_owned(),
            source,
        })?;
    let prog = load_or_log(&insns).map_err(|(source, log)| DeviceBpfError::Load {
        dir: cgroup_dir.to_owned(),
        insns: insns.len(),
        log,
        source,
    })?;
    let mut attr = ProgAttachAttr {
        target_fd: fd_u32(&cgroup),
        attach_bpf_fd: fd_u32(&prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    // SAFETY: attr has the layout of the BPF_PROG_ATTACH member (checked
    // below) and holds no pointers; both fds are open for the call.
    unsafe { sys_bpf(BPF_PROG_ATTACH, &mut attr) }.map_err(|source| DeviceBpfError::Attach {
        dir: cgroup_dir.to_owned(),
        source,
    })?;
    // The attachment holds its own reference to the program: closing `prog`
    // here leaves the policy in force until the cgroup is removed.
    Ok(())
}

/// One BPF instruction, `struct bpf_insn`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    /// The C bitfields `dst_reg:4, src_reg:4`: the first is the low nibble
    /// on a little-endian machine, the high one on a big-endian machine.
    regs: u8,
    off: i16,
    imm: i32,
}

const _: () = assert!(std::mem::size_of::<Insn>() == 8);

// Instruction classes.
const BPF_LDX: u8 = 0x01;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_JMP32: u8 = 0x06;
const BPF_ALU64: u8 = 0x07;
// Size and mode of a load.
const BPF_W: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
// The second operand: the immediate or the source register.
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
// ALU operations.
const BPF_AND: u8 = 0x50;
const BPF_RSH: u8 = 0x70;
const BPF_MOV: u8 = 0xb0;
// Jump operations.
const BPF_JSET: u8 = 0x40;
const BPF_JNE: u8 = 0x50;
const BPF_EXIT: u8 = 0x90;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Reg {
    R0 = 0,
    R1 = 1,
    R2 = 2,
    R3 = 3,
    R4 = 4,
    R5 = 5,
}

/// What the program keeps where: the kernel passes the context in r1 and
/// takes the verdict from r0.
const CTX: Reg = Reg::R1;
const VERDICT: Reg = Reg::R0;
const ACCESS: Reg = Reg::R2;
const TYPE: Reg = Reg::R3;
const MAJOR: Reg = Reg::R4;
const MINOR: Reg = Reg::R5;

/// Offsets in `struct bpf_cgroup_dev_ctx { u32 access_type, major, minor }`;
/// `access_type` is `access << 16 | type`.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;

const DEV_BLOCK: u32 = 1;
const DEV_CHAR: u32 = 2;
const ACC_MKNOD: u32 = 1;
const ACC_READ: u32 = 2;
const ACC_WRITE: u32 = 4;

const ALLOW: i32 = 1;
const DENY: i32 = 0;

impl Insn {
    fn new(code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> Insn {
        let (dst, src) = (dst as u8, src as u8);
        let regs = if cfg!(target_endian = "little") {
            (src << 4) | dst
        } else {
            (dst << 4) | src
        };
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }
}

/// `dst = *(u32 *)(src + off)`
fn load_u32(dst: Reg, src: Reg, off: i16) -> Insn {
    Insn::new(BPF_LDX | BPF_W | BPF_MEM, dst, src, off, 0)
}

/// `dst = (u32)src`
fn mov32(dst: Reg, src: Reg) -> Insn {
    Insn::new(BPF_ALU | BPF_MOV | BPF_X, dst, src, 0, 0)
}

/// `dst = (u32)dst & imm`
fn and32_imm(dst: Reg, imm: u32) -> Insn {
    Insn::new(BPF_ALU | BPF_AND | BPF_K, dst, Reg::R0, 0, imm as i32)
}

/// `dst = (u32)dst >> imm`
fn rsh32_imm(dst: Reg, imm: i32) -> Insn {
    Insn::new(BPF_ALU | BPF_RSH | BPF_K, dst, Reg::R0, 0, imm)
}

/// `dst = imm`, all 64 bits.
fn mov64_imm(dst: Reg, imm: i32) -> Insn {
    Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, dst, Reg::R0, 0, imm)
}

/// `if (u32)dst != imm goto +off`
fn jne32_imm(dst: Reg, imm: u32, off: i16) -> Insn {
    Insn::new(BPF_JMP32 | BPF_JNE | BPF_K, dst, Reg::R0, off, imm as i32)
}

/// `if (u32)dst & imm goto +off`
fn jset32_imm(dst: Reg, imm: u32, off: i16) -> Insn {
    Insn::new(BPF_JMP32 | BPF_JSET | BPF_K, dst, Reg::R0, off, imm as i32)
}

/// `return r0`
fn exit() -> Insn {
    Insn::new(BPF_JMP | BPF_EXIT, Reg::R0, Reg::R0, 0, 0)
}

/// The device program allowing what `rules` allow and nothing else.
pub(crate) fn compile(rules: &[Rule]) -> Vec<Insn> {
    let mut prog = vec![
        load_u32(ACCESS, CTX, CTX_ACCESS_TYPE),
        load_u32(MAJOR, CTX, CTX_MAJOR),
        load_u32(MINOR, CTX, CTX_MINOR),
        mov32(TYPE, ACCESS),
        and32_imm(TYPE, 0xffff),
        rsh32_imm(ACCESS, 16),
    ];
    prog.extend(rules.iter().filter_map(rule_block).flatten());
    prog.extend([mov64_imm(VERDICT, DENY), exit()]);
    prog
}

/// The block returning 1 for what `rule` allows; none for a rule that
/// allows nothing.
fn rule_block(rule: &Rule) -> Option<Vec<Insn>> {
    let granted = access_bits(&rule.access);
    if granted == 0 {
        return None;
    }
    let dev_type = match rule.kind {
        Kind::Char => DEV_CHAR,
        Kind::Block => DEV_BLOCK,
    };
    // Jump targets are filled in below, once the block's length is known.
    let mut block = vec![
        jne32_imm(TYPE, dev_type, 0),
        // Any access the rule does not grant sends the request on.
        jset32_imm(ACCESS, !granted, 0),
    ];
    block.extend(rule.major.map(|major| jne32_imm(MAJOR, major, 0)));
    block.extend(rule.minor.map(|minor| jne32_imm(MINOR, minor, 0)));
    // A mismatch skips the checks after it and the two `return 1`
    // instructions, landing on the next rule's block.
    let checks = block.len();
    for (i, insn) in block.iter_mut().enumerate() {
        insn.off = (checks - i + 1) as i16;
    }
    block.extend([mov64_imm(VERDICT, ALLOW), exit()]);
    Some(block)
}

/// The BPF_DEVCG_ACC_* bits of `rwm` letters; any other letter grants
/// nothing.
fn access_bits(access: &str) -> u32 {
    access
        .chars()
        .map(|c| match c {
            'm' => ACC_MKNOD,
            'r' => ACC_READ,
            'w' => ACC_WRITE,
            _ => 0,
        })
        .fold(0, |bits, bit| bits | bit)
}

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The program calls no GPL-only helper, so it carries pvecri's license.
const LICENSE: &CStr = c"Apache-2.0";
/// Shown by `bpftool prog`; at most 15 bytes and a NUL.
const PROG_NAME: [u8; 16] = *b"pvecri_devices\0\0";
/// Room for the verifier's log of a program that failed to load.
const LOG_SIZE: usize = 1 << 20;
/// How much of that log an error keeps: the reason is at its end.
const LOG_TAIL_LINES: usize = 20;

/// The BPF_PROG_LOAD member of `union bpf_attr`, up to `prog_name`. Every
/// byte is a field, so none is left uninitialised; the kernel reads the
/// fields after the `size` passed to bpf(2) as zero.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(offset_of!(ProgLoadAttr, insn_cnt) == 4);
    assert!(offset_of!(ProgLoadAttr, insns) == 8);
    assert!(offset_of!(ProgLoadAttr, license) == 16);
    assert!(offset_of!(ProgLoadAttr, log_level) == 24);
    assert!(offset_of!(ProgLoadAttr, log_size) == 28);
    assert!(offset_of!(ProgLoadAttr, log_buf) == 32);
    assert!(offset_of!(ProgLoadAttr, kern_version) == 40);
    assert!(offset_of!(ProgLoadAttr, prog_flags) == 44);
    assert!(offset_of!(ProgLoadAttr, prog_name) == 48);
    assert!(size_of::<ProgLoadAttr>() == 64);
};

/// The BPF_PROG_ATTACH member of `union bpf_attr`, up to `attach_flags`
/// (`replace_bpf_fd` and later stay zero).
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(offset_of!(ProgAttachAttr, attach_bpf_fd) == 4);
    assert!(offset_of!(ProgAttachAttr, attach_type) == 8);
    assert!(offset_of!(ProgAttachAttr, attach_flags) == 12);
    assert!(size_of::<ProgAttachAttr>() == 16);
};

/// Loads `insns` as a device program; on failure, the error and the tail
/// of the verifier's log.
fn load_or_log(insns: &[Insn]) -> Result<OwnedFd, (io::Error, String)> {
    load(insns, None).or_else(|error| {
        // Loaded again with a log only now: on success the log is waste,
        // and before Linux 6.4 a log that fills its buffer fails the load.
        let mut log = vec![0u8; LOG_SIZE];
        load(insns, Some(&mut log)).map_err(|_| (error, log_tail(&log)))
    })
}

/// Loads `insns` as a device program, with the verifier's log written to
/// `log` (NUL-terminated) when given.
fn load(insns: &[Insn], log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    let (log_level, log_size, log_buf) = match log {
        Some(buf) => (
            1,
            u32::try_from(buf.len()).expect("the log buffer is LOG_SIZE bytes"),
            buf.as_mut_ptr() as u64,
        ),
        None => (0, 0, 0),
    };
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(insns.len()).expect("a device program is far below 2^32 insns"),
        insns: insns.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        kern_version: 0,
        prog_flags: 0,
        prog_name: PROG_NAME,
    };
    // SAFETY: attr has the layout of the BPF_PROG_LOAD member (checked
    // above). insns points at insn_cnt instructions and LICENSE at a
    // NUL-terminated string, both outliving the call; log_buf is either
    // null with log_size 0, or the caller's buffer of log_size bytes,
    // borrowed mutably for the call.
    let fd = unsafe { sys_bpf(BPF_PROG_LOAD, &mut attr) }?;
    let fd = i32::try_from(fd).expect("bpf(2) returns an int");
    // SAFETY: BPF_PROG_LOAD returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// bpf(2), the one place its result becomes an error.
///
/// # Safety
///
/// `attr` must have the layout of the `union bpf_attr` member for `cmd`,
/// with no uninitialised bytes, and every pointer in it must be valid for
/// what the kernel does with it (reading the instructions and the license,
/// writing up to `log_size` bytes of log) until the call returns.
unsafe fn sys_bpf<T>(cmd: libc::c_int, attr: &mut T) -> io::Result<libc::c_long> {
    let size = libc::c_uint::try_from(std::mem::size_of::<T>()).expect("a bpf_attr is small");
    // SAFETY: the caller vouches for attr; size is its exact size.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret)
}

/// An open fd as bpf_attr's `__u32` fd fields hold it.
fn fd_u32(fd: &impl AsRawFd) -> u32 {
    u32::try_from(fd.as_raw_fd()).expect("an open fd is not negative")
}

/// The last lines of the NUL-terminated verifier log in `buf`.
fn log_tail(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let text = String::from_utf8_lossy(&buf[..end]);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    if lines.is_empty() {
        return "(empty)".to_owned();
    }
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Output, Stdio};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::container::devices::default_rules;

    fn rule(kind: Kind, major: Option<u32>, minor: Option<u32>, access: &str) -> Rule {
        Rule {
            kind,
            major,
            minor,
            access: access.to_owned(),
        }
    }

    fn dst_of(insn: Insn) -> usize {
        usize::from(if cfg!(target_endian = "little") {
            insn.regs & 0xf
        } else {
            insn.regs >> 4
        })
    }

    fn src_of(insn: Insn) -> usize {
        usize::from(if cfg!(target_endian = "little") {
            insn.regs >> 4
        } else {
            insn.regs & 0xf
        })
    }

    // The opcodes `compile` emits, as match patterns.
    const LDX_W: u8 = BPF_LDX | BPF_W | BPF_MEM;
    const MOV32_X: u8 = BPF_ALU | BPF_MOV | BPF_X;
    const AND32_K: u8 = BPF_ALU | BPF_AND | BPF_K;
    const RSH32_K: u8 = BPF_ALU | BPF_RSH | BPF_K;
    const MOV64_K: u8 = BPF_ALU64 | BPF_MOV | BPF_K;
    const JNE32_K: u8 = BPF_JMP32 | BPF_JNE | BPF_K;
    const JSET32_K: u8 = BPF_JMP32 | BPF_JSET | BPF_K;
    const EXIT: u8 = BPF_JMP | BPF_EXIT;

    /// Runs `prog` on one device access as the kernel would, for the
    /// instructions `compile` emits, and returns r0. Like the verifier, it
    /// refuses reads of unset registers, stores, backward jumps and
    /// running off the end.
    fn run(prog: &[Insn], dev_type: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16) | dev_type, major, minor];
        let mut reg = [0u64; 11];
        let mut set = [false; 11];
        set[1] = true; // the context
        set[10] = true; // the frame pointer
        let mut pc = 0;
        loop {
            let insn = *prog.get(pc).expect("the program ran off its end");
            let (dst, src) = (dst_of(insn), src_of(insn));
            let (off, imm) = (insn.off, insn.imm);
            pc += 1;
            let read = |r: usize| {
                assert!(set[r], "r{r} read before it was set, at {}", pc - 1);
                reg[r]
            };
            let mut jump = None;
            let mut write = None;
            match insn.code {
                LDX_W => {
                    assert_eq!(src, CTX as usize, "loads only from the context");
                    assert!(off >= 0 && off % 4 == 0 && off < 12, "context offset {off}");
                    write = Some(u64::from(ctx[off as usize / 4]));
                }
                MOV32_X => write = Some(read(src) as u32 as u64),
                AND32_K => {
                    write = Some(u64::from(read(dst) as u32 & imm as u32));
                }
                RSH32_K => {
                    write = Some(u64::from((read(dst) as u32) >> imm));
                }
                MOV64_K => write = Some(imm as i64 as u64),
                JNE32_K => {
                    jump = Some(read(dst) as u32 != imm as u32);
                }
                JSET32_K => {
                    jump = Some(read(dst) as u32 & imm as u32 != 0);
                }
                EXIT => return read(0),
                code => panic!("unexpected opcode {code:#04x} at {}", pc - 1),
            }
            if let Some(value) = write {
                reg[dst] = value;
                set[dst] = true;
            }
            if let Some(taken) = jump {
                assert!(off > 0, "jump by {off} at {}", pc - 1);
                if taken {
                    pc += off as usize;
                }
            }
        }
    }

    fn code(access: &str) -> u32 {
        access_bits(access)
    }

    /// Whether the program for `rules` lets `access` through to the device.
    fn allows(rules: &[Rule], kind: Kind, major: u32, minor: u32, access: &str) -> bool {
        let dev_type = match kind {
            Kind::Char => DEV_CHAR,
            Kind::Block => DEV_BLOCK,
        };
        match run(&compile(rules), dev_type, code(access), major, minor) {
            0 => false,
            1 => true,
            other => panic!("verdict {other}"),
        }
    }

    #[test]
    fn instructions_encode_as_the_kernel_reads_them() {
        let bytes = |insn: Insn| {
            let mut b = vec![insn.code, insn.regs];
            b.extend(insn.off.to_ne_bytes());
            b.extend(insn.imm.to_ne_bytes());
            b
        };
        if cfg!(target_endian = "little") {
            // r2 = *(u32 *)(r1 + 4)
            assert_eq!(
                bytes(load_u32(Reg::R2, Reg::R1, 4)),
                [0x61, 0x12, 4, 0, 0, 0, 0, 0]
            );
            // w3 = w2
            assert_eq!(
                bytes(mov32(Reg::R3, Reg::R2)),
                [0xbc, 0x23, 0, 0, 0, 0, 0, 0]
            );
            // w3 &= 0xffff
            assert_eq!(
                bytes(and32_imm(Reg::R3, 0xffff)),
                [0x54, 3, 0, 0, 0xff, 0xff, 0, 0]
            );
            // w2 >>= 16
            assert_eq!(bytes(rsh32_imm(Reg::R2, 16)), [0x74, 2, 0, 0, 16, 0, 0, 0]);
            // r0 = 1
            assert_eq!(bytes(mov64_imm(Reg::R0, 1)), [0xb7, 0, 0, 0, 1, 0, 0, 0]);
            // if w4 != 136 goto +3
            assert_eq!(
                bytes(jne32_imm(Reg::R4, 136, 3)),
                [0x56, 4, 3, 0, 136, 0, 0, 0]
            );
            // if w2 & 0xfffffff8 goto +2
            assert_eq!(
                bytes(jset32_imm(Reg::R2, !7, 2)),
                [0x46, 2, 2, 0, 0xf8, 0xff, 0xff, 0xff]
            );
            assert_eq!(bytes(exit()), [0x95, 0, 0, 0, 0, 0, 0, 0]);
        }
        // Whatever the byte order, a device number above i32::MAX keeps
        // its bits.
        assert_eq!(jne32_imm(Reg::R4, u32::MAX, 1).imm, -1);
    }

    #[test]
    fn no_rule_denies_everything() {
        let prog = compile(&[]);
        assert_eq!(prog[prog.len() - 2..], [mov64_imm(VERDICT, DENY), exit()]);
        assert!(!allows(&[], Kind::Char, 1, 3, "r"));
        assert!(!allows(&[], Kind::Char, 1, 3, "m"));
        assert!(!allows(&[], Kind::Block, 8, 0, "rw"));
    }

    #[test]
    fn access_must_be_a_subset_of_the_rule() {
        let rules = [rule(Kind::Char, Some(1), Some(5), "rw")];
        for access in ["r", "w", "rw"] {
            assert!(allows(&rules, Kind::Char, 1, 5, access), "{access}");
        }
        for access in ["m", "rm", "wm", "rwm"] {
            assert!(!allows(&rules, Kind::Char, 1, 5, access), "{access}");
        }
        let read_only = [rule(Kind::Char, Some(1), Some(5), "r")];
        assert!(allows(&read_only, Kind::Char, 1, 5, "r"));
        assert!(!allows(&read_only, Kind::Char, 1, 5, "w"));
        assert!(!allows(&read_only, Kind::Char, 1, 5, "rw"));
        // A rule granting nothing (or only letters outside rwm) is no rule.
        let nothing = [
            rule(Kind::Char, Some(1), Some(5), ""),
            rule(Kind::Char, None, None, "x"),
        ];
        assert_eq!(compile(&nothing), compile(&[]));
        assert!(!allows(&nothing, Kind::Char, 1, 5, "r"));
    }

    #[test]
    fn wildcards_match_any_number() {
        let pts = [rule(Kind::Char, Some(136), None, "rw")];
        assert!(allows(&pts, Kind::Char, 136, 0, "rw"));
        assert!(allows(&pts, Kind::Char, 136, 1 << 19, "r"));
        assert!(!allows(&pts, Kind::Char, 137, 0, "r"));
        let minor_only = [rule(Kind::Char, None, Some(7), "r")];
        assert!(allows(&minor_only, Kind::Char, 1, 7, "r"));
        assert!(allows(&minor_only, Kind::Char, 200, 7, "r"));
        assert!(!allows(&minor_only, Kind::Char, 1, 8, "r"));
        let mknod_any = [rule(Kind::Char, None, None, "m")];
        assert!(allows(&mknod_any, Kind::Char, 4095, 12345, "m"));
        assert!(!allows(&mknod_any, Kind::Char, 1, 3, "r"));
        assert!(!allows(&mknod_any, Kind::Block, 8, 0, "m"));
    }

    #[test]
    fn block_and_char_are_told_apart() {
        let sda = [rule(Kind::Block, Some(8), Some(0), "rw")];
        assert!(allows(&sda, Kind::Block, 8, 0, "rw"));
        assert!(!allows(&sda, Kind::Char, 8, 0, "r"));
        let mem = [rule(Kind::Char, Some(1), Some(1), "r")];
        assert!(allows(&mem, Kind::Char, 1, 1, "r"));
        assert!(!allows(&mem, Kind::Block, 1, 1, "r"));
    }

    #[test]
    fn large_device_numbers_compare_on_all_32_bits() {
        let rules = [rule(Kind::Char, Some(u32::MAX), Some(1 << 31), "r")];
        assert!(allows(&rules, Kind::Char, u32::MAX, 1 << 31, "r"));
        assert!(!allows(&rules, Kind::Char, u32::MAX, 0, "r"));
        assert!(!allows(&rules, Kind::Char, 0x7fff_ffff, 1 << 31, "r"));
    }

    #[test]
    fn the_default_rules_open_the_pseudo_devices_only() {
        let rules = default_rules();
        for (major, minor) in [
            (1, 3),
            (1, 5),
            (1, 7),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 1),
            (5, 2),
        ] {
            assert!(
                allows(&rules, Kind::Char, major, minor, "rwm"),
                "c {major}:{minor}"
            );
        }
        assert!(allows(&rules, Kind::Char, 136, 42, "rw"));
        assert!(allows(&rules, Kind::Char, 10, 200, "rw"));
        assert!(allows(&rules, Kind::Char, 10, 229, "rw"));
        // Nodes can be made, not opened.
        assert!(allows(&rules, Kind::Char, 4, 1, "m"));
        assert!(allows(&rules, Kind::Block, 8, 0, "m"));
        assert!(!allows(&rules, Kind::Char, 4, 1, "r"));
        assert!(!allows(&rules, Kind::Block, 8, 0, "r"));
        assert!(!allows(&rules, Kind::Block, 8, 0, "w"));
        assert!(!allows(&rules, Kind::Char, 1, 1, "r")); // /dev/mem
        assert!(!allows(&rules, Kind::Char, 10, 201, "r"));
        assert!(!allows(&rules, Kind::Block, 1, 3, "r"));
    }

    #[test]
    fn the_program_agrees_with_the_rules_everywhere() {
        let mut rules = default_rules();
        rules.extend([
            rule(Kind::Block, Some(8), None, "r"),
            rule(Kind::Char, None, Some(2), "w"),
            rule(Kind::Block, Some(7), Some(0), "rwm"),
        ]);
        let grants = |r: &Rule, kind: Kind, major: u32, minor: u32, access: u32| {
            r.kind == kind
                && access & !access_bits(&r.access) == 0
                && r.major.is_none_or(|m| m == major)
                && r.minor.is_none_or(|m| m == minor)
        };
        let prog = compile(&rules);
        let numbers = [0, 1, 2, 3, 5, 7, 8, 9, 10, 136, 200, 229, 4095];
        for (kind, dev_type) in [(Kind::Char, DEV_CHAR), (Kind::Block, DEV_BLOCK)] {
            for access in 1..=7 {
                for major in numbers {
                    for minor in numbers {
                        let want = rules.iter().any(|r| grants(r, kind, major, minor, access));
                        let got = run(&prog, dev_type, access, major, minor) == 1;
                        assert_eq!(got, want, "{kind:?} {major}:{minor} access {access}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_instruction_is_reachable() {
        // The verifier refuses a program with unreachable instructions.
        let prog = compile(&default_rules());
        let mut reached = vec![false; prog.len()];
        let mut todo = vec![0];
        while let Some(pc) = todo.pop() {
            if pc >= prog.len() || std::mem::replace(&mut reached[pc], true) {
                continue;
            }
            let insn = prog[pc];
            if insn.code == BPF_JMP | BPF_EXIT {
                continue;
            }
            todo.push(pc + 1);
            if insn.code & 0x07 == BPF_JMP32 {
                todo.push(pc + 1 + insn.off as usize);
            }
        }
        let unreached: Vec<usize> = (0..prog.len()).filter(|&pc| !reached[pc]).collect();
        assert!(unreached.is_empty(), "unreachable: {unreached:?}");
    }

    #[test]
    fn a_missing_cgroup_is_named_in_the_error() {
        let dir = Path::new("/sys/fs/cgroup/pvecri-no-such-cgroup");
        let err = attach(dir, &default_rules()).unwrap_err();
        assert!(matches!(err, DeviceBpfError::Open { .. }), "{err:?}");
        assert!(err.to_string().contains("pvecri-no-such-cgroup"), "{err}");
    }

    #[test]
    fn the_log_tail_keeps_the_reason() {
        let mut log = (0..100).map(|i| format!("line {i}\n")).collect::<String>();
        log.push_str("R0 !read_ok\n\0garbage");
        let tail = log_tail(log.as_bytes());
        assert!(tail.ends_with("R0 !read_ok"), "{tail}");
        assert_eq!(tail.lines().count(), LOG_TAIL_LINES);
        assert_eq!(log_tail(&[0; 8]), "(empty)");
    }

    #[test]
    fn a_refused_program_brings_its_verifier_log() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP: skipping a_refused_program_brings_its_verifier_log: needs root");
            return;
        }
        // Returning r0 without setting it.
        let (error, log) = load_or_log(&[exit()]).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EACCES), "{error}");
        assert!(log.contains("R0 !read_ok"), "{log}");
        load_or_log(&compile(&default_rules())).unwrap();
    }

    /// A cgroup made for a test, removed when dropped.
    struct TestCgroup {
        dir: PathBuf,
        removed: bool,
    }

    impl TestCgroup {
        fn create(dir: PathBuf) -> TestCgroup {
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
            TestCgroup {
                dir,
                removed: false,
            }
        }

        /// Removes the cgroup once the kernel has let go of its exited
        /// processes.
        fn remove(&mut self) -> io::Result<()> {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !crate::cgroups::procs(&self.dir).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            self.removed = true;
            std::fs::remove_dir(&self.dir)
        }
    }

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            if !self.removed {
                if let Err(e) = self.remove() {
                    eprintln!("LEFT BEHIND: cgroup {}: {e}", self.dir.display());
                }
            }
        }
    }

    /// Runs `script` with `sh` in the cgroup at `dir`.
    fn sh_in(dir: &Path, script: &str) -> Output {
        let procs = File::options()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .unwrap();
        let procs_fd = procs.as_raw_fd();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script])
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        // Writing 0 to cgroup.procs moves the writer itself.
        let join = move || {
            // SAFETY: a one-byte write from a static buffer.
            let n = unsafe { libc::write(procs_fd, b"0".as_ptr().cast(), 1) };
            if n == 1 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        // SAFETY: between fork and exec the hook only calls write(2), which
        // is async-signal-safe, on an fd `procs` keeps open until the
        // command has run.
        unsafe { cmd.pre_exec(join) };
        let out = cmd.output().unwrap();
        drop(procs);
        out
    }

    fn denied(out: &Output) -> bool {
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("Operation not permitted")
    }

    #[test]
    fn the_kernel_enforces_the_policy() {
        let test = "the_kernel_enforces_the_policy";
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP: skipping {test}: needs root");
            return;
        }
        let mounts = crate::cgroups::read_mounts().unwrap();
        let Some(root) = mounts.iter().find(|m| m.v2 && m.root == Path::new("/")) else {
            eprintln!("SKIP: skipping {test}: no cgroup2 mount");
            return;
        };
        let mut cgroup = TestCgroup::create(
            root.mount_point
                .join(format!("pvecri-devbpf-test-{}", std::process::id())),
        );

        // Without a policy the cgroup may write /dev/zero, so the refusal
        // below is the program's doing.
        let before = sh_in(&cgroup.dir, ": > /dev/zero");
        assert!(before.status.success(), "{before:?}");

        let null_and_zero_read = [
            rule(Kind::Char, Some(1), Some(3), "rwm"),
            rule(Kind::Char, Some(1), Some(5), "r"),
        ];
        attach(&cgroup.dir, &null_and_zero_read).unwrap();

        let zero_read = sh_in(&cgroup.dir, "head -c1 /dev/zero");
        assert!(zero_read.status.success(), "{zero_read:?}");
        assert_eq!(zero_read.stdout, [0]);
        let null_write = sh_in(&cgroup.dir, "echo x > /dev/null");
        assert!(null_write.status.success(), "{null_write:?}");
        let zero_write = sh_in(&cgroup.dir, ": > /dev/zero");
        assert!(denied(&zero_write), "{zero_write:?}");
        let full_read = sh_in(&cgroup.dir, "head -c1 /dev/full");
        assert!(denied(&full_read), "{full_read:?}");

        // The policy stays on the cgroup, not on the test process.
        assert!(File::options().write(true).open("/dev/zero").is_ok());

        cgroup.remove().unwrap();
        assert!(!cgroup.dir.exists());
    }
}
