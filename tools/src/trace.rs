// SPDX-License-Identifier: GPL-2.0

//! The tracer of `mmscope trace`: runs a program under `ptrace`, stops it at the entry and exit
//! of each memory system call, in every thread it starts, and reads its address space through
//! a [`Source`] at both stops.
//!
//! The module lets a tracer read its tracee (`MMSCOPE_F_PID`, ABI version 4), and procfs lets
//! a process of the same user read it, so this works without privileges. Processes the
//! program forks are not followed: they have address spaces of their own.
//!
//! `brk` is exact from either source. The tracer follows it: at `execve` the kernel sets
//! `mm->brk = mm->start_brk` (`load_elf_binary()` in `fs/binfmt_elf.c`), and `brk(2)` returns
//! the break it leaves, also when it refuses to move it (`sys_brk()` in `mm/mmap.c`: `brk`, or
//! `origbrk` after `out:`; only `-EINTR` is not a break). A source that cannot read `brk`
//! (procfs) gets this value in every snapshot. Not followed: `prctl(PR_SET_MM_BRK)`, which
//! only a checkpoint-restore tool makes. One break is kept, the traced process's: its threads
//! share it, and the mmap lock orders their `brk` calls, but when two threads' calls overlap,
//! their exit stops may reach the tracer in the other order, and for the instant between them
//! the break shown is the earlier one. A `clone()` child of another thread group (no
//! `CLONE_THREAD`, an exit signal other than `SIGCHLD`, which `PTRACE_O_TRACECLONE` attaches)
//! is let go at its first stop, as a forked one is never followed.

use crate::snapshot::Snapshot;
use crate::source::{Depth, Source};
use crate::syscalls::MemCall;
use nix::errno::Errno;
use nix::sys::ptrace::{self, Options};
use nix::sys::signal::Signal;
use nix::unistd::{execvp, fork, pipe2, ForkResult, Pid};
use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;

/// `AUDIT_ARCH_X86_64`: the system call table the numbers in [`MemCall`] belong to.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386`: the 32-bit table, whose `brk` the tracer follows too.
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// `__NR_brk` in the 32-bit table.
const NR_BRK_I386: u64 = 45;

/// One memory system call and its effect.
#[derive(Clone, Debug)]
pub struct Step {
    /// 1 for the first call after `exec`, and so on.
    pub index: usize,
    /// The thread that made it.
    pub tid: i32,
    /// Which call.
    pub call: MemCall,
    /// Its arguments (as many as it takes).
    pub args: Vec<u64>,
    /// Its result: an address, 0, or `-errno`; `None` if the thread was killed during it.
    pub ret: Option<i64>,
    /// The address space at the call's entry.
    pub before: Snapshot,
    /// The address space at its exit; `None` if it could not be read (the process died).
    pub after: Option<Snapshot>,
}

/// How the traced program ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it; `true` if it dumped core.
    Signaled(i32, bool),
    /// The tracer let go of this process (`mmscope trace -p`), which runs on.
    Detached(i32),
}

impl Ending {
    /// The exit status a shell would report: the status, or 128 + the signal.
    pub fn shell_status(self) -> i32 {
        match self {
            Self::Exited(code) => code,
            Self::Signaled(sig, _) => 128 + sig,
            Self::Detached(_) => 0,
        }
    }
}

/// A status `waitpid(2)` reported, decoded as `<sys/wait.h>` decodes it: any signal number,
/// real-time ones (`SIGRTMIN`..`SIGRTMAX`) included, and the `ptrace` event in bits 16-23.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// `WIFEXITED`: the task exited with `WEXITSTATUS`.
    Exited(i32),
    /// `WIFSIGNALED`: `WTERMSIG` killed the task; `WCOREDUMP`.
    Signaled(i32, bool),
    /// `WIFSTOPPED` with `WSTOPSIG` = `SIGTRAP | 0x80`: a system-call stop
    /// (`PTRACE_O_TRACESYSGOOD`).
    Syscall,
    /// `WIFSTOPPED` with a `ptrace` event (`status >> 16`) and the stop signal.
    Event(i32, i32),
    /// `WIFSTOPPED` with no event: a signal-delivery-stop for `WSTOPSIG`.
    Signal(i32),
    /// Anything else (`WIFCONTINUED`).
    Other,
}

impl Wait {
    /// Decodes the `status` `waitpid` filled in.
    pub fn decode(status: i32) -> Self {
        if libc::WIFEXITED(status) {
            Self::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            Self::Signaled(libc::WTERMSIG(status), libc::WCOREDUMP(status))
        } else if libc::WIFSTOPPED(status) {
            let sig = libc::WSTOPSIG(status);
            let event = (status >> 16) & 0xff;
            if sig == libc::SIGTRAP | 0x80 {
                Self::Syscall
            } else if event != 0 {
                Self::Event(event, sig)
            } else {
                Self::Signal(sig)
            }
        } else {
            Self::Other
        }
    }
}

/// Waits for any child task (`__WALL`), or for `pid`, as [`Wait`]: the pid and its status.
fn wait_any(pid: i32) -> Result<(i32, Wait), Errno> {
    let mut status = 0;
    // SAFETY: `status` is a live int the kernel writes.
    let got = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
    if got < 0 {
        return Err(Errno::last());
    }
    Ok((got, Wait::decode(status)))
}

/// The name of signal `sig`: `SIGABRT`, `SIGRTMIN+3`, or the number.
pub fn signal_name(sig: i32) -> String {
    if let Ok(s) = Signal::try_from(sig) {
        return s.as_str().to_string();
    }
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    if (min..=max).contains(&sig) {
        if sig == min {
            "SIGRTMIN".to_string()
        } else {
            format!("SIGRTMIN+{}", sig - min)
        }
    } else {
        sig.to_string()
    }
}

/// What the tracer reports, in the order it happens.
#[derive(Clone, Debug)]
pub enum Event {
    /// The program was started: its address space right after `execve`.
    Exec {
        /// Its process id.
        pid: i32,
        /// The source the snapshots come from (`module`, `procfs`).
        source: &'static str,
        /// The address space.
        snap: Snapshot,
    },
    /// The tracer attached to a running process (`mmscope trace -p`): its address space with
    /// every thread stopped.
    Attach {
        /// Its process id.
        pid: i32,
        /// The source the snapshots come from (`module`, `procfs`).
        source: &'static str,
        /// How many threads it has.
        threads: usize,
        /// The address space.
        snap: Snapshot,
    },
    /// The program started a thread.
    Thread {
        /// The new thread.
        tid: i32,
        /// The thread that started it.
        parent: i32,
    },
    /// A memory system call returned (or its thread was killed during it).
    Call(Box<Step>),
    /// A thread made a 32-bit system call (`int 0x80`); reported once per trace: those calls
    /// are not traced.
    Compat32 {
        /// The thread.
        tid: i32,
    },
    /// A thread is exiting; the address space as it leaves, while it still exists.
    ThreadExit {
        /// The thread.
        tid: i32,
        /// The address space, if it could be read.
        snap: Option<Snapshot>,
    },
}

/// Why the program could not be traced.
#[derive(Debug)]
pub enum TraceError {
    /// The program could not be started (`execvp` failed with this error).
    Exec(io::Error),
    /// The program could not be traced (`ptrace` refused it: another tracer, Yama, a
    /// seccomp policy).
    Untraceable(io::Error),
    /// An argument holds a NUL byte.
    NulInArgument,
    /// A `ptrace`, `fork` or `wait` call failed.
    Ptrace(&'static str, io::Error),
    /// The source refused to show the tracee's address space.
    Snapshot(io::Error),
    /// There is no process to attach to.
    NoProcess,
    /// Attaching was refused (`EPERM`): another user's process, or Yama's `ptrace_scope`,
    /// whose value is given if it is above 0.
    NotAllowed(Option<u32>),
    /// Another tracer is attached (`TracerPid` in `/proc/PID/status`).
    AlreadyTraced(i32),
}

impl std::fmt::Display for TraceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exec(e) | Self::Untraceable(e) => write!(f, "{e}"),
            Self::NulInArgument => write!(f, "an argument contains a NUL byte"),
            Self::Ptrace(what, e) => write!(f, "{what}: {e}"),
            Self::Snapshot(e) => write!(f, "reading the tracee's address space: {e}"),
            Self::NoProcess => write!(f, "no such process"),
            Self::NotAllowed(_) => write!(f, "attaching was not allowed"),
            Self::AlreadyTraced(by) => write!(f, "already traced by {by}"),
        }
    }
}

/// The call a thread is in, between its entry and exit stops.
struct Pending {
    call: MemCall,
    args: Vec<u64>,
    before: Snapshot,
}

impl Pending {
    /// The event for this call, the `index`th, made by `tid`: it returned `ret` (`None`: the
    /// thread was killed during it), leaving the address space `after`.
    fn into_event(
        self,
        index: usize,
        tid: i32,
        ret: Option<i64>,
        after: Option<Snapshot>,
    ) -> Event {
        Event::Call(Box::new(Step {
            index,
            tid,
            call: self.call,
            args: self.args,
            ret,
            before: self.before,
            after,
        }))
    }
}

/// Runs `argv` under the tracer and reports each [`Event`] to `on_event` as it happens.
/// Returns how the program ended.
pub fn run(
    src: &dyn Source,
    argv: &[OsString],
    mut on_event: impl FnMut(Event),
) -> Result<Ending, TraceError> {
    let c_argv = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TraceError::NulInArgument)?;
    let Some(program) = c_argv.first() else {
        return Err(TraceError::Exec(io::Error::from_raw_os_error(libc::ENOENT)));
    };
    let (err_rd, err_wr) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| TraceError::Ptrace("pipe2", e.into()))?;
    let (go_rd, go_wr) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| TraceError::Ptrace("pipe2", e.into()))?;

    // SAFETY: This process is single-threaded when it traces; the child only calls signal,
    // sigprocmask, close, read, execvp, write and _exit before it execs or exits.
    let child = match unsafe { fork() } {
        Err(e) => return Err(TraceError::Ptrace("fork", e.into())),
        Ok(ForkResult::Child) => {
            drop(err_rd);
            drop(go_wr);
            default_signals();
            // Wait until the tracer has seized this process: the pipe's end of file.
            let mut byte = [0u8; 1];
            loop {
                // SAFETY: Reads at most one byte into a live buffer.
                let n = unsafe {
                    libc::read(
                        std::os::fd::AsRawFd::as_raw_fd(&go_rd),
                        byte.as_mut_ptr().cast(),
                        1,
                    )
                };
                if n >= 0 || Errno::last() != Errno::EINTR {
                    break;
                }
            }
            let err = match execvp(program, &c_argv) {
                Err(e) => e as i32,
                Ok(never) => match never {},
            };
            let mut bytes = [0u8; 8];
            bytes[..4].copy_from_slice(&STAGE_EXEC.to_ne_bytes());
            bytes[4..].copy_from_slice(&err.to_ne_bytes());
            // SAFETY: Writes 8 bytes from a live buffer to the pipe, then exits without
            // running this process's exit handlers.
            unsafe {
                libc::write(
                    std::os::fd::AsRawFd::as_raw_fd(&err_wr),
                    bytes.as_ptr().cast(),
                    bytes.len(),
                );
                libc::_exit(127);
            }
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    drop(err_wr);
    drop(go_rd);
    let mut exec_error = File::from(err_rd);

    // Seized as strace seizes the program it starts, before it execs: group-stops are then
    // reported as PTRACE_EVENT_STOP and held with PTRACE_LISTEN, as untraced; the first stop
    // is the exec, from which on each system call stops.
    let options = Options::PTRACE_O_TRACESYSGOOD
        | Options::PTRACE_O_TRACECLONE
        | Options::PTRACE_O_TRACEEXEC
        | Options::PTRACE_O_TRACEEXIT
        | Options::PTRACE_O_EXITKILL;
    if let Err(e) = ptrace::seize(child, options) {
        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        let _ = wait_any(child.as_raw());
        return Err(TraceError::Untraceable(e.into()));
    }
    drop(go_wr);
    let _guard = Forward::install(child.as_raw());

    let ending = follow(
        src,
        child.as_raw(),
        Follow::Launched,
        HashSet::new(),
        &mut on_event,
    )?;
    match ending {
        None => Err(child_error(&mut exec_error)),
        Some(ending) => Ok(ending),
    }
}

/// How [`follow`] came to the process.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// Started by the tracer, seized before it execs: nothing is reported before the exec.
    Launched,
    /// Attached to while running: reported from the start, its break as `brk` is known.
    Attached(Option<u64>),
}

/// Follows the traced process `program_pid` until it ends or (attached) the tracer is told to
/// let go; `known` are its threads already seen stopped. `None`: it ended before its exec.
fn follow(
    src: &dyn Source,
    program_pid: i32,
    how: Follow,
    known: HashSet<i32>,
    on_event: &mut impl FnMut(Event),
) -> Result<Option<Ending>, TraceError> {
    let mut started = how != Follow::Launched;
    let mut index = 0;
    let mut pending: HashMap<i32, Pending> = HashMap::new();
    // The program's threads that have stopped since they started (the others are new, or of
    // another process, until their first stop says); each is forgotten as it exits.
    let mut ours: HashSet<i32> = known;
    ours.insert(program_pid);
    let mut ending = None;

    // The break, as the kernel set it at exec and each brk call returned it.
    let mut brk: Option<u64> = match how {
        Follow::Attached(brk) => brk,
        Follow::Launched => None,
    };
    // Threads in a 32-bit brk call, between its entry and exit.
    let mut in_brk32: HashSet<i32> = HashSet::new();
    // Whether a 32-bit call has been reported.
    let mut compat32_seen = false;
    let snapshot = |tid: i32, brk: Option<u64>| -> Result<Option<Snapshot>, TraceError> {
        match src.snapshot(Some(tid), Depth::Light) {
            Ok(mut s) => {
                if let (None, Some(brk)) = (s.brk(), brk) {
                    s.set_brk(brk);
                }
                Ok(Some(s))
            }
            // The thread or its address space is gone (killed, exiting).
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(None),
            Err(e) => Err(TraceError::Snapshot(e)),
        }
    };

    loop {
        if how != Follow::Launched && LET_GO.load(std::sync::atomic::Ordering::Relaxed) {
            let_go_all(program_pid, &ours);
            return Ok(Some(Ending::Detached(program_pid)));
        }
        let (tid, status) = match wait_any(-1) {
            Ok(s) => s,
            Err(Errno::EINTR) => continue,
            Err(Errno::ECHILD) => break,
            Err(e) => return Err(TraceError::Ptrace("waitpid", e.into())),
        };
        let pid = Pid::from_raw(tid);
        match status {
            Wait::Syscall => {
                if let Ok(info) = ptrace::syscall_info(pid) {
                    if info.op == libc::PTRACE_SYSCALL_INFO_ENTRY {
                        // SAFETY: `op` says the entry member of the union is the valid one.
                        let entry = unsafe { info.u.entry };
                        let call = MemCall::from_x86_64(entry.nr);
                        if info.arch == AUDIT_ARCH_I386 {
                            if entry.nr == NR_BRK_I386 {
                                in_brk32.insert(tid);
                            }
                            if started && !compat32_seen {
                                compat32_seen = true;
                                on_event(Event::Compat32 { tid });
                            }
                        }
                        if let (true, AUDIT_ARCH_X86_64, Some(call)) = (started, info.arch, call) {
                            if let Some(before) = snapshot(tid, brk)? {
                                let args = entry.args[..call.arg_count()].to_vec();
                                pending.insert(tid, Pending { call, args, before });
                            }
                        }
                    } else if info.op == libc::PTRACE_SYSCALL_INFO_EXIT {
                        // SAFETY: `op` says the exit member of the union is the valid one.
                        let exit = unsafe { info.u.exit };
                        let p = pending.remove(&tid);
                        let is_brk = p.as_ref().is_some_and(|p| p.call == MemCall::Brk);
                        if (in_brk32.remove(&tid) || is_brk) && exit.is_error == 0 {
                            brk = Some(exit.sval as u64);
                        }
                        if let Some(p) = p {
                            index += 1;
                            let after = snapshot(tid, brk)?;
                            on_event(p.into_event(index, tid, Some(exit.sval), after));
                        }
                    }
                }
                resume(pid, 0);
            }
            Wait::Event(libc::PTRACE_EVENT_STOP, sig) => {
                if !ours.contains(&tid) {
                    // A task's first stop. PTRACE_O_TRACECLONE also attaches a clone()
                    // child of another thread group (no CLONE_THREAD, an exit signal other
                    // than SIGCHLD): a process of its own, which is let go.
                    match tgid(tid) {
                        Some(t) if t == program_pid => {}
                        _ => {
                            let _ = ptrace::detach(pid, None);
                            continue;
                        }
                    }
                }
                ours.insert(tid);
                if matches!(
                    sig,
                    libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
                ) {
                    // A group-stop: held until SIGCONT (or a kill) as untraced, while the
                    // tracer still hears of the thread.
                    listen(pid);
                } else {
                    // A new thread's first stop, or the end of a group-stop (SIGCONT).
                    resume(pid, 0);
                }
                continue;
            }
            Wait::Event(event, _) => {
                match event {
                    libc::PTRACE_EVENT_EXEC => {
                        started = true;
                        pending.clear();
                        in_brk32.clear();
                        brk = None;
                        if let Some(mut snap) = snapshot(tid, None)? {
                            // load_elf_binary() leaves mm->brk at mm->start_brk.
                            brk = Some(snap.brk().unwrap_or(snap.summary.start_brk));
                            if snap.brk().is_none() {
                                snap.set_brk(snap.summary.start_brk);
                            }
                            on_event(Event::Exec {
                                pid: tid,
                                source: src.name(),
                                snap,
                            });
                        }
                    }
                    libc::PTRACE_EVENT_CLONE => {
                        let new = ptrace::getevent(pid).map_or(0, |n| n as i32);
                        // Only the program's threads; another process is let go at its
                        // first stop.
                        if new > 0 && tgid(new) == Some(program_pid) {
                            on_event(Event::Thread {
                                tid: new,
                                parent: tid,
                            });
                        }
                    }
                    libc::PTRACE_EVENT_EXIT => {
                        let snap = if started { snapshot(tid, brk)? } else { None };
                        if let Some(p) = pending.remove(&tid) {
                            index += 1;
                            on_event(p.into_event(index, tid, None, snap.clone()));
                        }
                        if started {
                            on_event(Event::ThreadExit { tid, snap });
                        }
                    }
                    _ => {}
                }
                resume(pid, 0);
            }
            Wait::Signal(sig) => {
                // A signal for the program, whatever its number: deliver it. A stop signal
                // then stops the group, which comes back as PTRACE_EVENT_STOP.
                resume(pid, sig);
            }
            Wait::Exited(code) => {
                ours.remove(&tid);
                in_brk32.remove(&tid);
                flush_killed(&mut pending, tid, &mut index, on_event);
                if tid == program_pid {
                    ending = Some(Ending::Exited(code));
                }
            }
            Wait::Signaled(sig, core) => {
                ours.remove(&tid);
                in_brk32.remove(&tid);
                flush_killed(&mut pending, tid, &mut index, on_event);
                if tid == program_pid {
                    ending = Some(Ending::Signaled(sig, core));
                }
            }
            Wait::Other => {}
        }
    }

    if !started {
        return Ok(None);
    }
    ending.map(Some).ok_or_else(|| {
        TraceError::Ptrace(
            "waitpid",
            io::Error::other("the program's end was not reported"),
        )
    })
}

/// Attaches to the running process `pid` as `strace -p` does and reports each [`Event`] to
/// `on_event`, the first an [`Event::Attach`]. Returns how the process ended, or
/// [`Ending::Detached`] once `SIGINT`, `SIGTERM` or `SIGHUP` told the tracer to let go.
///
/// Every thread (`/proc/PID/task`) is seized with the options of [`run`] but
/// `PTRACE_O_EXITKILL` (the process is not the tracer's, and lives on if the tracer dies),
/// and interrupted, until no new one appears. With all of them stopped the address space is
/// read. A thread blocked in a system call was interrupted in it; the call is restarted as the
/// thread resumes, and its exit, whose entry was not seen, is not reported. procfs has no
/// `brk`: it stays unknown until the first `brk` call returns it.
pub fn attach(
    src: &dyn Source,
    pid: i32,
    mut on_event: impl FnMut(Event),
) -> Result<Ending, TraceError> {
    if pid <= 0 || !std::path::Path::new(&format!("/proc/{pid}/task")).exists() {
        return Err(TraceError::NoProcess);
    }
    if tgid(pid) != Some(pid) {
        return Err(TraceError::NoProcess);
    }
    if let Some(by) = tracer_of(pid).filter(|&t| t != 0) {
        return Err(TraceError::AlreadyTraced(by));
    }
    let options = Options::PTRACE_O_TRACESYSGOOD
        | Options::PTRACE_O_TRACECLONE
        | Options::PTRACE_O_TRACEEXEC
        | Options::PTRACE_O_TRACEEXIT;
    let mut seized: Vec<i32> = Vec::new();
    loop {
        let mut new = false;
        let tids = task_ids(pid);
        if tids.is_empty() && seized.is_empty() {
            return Err(TraceError::NoProcess);
        }
        for tid in tids {
            if seized.contains(&tid) {
                continue;
            }
            match ptrace::seize(Pid::from_raw(tid), options) {
                Ok(()) => {
                    let _ = ptrace::interrupt(Pid::from_raw(tid));
                    seized.push(tid);
                    new = true;
                }
                // The thread exited meanwhile.
                Err(Errno::ESRCH) => {}
                Err(e) if seized.is_empty() => {
                    return Err(match (e, tracer_of(pid)) {
                        (Errno::ESRCH, _) => TraceError::NoProcess,
                        (_, Some(by)) if by != 0 => TraceError::AlreadyTraced(by),
                        (Errno::EPERM, _) => TraceError::NotAllowed(yama_scope()),
                        (e, _) => TraceError::Untraceable(e.into()),
                    });
                }
                // Attached already by PTRACE_O_TRACECLONE as another thread started it.
                Err(_) => {}
            }
        }
        if !new {
            break;
        }
    }
    let _guard = LetGo::install(pid);

    // Each thread's first stop: the interrupt, a group-stop it was in, or a signal or event
    // that came first; how it is resumed once the address space is read.
    let mut stopped: HashMap<i32, Wait> = HashMap::new();
    for &tid in &seized {
        loop {
            match wait_any(tid) {
                Ok((_, Wait::Exited(_) | Wait::Signaled(..))) | Err(Errno::ECHILD) => break,
                Ok((_, Wait::Other)) | Err(Errno::EINTR) => {}
                Ok((_, w)) => {
                    stopped.insert(tid, w);
                    break;
                }
                Err(e) => return Err(TraceError::Ptrace("waitpid", e.into())),
            }
        }
    }
    let at = if stopped.contains_key(&pid) {
        pid
    } else {
        match stopped.keys().next() {
            Some(&t) => t,
            None => return Err(TraceError::NoProcess),
        }
    };
    let mut snap = match src.snapshot(Some(at), Depth::Light) {
        Ok(s) => s,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Err(TraceError::NoProcess),
        Err(e) => return Err(TraceError::Snapshot(e)),
    };
    let brk = snap.brk();
    if brk.is_none() {
        for (field, why) in &mut snap.unknown {
            if *field == crate::snapshot::Field::Brk {
                *why = BRK_UNKNOWN_AT_ATTACH;
            }
        }
    }
    on_event(Event::Attach {
        pid,
        source: src.name(),
        threads: stopped.len(),
        snap,
    });
    for (&tid, w) in &stopped {
        let p = Pid::from_raw(tid);
        match *w {
            Wait::Event(
                libc::PTRACE_EVENT_STOP,
                libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU,
            ) => listen(p),
            Wait::Signal(sig) => resume(p, sig),
            _ => resume(p, 0),
        }
    }
    let known = stopped.keys().copied().collect();
    let ending = follow(src, pid, Follow::Attached(brk), known, &mut on_event)?;
    ending.ok_or(TraceError::NoProcess)
}

/// Why `brk` is unknown in a snapshot procfs gave at attach.
pub const BRK_UNKNOWN_AT_ATTACH: &str = "procfs shows only start_brk (/proc/PID/stat field 47), \
     and the tracer attached to a running process knows brk only once a brk call returns it; \
     the module gives it exactly";

/// The threads of process `pid` (`/proc/PID/task`).
fn task_ids(pid: i32) -> Vec<i32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `TracerPid` in `/proc/PID/status`: 0 if none.
fn tracer_of(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))?
        .trim()
        .parse()
        .ok()
}

/// Yama's `ptrace_scope`, if Yama is there and restricts `ptrace` (above 0).
fn yama_scope() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|&v| v > 0)
}

/// Set by `SIGINT`, `SIGTERM` or `SIGHUP` while attached: let go of the process.
static LET_GO: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The process attached to, for [`let_go_signal`].
static ATTACHED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn let_go_signal(_: i32) {
    LET_GO.store(true, std::sync::atomic::Ordering::Relaxed);
    let pid = ATTACHED.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // A stop of the leader ends the tracer's waitpid even if the signal came just before
        // it blocked, and an idle process would report nothing else.
        // SAFETY: PTRACE_INTERRUPT takes no pointer; ptrace is a system call, safe here.
        unsafe {
            libc::ptrace(
                libc::PTRACE_INTERRUPT,
                pid,
                std::ptr::null_mut::<libc::c_void>(),
                0 as libc::c_long,
            )
        };
    }
}

/// While attached: `SIGINT`, `SIGTERM` and `SIGHUP` make the tracer let go of the process
/// (not forwarded: it is not the tracer's) and write its report. Installed without
/// `SA_RESTART`, so that the signal ends the tracer's `waitpid`. Dropping it restores the
/// dispositions.
struct LetGo {
    old: Vec<(i32, libc::sigaction)>,
}

impl LetGo {
    fn install(pid: i32) -> Self {
        LET_GO.store(false, std::sync::atomic::Ordering::Relaxed);
        ATTACHED.store(pid, std::sync::atomic::Ordering::Relaxed);
        let mut old = Vec::new();
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: Installs a handler that only stores to an atomic; both structs live.
            unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = let_go_signal as *const () as libc::sighandler_t;
                libc::sigemptyset(&mut act.sa_mask);
                let mut was: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &act, &mut was) == 0 {
                    old.push((sig, was));
                }
            }
        }
        Self { old }
    }
}

impl Drop for LetGo {
    fn drop(&mut self) {
        for (sig, was) in &self.old {
            // SAFETY: Restores a disposition sigaction reported.
            unsafe { libc::sigaction(*sig, was, std::ptr::null_mut()) };
        }
        ATTACHED.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Lets go of every thread of process `pid` the tracer holds (`ours`, and any it attached
/// that has not stopped yet): interrupts it, and detaches at its next stop, delivering the
/// signal of a signal-delivery-stop; a thread in a group-stop stays stopped.
fn let_go_all(pid: i32, ours: &HashSet<i32>) {
    let mut tids: Vec<i32> = task_ids(pid);
    tids.extend(ours.iter().copied());
    tids.sort_unstable();
    tids.dedup();
    for tid in tids {
        let p = Pid::from_raw(tid);
        if ptrace::interrupt(p).is_err() {
            // Not ours (ESRCH), or gone.
            continue;
        }
        loop {
            let deliver = match wait_any(tid) {
                Ok((_, Wait::Signal(sig))) => sig,
                Ok((_, Wait::Syscall | Wait::Event(..))) => 0,
                Ok((_, Wait::Other)) | Err(Errno::EINTR) => continue,
                Ok((_, Wait::Exited(_) | Wait::Signaled(..))) | Err(_) => break,
            };
            // SAFETY: PTRACE_DETACH takes no pointer; the data argument is the signal.
            unsafe {
                libc::ptrace(
                    libc::PTRACE_DETACH,
                    tid,
                    std::ptr::null_mut::<libc::c_void>(),
                    deliver as libc::c_long,
                );
            }
            break;
        }
    }
}

/// What the child writes to the error pipe before it exits: the step that failed (here
/// `execvp`; `PTRACE_SEIZE` fails in the tracer) and its errno.
const STAGE_EXEC: i32 = 2;

/// The error the child reported through the pipe `from`, which it closed (by exiting or by
/// exec) before the tracer asks.
fn child_error(from: &mut File) -> TraceError {
    let mut bytes = [0u8; 8];
    if from.read_exact(&mut bytes).is_err() {
        return TraceError::Ptrace(
            "waitpid",
            io::Error::other("the program ended before it was traced"),
        );
    }
    let stage = i32::from_ne_bytes(bytes[..4].try_into().unwrap_or_default());
    let err = io::Error::from_raw_os_error(i32::from_ne_bytes(
        bytes[4..].try_into().unwrap_or_default(),
    ));
    match stage {
        STAGE_EXEC => TraceError::Exec(err),
        _ => TraceError::Untraceable(err),
    }
}

/// In the child before it execs: every signal's disposition back to the default and none
/// blocked, as the program would start from a shell, rather than what this process set (Rust
/// ignores `SIGPIPE`, the tracer `SIGINT` and `SIGQUIT`) and exec keeps.
fn default_signals() {
    for sig in 1..libc::SIGRTMAX() + 1 {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: SIG_DFL installs no handler; an invalid number only fails.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
    // SAFETY: A zeroed then emptied set, passed by pointer to sigprocmask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// The thread group (process) task `tid` belongs to: `Tgid` in `/proc/TID/status`.
fn tgid(tid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))?
        .trim()
        .parse()
        .ok()
}

/// Keeps a thread in its group-stop (`PTRACE_LISTEN`) until `SIGCONT` or a kill wakes it, as
/// it would stay untraced; it stops again (PTRACE_EVENT_STOP) as it wakes.
fn listen(pid: Pid) {
    // SAFETY: PTRACE_LISTEN takes no pointer.
    unsafe {
        libc::ptrace(
            libc::PTRACE_LISTEN,
            pid.as_raw(),
            std::ptr::null_mut::<libc::c_void>(),
            0 as libc::c_long,
        );
    }
}

/// While the program runs: `SIGINT` and `SIGQUIT` ignored (the terminal sends them to the
/// program too, in the same process group), `SIGTERM` and `SIGHUP` forwarded to the program;
/// the tracer writes its report when the program ends. Dropping it restores the dispositions.
struct Forward {
    old: Vec<(i32, libc::sigaction)>,
}

/// The program's pid, for the forwarding handler.
static PROGRAM: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward(sig: i32) {
    let pid = PROGRAM.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe and takes no pointer.
        unsafe { libc::kill(pid, sig) };
    }
}

impl Forward {
    fn install(program: i32) -> Self {
        PROGRAM.store(program, std::sync::atomic::Ordering::Relaxed);
        let mut old = Vec::new();
        for (sig, handler) in [
            (libc::SIGINT, libc::SIG_IGN),
            (libc::SIGQUIT, libc::SIG_IGN),
            (libc::SIGTERM, forward as *const () as libc::sighandler_t),
            (libc::SIGHUP, forward as *const () as libc::sighandler_t),
        ] {
            // SAFETY: Installs SIG_IGN or a handler that only calls kill; both structs live.
            unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = handler;
                act.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut act.sa_mask);
                let mut was: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &act, &mut was) == 0 {
                    old.push((sig, was));
                }
            }
        }
        Self { old }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        for (sig, was) in &self.old {
            // SAFETY: Restores a disposition sigaction reported.
            unsafe { libc::sigaction(*sig, was, std::ptr::null_mut()) };
        }
        PROGRAM.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Reports the call a thread was in when it died, with no result.
fn flush_killed(
    pending: &mut HashMap<i32, Pending>,
    tid: i32,
    index: &mut usize,
    on_event: &mut impl FnMut(Event),
) {
    if let Some(p) = pending.remove(&tid) {
        *index += 1;
        on_event(p.into_event(*index, tid, None, None));
    }
}

/// Lets a stopped thread run to its next system call stop, delivering signal `sig` (any
/// number, real-time ones included; 0 for none). A thread that died meanwhile (`ESRCH`) is
/// reported by `waitpid`.
fn resume(pid: Pid, sig: i32) {
    // SAFETY: PTRACE_SYSCALL takes no pointer; the data argument is the signal number.
    unsafe {
        libc::ptrace(
            libc::PTRACE_SYSCALL,
            pid.as_raw(),
            std::ptr::null_mut::<libc::c_void>(),
            sig as libc::c_long,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_decode_every_signal() {
        // What the kernel stores (kernel/exit.c, kernel/signal.c): exit code << 8; the
        // signal, | 0x80 with a core dump; 0x7f | stop signal << 8 | event << 16.
        assert_eq!(Wait::decode(3 << 8), Wait::Exited(3));
        assert_eq!(Wait::decode(libc::SIGKILL), Wait::Signaled(9, false));
        assert_eq!(Wait::decode(libc::SIGABRT | 0x80), Wait::Signaled(6, true));
        assert_eq!(Wait::decode(40), Wait::Signaled(40, false));
        assert_eq!(Wait::decode(0x7f | (40 << 8)), Wait::Signal(40));
        assert_eq!(Wait::decode(0x7f | (64 << 8)), Wait::Signal(64));
        assert_eq!(
            Wait::decode(0x7f | ((libc::SIGTRAP | 0x80) << 8)),
            Wait::Syscall
        );
        assert_eq!(
            Wait::decode(0x7f | (libc::SIGTRAP << 8) | (libc::PTRACE_EVENT_EXEC << 16)),
            Wait::Event(libc::PTRACE_EVENT_EXEC, libc::SIGTRAP)
        );
        assert_eq!(
            Wait::decode(0x7f | (libc::SIGTSTP << 8) | (libc::PTRACE_EVENT_STOP << 16)),
            Wait::Event(libc::PTRACE_EVENT_STOP, libc::SIGTSTP)
        );
        assert_eq!(Wait::decode(0xffff), Wait::Other);
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(libc::SIGABRT), "SIGABRT");
        assert_eq!(signal_name(libc::SIGRTMIN()), "SIGRTMIN");
        assert_eq!(signal_name(libc::SIGRTMIN() + 3), "SIGRTMIN+3");
        assert_eq!(signal_name(99), "99");
    }
}
