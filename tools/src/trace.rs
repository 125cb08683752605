// SPDX-License-Identifier: GPL-2.0

//! The tracer of `mmscope trace`: runs a program under `ptrace` (or attaches to a running
//! one), stops it at the entry and exit of each memory system call, in every thread it starts
//! (and with `-f` in every process), and reads its address space through a [`Source`] at both
//! stops.
//!
//! The module lets a tracer read its tracee (`MMSCOPE_F_PID`, ABI version 4), and procfs lets
//! a process of the same user read it, so this works without privileges. Each process has its
//! own address space, break and calls; a forked child's starts as its parent's copy.
//!
//! `brk` is exact from either source. The tracer follows it: at `execve` the kernel sets
//! `mm->brk = mm->start_brk` (`load_elf_binary()` in `fs/binfmt_elf.c`), and `brk(2)` returns
//! the break it leaves, also when it refuses to move it (`sys_brk()` in `mm/mmap.c`: `brk`, or
//! `origbrk` after `out:`; only `-EINTR` is not a break). A source that cannot read `brk`
//! (procfs) gets this value in every snapshot. Not followed: `prctl(PR_SET_MM_BRK)`, which
//! only a checkpoint-restore tool makes. One break is kept, the traced process's: its threads
//! share it, and the mmap lock orders their `brk` calls, but when two threads' calls overlap,
//! their exit stops may reach the tracer in the other order, and for the instant between them
//! the break shown is the earlier one. A child sharing its parent's address space until it
//! execs (`vfork`, `posix_spawn`'s `CLONE_VM | CLONE_VFORK`) moves the parent's break, which
//! the tracer does not carry back to the parent: glibc's `posix_spawn` makes no `brk` call
//! in between.

use crate::faults::{Change, Faults, When};
use crate::kgraph::{Graphs, KernelError, KernelGraph};
use crate::snapshot::Snapshot;
use crate::source::{Depth, Source};
use crate::stack::{Frame, Stacks};
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
use std::time::{Duration, Instant};

/// `AUDIT_ARCH_X86_64`: the system call table the numbers in [`MemCall`] belong to.
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386`: the 32-bit table, whose `brk` the tracer follows too.
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// `__NR_brk` in the 32-bit table.
const NR_BRK_I386: u64 = 45;

/// One memory system call and its effect.
#[derive(Clone, Debug)]
pub struct Step {
    /// 1 for the first call after `exec`, and so on (across every process followed).
    pub index: usize,
    /// The process that made it.
    pub pid: i32,
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
    /// The caller's stack at the call's entry, innermost frame first (`--stacks`).
    pub stack: Option<Vec<Frame>>,
    /// `--kernel`: the kernel functions the call ran (`calls`), and the page faults its
    /// thread took since its previous stop (the first touches between the calls).
    pub kernel: Option<Graphs>,
    /// When the call was entered, since the trace began.
    pub time: Duration,
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
    /// A process followed started a thread.
    Thread {
        /// The process.
        pid: i32,
        /// The new thread.
        tid: i32,
        /// The thread that started it.
        parent: i32,
    },
    /// A process followed (`-f`) started another: its address space as it starts.
    Fork {
        /// The new process.
        pid: i32,
        /// The process that started it.
        parent: i32,
        /// The thread that started it.
        tid: i32,
        /// How.
        how: Spawn,
        /// Whether it shares its parent's address space (`CLONE_VM`: `vfork`,
        /// `posix_spawn`) rather than having a copy.
        shared: bool,
        /// Its address space: a copy of its parent's, or the parent's own.
        snap: Snapshot,
    },
    /// A process followed (`-f`) may not be read any more (it made itself non-dumpable, or
    /// changed its credentials): it is not shown from here on.
    Unreadable {
        /// The process.
        pid: i32,
    },
    /// A process followed (`-f`) other than the program ended: how.
    End {
        /// The process.
        pid: i32,
        /// How it ended.
        ending: Ending,
    },
    /// A memory system call returned (or its thread was killed during it).
    Call(Box<Step>),
    /// A thread made a 32-bit system call (`int 0x80`); reported once per trace: those calls
    /// are not traced.
    Compat32 {
        /// The thread.
        tid: i32,
    },
    /// `--faults`: resident anonymous memory changed, by the code that first touched it.
    Resident(Box<Change>),
    /// A thread is exiting; the address space as it leaves, while it still exists.
    ThreadExit {
        /// Its process.
        pid: i32,
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
    /// `--faults`: the page-fault event could not be opened (`perf_event_open`).
    Faults(io::Error),
    /// `--kernel`: the function-graph tracer could not be started.
    Kernel(KernelError),
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
            Self::Faults(e) => write!(f, "recording page faults: {e}"),
            Self::Kernel(e) => write!(f, "tracing the kernel's functions: {e}"),
        }
    }
}

/// The call a thread is in, between its entry and exit stops.
struct Pending {
    call: MemCall,
    args: Vec<u64>,
    before: Snapshot,
    stack: Option<Vec<Frame>>,
    /// `--kernel`: the thread's graphs since its previous stop.
    kernel: Option<Graphs>,
    /// When it was entered, since the trace began.
    time: Duration,
}

impl Pending {
    /// The event for this call, the `index`th, made by thread `tid` of process `pid`: it
    /// returned `ret` (`None`: the thread was killed during it), leaving the address space
    /// `after`.
    fn into_event(
        self,
        index: usize,
        pid: i32,
        tid: i32,
        ret: Option<i64>,
        after: Option<Snapshot>,
    ) -> Event {
        Event::Call(Box::new(Step {
            index,
            pid,
            tid,
            call: self.call,
            args: self.args,
            ret,
            before: self.before,
            after,
            stack: self.stack,
            // The call's own graph comes at its exit.
            kernel: self.kernel.map(|k| Graphs {
                calls: Vec::new(),
                ..k
            }),
            time: self.time,
        }))
    }
}

/// Runs `argv` under the tracer and reports each [`Event`] to `on_event` as it happens; with
/// `follow_forks` (`-f`), in the processes it starts too. Returns how the program ended.
///
/// With `follow_forks`, the program runs under a seccomp filter that stops it only at the
/// memory system calls (as `strace -f --seccomp-bpf` does), where the kernel has seccomp
/// filters: with `no_new_privs` unless this process may install a filter without it
/// (`CAP_SYS_ADMIN`); `ptrace` already keeps a setuid program from gaining privileges, but
/// `no_new_privs` also keeps an LSM from changing its domain at exec. The filter is inherited
/// by every process the program starts, and without a tracer its memory calls would fail with
/// `ENOSYS`: hence only with `follow_forks`, which traces them all and ends when the last has
/// ended, as `strace -f` does. (A child made with `CLONE_UNTRACED`, which a tracer cannot
/// follow, would be left so.) Without it the program stops at every system call, and the
/// trace ends with the program.
pub fn run(
    src: &dyn Source,
    argv: &[OsString],
    opts: &TraceOptions,
    mut on_event: impl FnMut(Event),
) -> Result<Ending, TraceError> {
    let follow_forks = opts.follow_forks;
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
    let mut filter = memory_call_filter();

    // SAFETY: This process is single-threaded when it traces; the child only calls signal,
    // sigprocmask, close, read, prctl, seccomp, execvp, write and _exit before it execs or
    // exits.
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
            if follow_forks {
                install_filter(&mut filter);
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
    // is the exec, from which on each memory call stops (each system call, without the
    // filter).
    let mut options = Options::PTRACE_O_TRACESYSGOOD
        | Options::PTRACE_O_TRACECLONE
        | Options::PTRACE_O_TRACEEXEC
        | Options::PTRACE_O_TRACEEXIT
        | Options::PTRACE_O_TRACESECCOMP
        | Options::PTRACE_O_EXITKILL;
    if follow_forks {
        options |= Options::PTRACE_O_TRACEFORK | Options::PTRACE_O_TRACEVFORK;
    }
    // A child that cannot be traced as asked is not left behind.
    let give_up = |e: TraceError| {
        let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
        let _ = wait_any(child.as_raw());
        e
    };
    if let Err(e) = ptrace::seize(child, options) {
        return Err(give_up(TraceError::Untraceable(e.into())));
    }
    // The page faults of the program from its exec on, and of every task it starts.
    let faults = match opts.faults {
        true => Some(
            Faults::open(child.as_raw(), &[], true, follow_forks, fault_depth(opts))
                .map_err(|e| give_up(TraceError::Faults(e)))?,
        ),
        false => None,
    };
    // The kernel's functions, from the program's exec on.
    let kernel = (opts.kernel_depth)
        .map(|depth| {
            KernelGraph::open(&[child.as_raw()], follow_forks, &kernel_entries(), depth)
                .map_err(|e| give_up(TraceError::Kernel(e)))
        })
        .transpose()?;
    drop(go_wr);
    let _guard = Forward::install(child.as_raw());

    let program = child.as_raw();
    let mut tracer = Tracer::new(src, &mut on_event, program, Start::Launched, opts);
    tracer.faults = faults;
    tracer.kernel = kernel;
    match tracer.run(false)? {
        (true, Some(ending)) => Ok(ending),
        // No exec was seen: the child says why (execvp failed), or it says nothing because
        // it was killed (its exec under way, or before it: a SIGKILL during exec ends the
        // task before its exec event), which is how it ended, as a shell would report it.
        (_, ending) => match (child_error(&mut exec_error), ending) {
            (None, Some(ending)) => Ok(ending),
            (Some(e), _) => Err(e),
            (None, None) => Err(TraceError::Ptrace(
                "waitpid",
                io::Error::other("the program ended before it was traced"),
            )),
        },
    }
}

/// What `mmscope trace` is asked to follow and record.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceOptions {
    /// `-f`: the processes the program starts, too.
    pub follow_forks: bool,
    /// `--stacks`: the caller's stack at each memory call, at most this many frames.
    pub stack_depth: Option<usize>,
    /// `--faults`: every page fault, and resident memory by the code that first touched it.
    pub faults: bool,
    /// `--kernel`: the kernel functions each memory call ran, this many levels deep.
    pub kernel_depth: Option<usize>,
}

/// The kernel functions the graphs of the traced calls start at: each call's system call
/// entry on x86-64 (`SYSCALL_DEFINEn` makes `__x64_sys_NAME`).
fn kernel_entries() -> Vec<String> {
    crate::syscalls::ALL
        .iter()
        .map(|c| format!("__x64_sys_{}", c.name()))
        .collect()
}

/// How many frames a fault's stack has at most without `--stacks --stack-depth`.
const FAULT_DEPTH: usize = 32;

/// How many frames a fault's stack has at most.
fn fault_depth(opts: &TraceOptions) -> usize {
    opts.stack_depth.unwrap_or(FAULT_DEPTH)
}

/// How the tracer came to the program.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    /// Started by the tracer, seized before it execs: nothing is reported before the exec.
    Launched,
    /// Attached to while running: reported from the start, its break as `brk` is known.
    Attached(Option<u64>),
}

/// How a process the tracer follows came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spawn {
    /// `fork()`, or a `clone()` like it (`PTRACE_EVENT_FORK`): a copy of the parent's address
    /// space.
    Fork,
    /// `vfork()`, or a `clone()` with `CLONE_VFORK` (`posix_spawn`): the parent's address space
    /// itself, shared until the child execs or exits, while the parent waits.
    Vfork,
    /// Another `clone()` without `CLONE_THREAD` (an exit signal other than `SIGCHLD`): a copy
    /// of the parent's address space, or with `CLONE_VM` the same one.
    Clone,
}

impl Spawn {
    /// Its name, as the call's.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fork => "fork",
            Self::Vfork => "vfork",
            Self::Clone => "clone",
        }
    }
}

/// A process the tracer follows: the program, and its descendants.
struct Proc {
    /// Its break, as the kernel set it at exec and each brk call returned it (a child starts
    /// with its parent's: `fork` copies `mm->brk`).
    brk: Option<u64>,
    /// Whether it is reported from now on: after the program's exec, until it ends.
    started: bool,
    /// Its last reading (of its current program), whose VMAs the next reading may take.
    last: Option<Snapshot>,
    /// Whether its events are reported: the program's, and with `-f` its descendants', but
    /// not a process that cannot be read, or one adopted without its fork event.
    shown: bool,
}

/// The tracing loop's state: every process and thread it holds, and the calls in progress.
struct Tracer<'a, F: FnMut(Event)> {
    src: &'a dyn Source,
    on_event: F,
    /// The program: the process started or attached to; its end ends the trace.
    program: i32,
    /// `-f`: descendants are traced and reported; otherwise let go at their first stop.
    follow_forks: bool,
    /// The program runs under the tracer's seccomp filter: its threads stop only at the
    /// calls the filter names (`PTRACE_EVENT_SECCOMP`) and at those calls' exits.
    seccomp: bool,
    /// The number of the last call reported.
    index: usize,
    /// The processes followed, by pid.
    procs: HashMap<i32, Proc>,
    /// Every task held and stopped once, with its process; forgotten as it exits.
    tasks: HashMap<i32, i32>,
    /// Tasks whose first stop came before their parent's clone or fork event, with the process
    /// that started them (`PPid`): held stopped until it comes and says whose they are, or
    /// until that process is gone (a fatal signal can keep the event from coming), when they
    /// are let run, traced but not shown.
    early: HashMap<i32, i32>,
    /// The calls threads are in, between their entry and exit stops.
    pending: HashMap<i32, Pending>,
    /// Threads in a 32-bit brk call, between its entry and exit.
    in_brk32: HashSet<i32>,
    /// Whether a 32-bit call has been reported.
    compat32_seen: bool,
    /// Whether the program has exec'd (or was attached to): it is reported.
    program_started: bool,
    /// How the program ended.
    ending: Option<Ending>,
    /// `--stacks` or `--faults`: the unwinder and symbolizer.
    stacks: Option<Stacks>,
    /// `--stacks`: each call gets its stack.
    call_stacks: bool,
    /// `--faults`: the page faults, and who made each page resident.
    faults: Option<Faults>,
    /// `--kernel`: the function-graph tracer.
    kernel: Option<KernelGraph>,
    /// Threads stopped at their exit (`PTRACE_EVENT_EXIT`), until they are gone.
    exiting: HashSet<i32>,
    /// When the trace began: the steps' times count from here.
    began: Instant,
}

impl<'a, F: FnMut(Event)> Tracer<'a, F> {
    /// A tracer of `program`, which it came to as `start` says, its only task held so far,
    /// doing what `opts` ask.
    fn new(
        src: &'a dyn Source,
        on_event: F,
        program: i32,
        start: Start,
        opts: &TraceOptions,
    ) -> Self {
        let (brk, started) = match start {
            Start::Launched => (None, false),
            Start::Attached(brk) => (brk, true),
        };
        let proc = Proc {
            brk,
            started,
            shown: true,
            last: None,
        };
        Self {
            src,
            on_event,
            program,
            follow_forks: opts.follow_forks,
            seccomp: false,
            index: 0,
            procs: HashMap::from([(program, proc)]),
            tasks: HashMap::from([(program, program)]),
            early: HashMap::new(),
            pending: HashMap::new(),
            in_brk32: HashSet::new(),
            compat32_seen: false,
            program_started: started,
            ending: None,
            stacks: (opts.stack_depth.is_some() || opts.faults)
                .then(|| Stacks::new(fault_depth(opts))),
            call_stacks: opts.stack_depth.is_some(),
            faults: None,
            kernel: None,
            exiting: HashSet::new(),
            began: Instant::now(),
        }
    }

    /// `--faults`: settles process `pid` (thread `tid` stopped, its address space `snap`) as
    /// `when` says, and reports what changed.
    fn settle(
        &mut self,
        pid: i32,
        tid: i32,
        snap: &Snapshot,
        when: When,
        call: Option<(&[u64], i64, Option<u64>)>,
    ) {
        if let (Some(f), Some(s)) = (self.faults.as_mut(), self.stacks.as_mut()) {
            if let Some(change) = f.settle(pid, tid, snap, when, call, s) {
                (self.on_event)(Event::Resident(Box::new(change)));
            }
        }
    }

    /// The address space `tid`, a thread of process `pid`, sees, with the process's break
    /// where the source cannot read it; its VMAs taken from the process's last reading where
    /// the source can tell they have not changed since. `None`: the thread or its address
    /// space is gone (killed, exiting).
    fn snapshot(&mut self, pid: i32, tid: i32) -> Result<Option<Snapshot>, TraceError> {
        let proc = self.procs.get(&pid);
        let brk = proc.and_then(|p| p.brk);
        let mut snap = Snapshot::default();
        let read = match proc.and_then(|p| p.last.as_ref()) {
            Some(prev) => self
                .src
                .read_after(Some(tid), Depth::Light, prev, &mut snap),
            None => self.src.read(Some(tid), Depth::Light, &mut snap),
        };
        match read {
            Ok(()) => {
                if let (None, Some(brk)) = (snap.brk(), brk) {
                    snap.set_brk(brk);
                }
                if let Some(proc) = self.procs.get_mut(&pid) {
                    proc.last = Some(snap.clone());
                }
                Ok(Some(snap))
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(None),
            // A process the program started that may not be read any more (it made itself
            // non-dumpable, or changed credentials, as ssh-agent does): not shown from now
            // on, while it runs on traced. The program itself being unreadable is an error.
            Err(e)
                if pid != self.program
                    && matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) =>
            {
                if let Some(proc) = self.procs.get_mut(&pid).filter(|p| p.shown) {
                    proc.shown = false;
                    (self.on_event)(Event::Unreadable { pid });
                }
                Ok(None)
            }
            Err(e) => Err(TraceError::Snapshot(e)),
        }
    }

    /// The process of task `tid`, if it is reported.
    fn shown(&self, tid: i32) -> Option<i32> {
        let pid = *self.tasks.get(&tid)?;
        self.procs
            .get(&pid)
            .filter(|p| p.shown && p.started)
            .map(|_| pid)
    }

    /// Lets stopped task `tid` run, delivering signal `sig` (any number, real-time ones
    /// included; 0 for none): to its next system call stop, or under the seccomp filter to
    /// the next call the filter names, unless it is in a call whose exit the tracer awaits.
    /// A task that died meanwhile (`ESRCH`) is reported by `waitpid`.
    fn resume(&self, tid: i32, sig: i32) {
        let request =
            if !self.seccomp || self.pending.contains_key(&tid) || self.in_brk32.contains(&tid) {
                libc::PTRACE_SYSCALL
            } else {
                libc::PTRACE_CONT
            };
        // SAFETY: PTRACE_SYSCALL and PTRACE_CONT take no pointer; the data argument is the
        // signal number.
        unsafe {
            libc::ptrace(
                request,
                tid,
                std::ptr::null_mut::<libc::c_void>(),
                sig as libc::c_long,
            );
        }
    }

    /// A system call's entry (a syscall-entry stop, or a seccomp stop): `arch`, `nr`, `args`.
    fn entry(&mut self, tid: i32, arch: u32, nr: u64, args: &[u64; 6]) -> Result<(), TraceError> {
        let Some(pid) = self.shown(tid) else {
            return Ok(());
        };
        if arch == AUDIT_ARCH_I386 {
            if nr == NR_BRK_I386 {
                self.in_brk32.insert(tid);
            }
            if !self.compat32_seen {
                self.compat32_seen = true;
                (self.on_event)(Event::Compat32 { tid });
            }
            return Ok(());
        }
        let Some(call) = MemCall::from_x86_64(nr).filter(|_| arch == AUDIT_ARCH_X86_64) else {
            return Ok(());
        };
        if let Some(before) = self.snapshot(pid, tid)? {
            let args = args[..call.arg_count()].to_vec();
            self.settle(pid, tid, &before, When::Before, None);
            let stack = (self.stacks.as_mut())
                .filter(|_| self.call_stacks)
                .map(|s| s.stack(pid, tid, &before.vmas));
            let kernel = self.kernel.as_mut().map(|k| {
                k.drain();
                k.take(tid)
            });
            self.pending.insert(
                tid,
                Pending {
                    call,
                    args,
                    before,
                    stack,
                    kernel,
                    time: self.began.elapsed(),
                },
            );
        }
        Ok(())
    }

    /// A system call's exit: its result `sval`, `is_error`.
    fn exit(&mut self, tid: i32, sval: i64, is_error: bool) -> Result<(), TraceError> {
        let p = self.pending.remove(&tid);
        let brk32 = self.in_brk32.remove(&tid);
        let Some(pid) = self.tasks.get(&tid).copied() else {
            return Ok(());
        };
        let is_brk = p.as_ref().is_some_and(|p| p.call == MemCall::Brk);
        if (brk32 || is_brk) && !is_error {
            if let Some(proc) = self.procs.get_mut(&pid) {
                proc.brk = Some(sval as u64);
            }
        }
        if let Some(p) = p {
            self.index += 1;
            let after = self.snapshot(pid, tid)?;
            // `--faults` settles after the event has taken the reading: a copy, only then.
            let settle = (after.as_ref())
                .filter(|_| self.faults.is_some())
                .map(|a| (a.clone(), p.call, p.args.clone(), p.before.brk()));
            let mut event = p.into_event(self.index, pid, tid, Some(sval), after);
            if let (Some(k), Event::Call(step)) = (self.kernel.as_mut(), &mut event) {
                // The call's graph is complete: its thread has left the kernel's function.
                k.drain();
                if let Some(ks) = step.kernel.as_mut() {
                    ks.calls = k.take_calls(tid);
                    ks.lost += k.take_lost();
                }
            }
            (self.on_event)(event);
            if let Some((after, call, args, brk)) = settle {
                self.settle(
                    pid,
                    tid,
                    &after,
                    When::After(call),
                    Some((&args, sval, brk)),
                );
            }
        }
        Ok(())
    }

    /// A task's first stop, or the end of a group-stop: `sig` is the stop's signal.
    fn stopped(&mut self, tid: i32, sig: i32) {
        if !self.tasks.contains_key(&tid) {
            // A new task whose first stop came before its parent's clone or fork event
            // (which is allowed to come later), or one of a process that is not followed.
            match tgid(tid) {
                Some(t) if self.procs.contains_key(&t) => {
                    self.tasks.insert(tid, t);
                }
                _ if self.follow_forks => {
                    let parent = status_number(tid, "PPid").map_or(0, |p| p as i32);
                    self.early.insert(tid, parent);
                    return;
                }
                _ => {
                    let _ = ptrace::detach(Pid::from_raw(tid), None);
                    return;
                }
            }
        }
        if matches!(
            sig,
            libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
        ) {
            // A group-stop: held until SIGCONT (or a kill) as untraced, while the tracer
            // still hears of the thread.
            listen(Pid::from_raw(tid));
        } else {
            // A new task's first stop, or the end of a group-stop (SIGCONT).
            self.resume(tid, 0);
        }
    }

    /// Task `tid` started task `new` (`event`: `PTRACE_EVENT_CLONE`, `_FORK` or `_VFORK`).
    fn spawned(&mut self, tid: i32, new: i32, event: i32) -> Result<(), TraceError> {
        let was_early = self.early.remove(&new).is_some();
        let result = self.spawned_known(tid, new, event);
        if was_early {
            // Whose it is is known now: resumed, or let go if it is not followed.
            self.stopped(new, 0);
        }
        result
    }

    /// [`Tracer::spawned`], `new` not held any more.
    fn spawned_known(&mut self, tid: i32, new: i32, event: i32) -> Result<(), TraceError> {
        let Some(&pid) = self.tasks.get(&tid) else {
            return Ok(());
        };
        if new <= 0 {
            return Ok(());
        }
        let flags = clone_flags(tid);
        let thread = match flags {
            Some(f) => f & libc::CLONE_THREAD as u64 != 0,
            None => event == libc::PTRACE_EVENT_CLONE && tgid(new) == Some(pid),
        };
        if thread {
            self.tasks.insert(new, pid);
            if let Some(k) = self.kernel.as_mut() {
                k.follow(new);
            }
            if self.shown(tid).is_some() {
                (self.on_event)(Event::Thread {
                    pid,
                    tid: new,
                    parent: tid,
                });
            }
        } else if self.follow_forks {
            let Some(parent) = self.procs.get(&pid) else {
                return Ok(());
            };
            let child = Proc {
                brk: parent.brk,
                started: parent.started,
                shown: parent.shown,
                last: None,
            };
            let shown = child.shown && child.started;
            self.procs.insert(new, child);
            self.tasks.insert(new, new);
            if let Some(k) = self.kernel.as_mut() {
                k.follow(new);
            }
            if shown {
                let how = match event {
                    libc::PTRACE_EVENT_VFORK => Spawn::Vfork,
                    libc::PTRACE_EVENT_CLONE => Spawn::Clone,
                    _ => Spawn::Fork,
                };
                let shared = flags.is_some_and(|f| f & libc::CLONE_VM as u64 != 0);
                let copied = match (self.faults.as_mut(), self.stacks.as_mut()) {
                    (Some(f), Some(s)) => f.fork(pid, new, shared, s),
                    _ => None,
                };
                if let Some(snap) = self.snapshot(new, new)? {
                    let start = snap.clone();
                    (self.on_event)(Event::Fork {
                        pid: new,
                        parent: pid,
                        tid,
                        how,
                        shared,
                        snap,
                    });
                    if let Some(change) = copied {
                        (self.on_event)(Event::Resident(Box::new(change)));
                    }
                    self.settle(new, new, &start, When::Start, None);
                }
            }
        } else {
            // Not followed: let go at its first stop, or now if that came first.
            self.tasks.remove(&new);
        }
        Ok(())
    }

    /// Task `tid` is in its `execve`'s exit, a new program in its process.
    fn exec(&mut self, tid: i32) -> Result<(), TraceError> {
        let pid = self.tasks.get(&tid).copied().unwrap_or(tid);
        self.adopt_early(pid);
        // The thread that called execve had another id unless it led the process.
        if let Ok(former) = ptrace::getevent(Pid::from_raw(tid)) {
            if former as i32 != tid {
                self.tasks.remove(&(former as i32));
            }
        }
        self.tasks.insert(tid, pid);
        if pid == self.program {
            self.program_started = true;
        }
        if pid == self.program && self.procs.get(&pid).is_some_and(|p| !p.started) {
            // The program's own exec: is it under the tracer's filter (one more than this
            // process has)? Only with -f does it get one.
            self.seccomp = self.follow_forks && seccomp_filters(tid) > seccomp_filters(0);
        }
        // Its other threads are gone: exec kills them, during the calls they were in.
        let shown = self.shown(tid).is_some();
        let gone: Vec<i32> = (self.tasks.iter())
            .filter(|&(&t, &p)| p == pid && t != tid)
            .map(|(&t, _)| t)
            .collect();
        for t in gone {
            self.in_brk32.remove(&t);
            if let (Some(p), true) = (self.pending.remove(&t), shown) {
                self.index += 1;
                let event = p.into_event(self.index, pid, t, None, None);
                (self.on_event)(event);
            }
        }
        self.pending.remove(&tid);
        self.in_brk32.remove(&tid);
        if let Some(k) = self.kernel.as_mut() {
            // The old program's faults, and execve's own: not the new program's.
            k.follow(tid);
            k.drain();
            k.discard(tid);
        }
        let Some(proc) = self.procs.get_mut(&pid) else {
            return Ok(());
        };
        proc.started = true;
        proc.brk = None;
        // A new address space: nothing of the old one's readings holds.
        proc.last = None;
        if let Some(s) = self.stacks.as_mut() {
            let change = self.faults.as_mut().and_then(|f| f.exec(pid, s));
            s.forget(pid);
            if let (Some(change), true) = (change, proc.shown) {
                (self.on_event)(Event::Resident(Box::new(change)));
            }
        }
        if !proc.shown {
            return Ok(());
        }
        if let Some(mut snap) = self.snapshot(pid, tid)? {
            // load_elf_binary() leaves mm->brk at mm->start_brk.
            let brk = snap.brk().unwrap_or(snap.summary.start_brk);
            if snap.brk().is_none() {
                snap.set_brk(brk);
            }
            if let Some(proc) = self.procs.get_mut(&pid) {
                proc.brk = Some(brk);
            }
            let start = snap.clone();
            (self.on_event)(Event::Exec {
                pid,
                source: self.src.name(),
                snap,
            });
            self.settle(pid, tid, &start, When::Start, None);
        }
        Ok(())
    }

    /// Task `tid` is exiting (`PTRACE_EVENT_EXIT`), its address space still there.
    fn exiting(&mut self, tid: i32) -> Result<(), TraceError> {
        let Some(pid) = self.shown(tid) else {
            self.pending.remove(&tid);
            return Ok(());
        };
        let snap = self.snapshot(pid, tid)?;
        if let Some(p) = self.pending.remove(&tid) {
            self.index += 1;
            let event = p.into_event(self.index, pid, tid, None, snap.clone());
            (self.on_event)(event);
        }
        // The process's last thread to exit: every other has stopped at its exit (exit_group
        // stops each), or is gone.
        self.exiting.insert(tid);
        let last = (self.tasks.iter()).all(|(t, &p)| p != pid || self.exiting.contains(t));
        if let Some(snap) = &snap {
            let when = if last { When::Exit } else { When::Before };
            self.settle(pid, tid, snap, when, None);
        }
        (self.on_event)(Event::ThreadExit { pid, tid, snap });
        Ok(())
    }

    /// Task `tid` is gone (`ending`): the call it was in is reported with no result; if it
    /// led its process, the process has ended.
    fn gone(&mut self, tid: i32, ending: Ending) {
        let shown = self.shown(tid);
        self.exiting.remove(&tid);
        self.in_brk32.remove(&tid);
        self.early.remove(&tid);
        if let Some(p) = self.pending.remove(&tid) {
            if let Some(pid) = shown {
                self.index += 1;
                let event = p.into_event(self.index, pid, tid, None, None);
                (self.on_event)(event);
            }
        }
        let pid = self.tasks.remove(&tid);
        if let Some(k) = self.kernel.as_mut() {
            k.forget(tid);
        }
        if pid != Some(tid) {
            return;
        }
        if tid == self.program {
            self.ending = Some(ending);
            // Nothing to forward signals to any more: the pid may be reused.
            PROGRAM.store(0, std::sync::atomic::Ordering::Relaxed);
        } else if shown.is_some() {
            (self.on_event)(Event::End { pid: tid, ending });
        }
        self.adopt_early(tid);
        if let Some(s) = self.stacks.as_mut() {
            if let Some(change) = self.faults.as_mut().and_then(|f| f.end(tid, s)) {
                if shown.is_some() {
                    (self.on_event)(Event::Resident(Box::new(change)));
                }
            }
            s.forget(tid);
        }
        self.procs.remove(&tid);
    }

    /// Lets run, traced and not shown, the held tasks that process `parent` started and whose
    /// fork event will not come now (it ended, or it execs: every other thread is gone).
    fn adopt_early(&mut self, parent: i32) {
        let orphans: Vec<i32> = (self.early.iter())
            .filter(|&(_, &p)| p == parent)
            .map(|(&t, _)| t)
            .collect();
        for t in orphans {
            self.early.remove(&t);
            let (brk, started) = self
                .procs
                .get(&parent)
                .map_or((None, true), |p| (p.brk, p.started));
            let child = Proc {
                brk,
                started,
                last: None,
                shown: false,
            };
            self.procs.insert(t, child);
            self.tasks.insert(t, t);
            self.stopped(t, 0);
        }
    }

    /// Follows the program until every task it holds has ended or (attached) the tracer is
    /// told to let go. Returns whether the program was seen to start (its exec, or attached)
    /// and how it ended.
    fn run(mut self, attached: bool) -> Result<(bool, Option<Ending>), TraceError> {
        loop {
            if attached && LET_GO.load(std::sync::atomic::Ordering::Relaxed) {
                let_go_all(&self.tasks, &self.early);
                return Ok((true, Some(Ending::Detached(self.program))));
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
                            // SAFETY: `op` says the entry member of the union is the valid
                            // one.
                            let entry = unsafe { info.u.entry };
                            self.entry(tid, info.arch, entry.nr, &entry.args)?;
                        } else if info.op == libc::PTRACE_SYSCALL_INFO_EXIT {
                            // SAFETY: `op` says the exit member of the union is the valid one.
                            let exit = unsafe { info.u.exit };
                            self.exit(tid, exit.sval, exit.is_error != 0)?;
                        }
                    }
                    self.resume(tid, 0);
                }
                Wait::Event(libc::PTRACE_EVENT_SECCOMP, _) => {
                    // A call the filter names, before it runs. Without the filter of its own
                    // (an inherited one), the syscall-entry stop has reported it.
                    if self.seccomp {
                        if let Ok(info) = ptrace::syscall_info(pid) {
                            if info.op == libc::PTRACE_SYSCALL_INFO_SECCOMP {
                                // SAFETY: `op` says the seccomp member of the union is the
                                // valid one.
                                let call = unsafe { info.u.seccomp };
                                self.entry(tid, info.arch, call.nr, &call.args)?;
                            }
                        }
                    }
                    self.resume(tid, 0);
                }
                Wait::Event(libc::PTRACE_EVENT_STOP, sig) => self.stopped(tid, sig),
                Wait::Event(event, _) => {
                    match event {
                        libc::PTRACE_EVENT_EXEC => self.exec(tid)?,
                        libc::PTRACE_EVENT_CLONE
                        | libc::PTRACE_EVENT_FORK
                        | libc::PTRACE_EVENT_VFORK => {
                            let new = ptrace::getevent(pid).map_or(0, |n| n as i32);
                            self.spawned(tid, new, event)?;
                        }
                        libc::PTRACE_EVENT_EXIT => self.exiting(tid)?,
                        _ => {}
                    }
                    self.resume(tid, 0);
                }
                Wait::Signal(sig) => {
                    // A signal for the program, whatever its number: deliver it. A stop
                    // signal then stops the group, which comes back as PTRACE_EVENT_STOP.
                    self.resume(tid, sig);
                }
                Wait::Exited(code) => self.gone(tid, Ending::Exited(code)),
                Wait::Signaled(sig, core) => self.gone(tid, Ending::Signaled(sig, core)),
                Wait::Other => {}
            }
        }
        if self.program_started && self.ending.is_none() {
            return Err(TraceError::Ptrace(
                "waitpid",
                io::Error::other("the program's end was not reported"),
            ));
        }
        Ok((self.program_started, self.ending))
    }
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
    opts: &TraceOptions,
    mut on_event: impl FnMut(Event),
) -> Result<Ending, TraceError> {
    let follow_forks = opts.follow_forks;
    if pid <= 0 || !std::path::Path::new(&format!("/proc/{pid}/task")).exists() {
        return Err(TraceError::NoProcess);
    }
    if tgid(pid) != Some(pid) {
        return Err(TraceError::NoProcess);
    }
    if let Some(by) = tracer_of(pid).filter(|&t| t != 0) {
        return Err(TraceError::AlreadyTraced(by));
    }
    let mut options = Options::PTRACE_O_TRACESYSGOOD
        | Options::PTRACE_O_TRACECLONE
        | Options::PTRACE_O_TRACEEXEC
        | Options::PTRACE_O_TRACEEXIT;
    if follow_forks {
        options |= Options::PTRACE_O_TRACEFORK | Options::PTRACE_O_TRACEVFORK;
    }
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
    let faults = match opts.faults {
        true => {
            let tids: Vec<i32> = stopped.keys().copied().collect();
            let faults = Faults::open(pid, &tids, false, opts.follow_forks, fault_depth(opts));
            Some(faults.map_err(TraceError::Faults)?)
        }
        false => None,
    };
    let start = snap.clone();
    on_event(Event::Attach {
        pid,
        source: src.name(),
        threads: stopped.len(),
        snap,
    });
    let kernel = match opts.kernel_depth {
        Some(depth) => {
            let tids: Vec<i32> = stopped.keys().copied().collect();
            // The process's own id first: its threads are followed.
            let mut tids: Vec<i32> = tids.into_iter().filter(|&t| t != pid).collect();
            tids.insert(0, pid);
            Some(
                KernelGraph::open(&tids, opts.follow_forks, &kernel_entries(), depth)
                    .map_err(TraceError::Kernel)?,
            )
        }
        None => None,
    };
    let mut tracer = Tracer::new(src, &mut on_event, pid, Start::Attached(brk), opts);
    tracer.faults = faults;
    tracer.kernel = kernel;
    tracer.settle(pid, at, &start, When::Start, None);
    for &tid in stopped.keys() {
        tracer.tasks.insert(tid, pid);
    }
    for (&tid, w) in &stopped {
        match *w {
            Wait::Event(
                libc::PTRACE_EVENT_STOP,
                libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU,
            ) => listen(Pid::from_raw(tid)),
            Wait::Signal(sig) => tracer.resume(tid, sig),
            _ => tracer.resume(tid, 0),
        }
    }
    let (_, ending) = tracer.run(true)?;
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
    status_number(pid, "TracerPid").map(|t| t as i32)
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

/// Lets go of every task the tracer holds (`tasks`, the `early` ones it holds stopped, and any
/// thread of their processes it attached that has not stopped yet): interrupts them all first,
/// so that none runs on while another is waited for, then detaches each at its next stop,
/// delivering the signal of a signal-delivery-stop; a thread in a group-stop stays stopped. A
/// task that does not stop within 2 s (a leader that has exited while its threads run on
/// stops no more) is detached by the kernel as this process exits.
fn let_go_all(tasks: &HashMap<i32, i32>, early: &HashMap<i32, i32>) {
    let detach = |tid: i32, sig: i32| {
        // SAFETY: PTRACE_DETACH takes no pointer; the data argument is the signal.
        unsafe {
            libc::ptrace(
                libc::PTRACE_DETACH,
                tid,
                std::ptr::null_mut::<libc::c_void>(),
                sig as libc::c_long,
            );
        }
    };
    for &tid in early.keys() {
        // Held in their first stop.
        detach(tid, 0);
    }
    let mut tids: HashSet<i32> = tasks.keys().copied().collect();
    let pids: HashSet<i32> = tasks.values().copied().collect();
    for pid in pids {
        tids.extend(task_ids(pid));
    }
    tids.retain(|t| !early.contains_key(t));
    // Not ours (ESRCH), or gone: nothing to wait for.
    tids.retain(|&t| ptrace::interrupt(Pid::from_raw(t)).is_ok());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !tids.is_empty() && std::time::Instant::now() < deadline {
        let mut status = 0;
        // SAFETY: `status` is a live int the kernel writes.
        let got = unsafe { libc::waitpid(-1, &mut status, libc::__WALL | libc::WNOHANG) };
        if got == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
            continue;
        }
        if got < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                _ => break,
            }
        }
        if !tids.remove(&got) {
            continue;
        }
        match Wait::decode(status) {
            Wait::Signal(sig) => detach(got, sig),
            Wait::Syscall | Wait::Event(..) => detach(got, 0),
            Wait::Other => {
                tids.insert(got);
            }
            Wait::Exited(_) | Wait::Signaled(..) => {}
        }
    }
}

/// What the child writes to the error pipe before it exits: the step that failed (here
/// `execvp`; `PTRACE_SEIZE` fails in the tracer) and its errno.
const STAGE_EXEC: i32 = 2;

/// The error the child reported through the pipe `from`, which it closed (by exiting or by
/// exec) before the tracer asks; `None` if it reported none.
fn child_error(from: &mut File) -> Option<TraceError> {
    let mut bytes = [0u8; 8];
    from.read_exact(&mut bytes).ok()?;
    let stage = i32::from_ne_bytes(bytes[..4].try_into().unwrap_or_default());
    let err = io::Error::from_raw_os_error(i32::from_ne_bytes(
        bytes[4..].try_into().unwrap_or_default(),
    ));
    Some(match stage {
        STAGE_EXEC => TraceError::Exec(err),
        _ => TraceError::Untraceable(err),
    })
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
    status_number(tid, "Tgid").map(|t| t as i32)
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

/// The seccomp filter the launched program runs under: `SECCOMP_RET_TRACE` (a stop for the
/// tracer) for the x86-64 memory system calls and for every call of another architecture
/// (32-bit `int 0x80`, whose `brk` the tracer follows and whose use it reports), and
/// `SECCOMP_RET_ALLOW` for the rest. Built before `fork`, so that the child only installs it.
fn memory_call_filter() -> Vec<libc::sock_filter> {
    let nrs: Vec<u32> = (0..1024)
        .filter(|&nr| MemCall::from_x86_64(nr).is_some())
        .map(|nr| nr as u32)
        .collect();
    let n = nrs.len();
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jeq = |k: u32, jt: usize, jf: usize| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt: jt as u8,
        jf: jf as u8,
        k,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    // [0] arch; [1] not x86-64: to TRACE; [2] nr; [3..3+n) one of ours: to TRACE;
    // [3+n] ALLOW; [4+n] TRACE.
    let mut prog = vec![
        stmt(load, 4), // seccomp_data.arch
        jeq(AUDIT_ARCH_X86_64, 0, n + 2),
        stmt(load, 0), // seccomp_data.nr
    ];
    for (i, &nr) in nrs.iter().enumerate() {
        prog.push(jeq(nr, n - i, 0));
    }
    prog.push(stmt(ret, libc::SECCOMP_RET_ALLOW));
    prog.push(stmt(ret, libc::SECCOMP_RET_TRACE));
    prog
}

/// In the child before it execs: installs `filter` (from [`memory_call_filter`]), with
/// `no_new_privs` if the kernel requires it of this process. Where it cannot (no
/// `CONFIG_SECCOMP_FILTER`), the program runs without it and stops at every call; the
/// tracer tells which from `/proc/PID/status`.
fn install_filter(filter: &mut [libc::sock_filter]) {
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    let install = || {
        // SAFETY: seccomp(2) reads the live program `prog` points to.
        unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                &prog as *const libc::sock_fprog,
            )
        }
    };
    if install() != 0 && Errno::last() == Errno::EACCES {
        // SAFETY: PR_SET_NO_NEW_PRIVS takes integers only.
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        install();
    }
}

/// The `clone` flags of the call thread `tid` is in, stopped at its fork, vfork or clone
/// event: `fork` is `SIGCHLD`, `vfork` `CLONE_VM | CLONE_VFORK | SIGCHLD`, `clone` and `clone3`
/// pass theirs (in the first register, or the first field of `struct clone_args`), in the
/// x86-64 or the 32-bit table. `None` if they cannot be read.
fn clone_flags(tid: i32) -> Option<u64> {
    // __NR_fork, __NR_vfork, __NR_clone and __NR_clone3 of the 32-bit table.
    const I386: [i64; 4] = [2, 190, 120, 435];
    let pid = Pid::from_raw(tid);
    let regs = ptrace::getregs(pid).ok()?;
    let i386 = ptrace::syscall_info(pid).is_ok_and(|i| i.arch == AUDIT_ARCH_I386);
    let (nr, arg) = if i386 {
        let nr = regs.orig_rax as i64;
        let nr = I386.iter().position(|&n| n == nr).map_or(-1, |i| {
            [
                libc::SYS_fork,
                libc::SYS_vfork,
                libc::SYS_clone,
                libc::SYS_clone3,
            ][i]
        });
        (nr, regs.rbx & 0xffff_ffff)
    } else {
        (regs.orig_rax as i64, regs.rdi)
    };
    let sigchld = libc::SIGCHLD as u64;
    match nr {
        libc::SYS_fork => Some(sigchld),
        libc::SYS_vfork => Some((libc::CLONE_VM | libc::CLONE_VFORK) as u64 | sigchld),
        libc::SYS_clone => Some(arg),
        // clone3(struct clone_args *args, size_t size): `flags` is the first field.
        libc::SYS_clone3 => ptrace::read(pid, arg as ptrace::AddressType)
            .ok()
            .map(|f| f as u64),
        _ => None,
    }
}

/// How many seccomp filters process `pid` runs under (`Seccomp_filters` in
/// `/proc/PID/status`; 0 for this process).
fn seccomp_filters(pid: i32) -> u64 {
    status_number(pid, "Seccomp_filters").unwrap_or(0)
}

/// The number `key` holds in `/proc/PID/status` (`/proc/self/status` for 0).
fn status_number(pid: i32, key: &str) -> Option<u64> {
    let path = match pid {
        0 => "/proc/self/status".to_string(),
        pid => format!("/proc/{pid}/status"),
    };
    let status = std::fs::read_to_string(path).ok()?;
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
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
