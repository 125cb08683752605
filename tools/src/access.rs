// SPDX-License-Identifier: GPL-2.0

//! Reading another process: directly where the module allows it (own thread group,
//! `CAP_SYS_PTRACE`), else as its tracer for the length of the read.
//!
//! The module lets the tracer of a process read it. `PTRACE_SEIZE` attaches without stopping
//! the process; after the read, the process is interrupted for the instant `PTRACE_DETACH`
//! needs and let go.

use nix::errno::Errno;
use nix::sys::ptrace::{self, Options};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::io;

/// Why another process could not be read.
#[derive(Debug)]
pub enum AccessError {
    /// There is no such process, or it has no address space (a kernel thread, a zombie).
    NoProcess,
    /// The module refused and attaching as a tracer was refused too (`EPERM`).
    NotAllowed,
    /// Another tracer (a debugger, `strace`) is attached.
    AlreadyTraced,
    /// Something else failed.
    Other(io::Error),
}

/// Reads process `pid` with `read`, which makes the module's calls. If the module refuses
/// (`EACCES`), seizes `pid` as its tracer, reads, and detaches.
pub fn read_process<T>(
    pid: i32,
    mut read: impl FnMut() -> io::Result<T>,
) -> Result<T, AccessError> {
    match read() {
        Ok(v) => return Ok(v),
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {}
        Err(e) => return Err(classify(e)),
    }
    let target = Pid::from_raw(pid);
    match ptrace::seize(target, Options::empty()) {
        Ok(()) => {}
        Err(Errno::ESRCH) => return Err(AccessError::NoProcess),
        Err(Errno::EPERM) if traced_by_someone(pid) => return Err(AccessError::AlreadyTraced),
        Err(Errno::EPERM) => return Err(AccessError::NotAllowed),
        Err(e) => return Err(AccessError::Other(e.into())),
    }
    let res = read().map_err(classify);
    let _ = let_go(target);
    res
}

/// Interrupts the seized `pid` and detaches from it, delivering a signal that arrived
/// meanwhile.
fn let_go(pid: Pid) -> nix::Result<()> {
    ptrace::interrupt(pid)?;
    loop {
        match waitpid(pid, Some(WaitPidFlag::__WALL))? {
            WaitStatus::PtraceEvent(..) => return ptrace::detach(pid, None),
            WaitStatus::Stopped(_, sig) => {
                // A signal-delivery-stop came first: detach with the signal, as if we had never
                // been there. A group-stop (SIGSTOP and friends) is left to take effect.
                let deliver = (!matches!(
                    sig,
                    Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU
                ))
                .then_some(sig);
                return ptrace::detach(pid, deliver);
            }
            WaitStatus::Exited(..) | WaitStatus::Signaled(..) => return Ok(()),
            _ => {}
        }
    }
}

/// Whether `/proc/<pid>/status` names a tracer.
fn traced_by_someone(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .is_some_and(|v| v.trim() != "0")
    })
}

fn classify(e: io::Error) -> AccessError {
    match e.raw_os_error() {
        Some(libc::ESRCH) => AccessError::NoProcess,
        Some(libc::EACCES) => AccessError::NotAllowed,
        _ => AccessError::Other(e),
    }
}
