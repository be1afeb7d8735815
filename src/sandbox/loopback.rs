//! Interface flags through the classic `SIOC[GS]IFFLAGS` ioctls.
//!
//! The ioctls act on the network namespace of the socket, which is the
//! namespace of the thread that created it. A fresh netns has `lo` down;
//! one ioctl pair is cheaper than a netlink round trip and needs no crate.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const LOOPBACK: &[u8] = b"lo";

/// Brings `lo` up in the calling thread's network namespace.
pub(crate) fn bring_up_loopback() -> io::Result<()> {
    let sock = inet_socket()?;
    let mut req = ifreq(LOOPBACK);
    ioctl(&sock, libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled in the `ifru_flags` member.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    ioctl(&sock, libc::SIOCSIFFLAGS, &mut req)
}

/// The flags of `lo` in the calling thread's network namespace.
#[cfg(test)]
pub(crate) fn loopback_flags() -> io::Result<libc::c_int> {
    let sock = inet_socket()?;
    let mut req = ifreq(LOOPBACK);
    ioctl(&sock, libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled in the `ifru_flags` member. The kernel
    // stores the flags as an unsigned short.
    Ok(libc::c_int::from(unsafe { req.ifr_ifru.ifru_flags } as u16))
}

fn inet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments; no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq(name: &[u8]) -> libc::ifreq {
    // SAFETY: `ifreq` is plain old data (a name array and a union of
    // integers, sockaddrs and a pointer); all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // Leave room for the NUL terminator that zeroing provided.
    assert!(name.len() < libc::IFNAMSIZ);
    for (dst, src) in req.ifr_name.iter_mut().zip(name) {
        *dst = *src as libc::c_char;
    }
    req
}

fn ioctl(sock: &OwnedFd, request: libc::Ioctl, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: both requests read and write one `struct ifreq`, and `req`
    // is a valid, exclusively borrowed one for the duration of the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request, req as *mut libc::ifreq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
