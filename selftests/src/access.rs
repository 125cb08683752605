// SPDX-License-Identifier: GPL-2.0

//! Who may read another process's address space, under pressure: the tracer rule belongs to the
//! tracer's thread group alone, not to every process while someone traces the target, and it
//! ends with the detach, before the target can exec a setuid image.
//!
//! Ground truth: the kernel's own ptrace state (`TracerPid` in `/proc/<pid>/status`, the return
//! of `PTRACE_DETACH`), and the layout a forked process shares with its parent.

use crate::harness::{Context, Outcome, TestResult};
use crate::mm::{become_user, let_go, seize};
use crate::sys::{fork_child, in_child, ChildEnd, Pipe, SharedCounters};
use crate::{check, check_eq, skip};
use mmscope::abi::Vma;
use mmscope::Device;
use std::ffi::{CStr, CString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// The three ioctls that take `MMSCOPE_F_PID`, as bits of the codes the tests' children return.
const SUMMARY: i32 = 1;
const LIST: i32 = 2;
const QUERY: i32 = 4;

/// What the bits of those codes mean, for failure messages.
const BITS: &str = "bits: 1 MM_SUMMARY, 2 VMA_LIST, 4 VMA_QUERY";

/// The ioctls on `pid` (bits [`SUMMARY`], [`LIST`], [`QUERY`]) that were not refused with
/// `EACCES`.
fn not_refused(dev: &Device, pid: i32) -> i32 {
    let eacces = |e: Option<io::Error>| e.and_then(|e| e.raw_os_error()) == Some(libc::EACCES);
    let mut records = [Vma::default(); 4];
    let mut bits = 0;
    if !eacces(dev.mm_summary(Some(pid)).err()) {
        bits |= SUMMARY;
    }
    if !eacces(dev.vma_list_page(Some(pid), 0, &mut records).err()) {
        bits |= LIST;
    }
    if !eacces(dev.vma_query(Some(pid), 0, true).err()) {
        bits |= QUERY;
    }
    bits
}

/// The ioctls on `pid` that did not answer (a VMA list must hold at least one record).
fn not_answered(dev: &Device, pid: i32) -> i32 {
    let mut records = [Vma::default(); 4];
    let mut bits = 0;
    if dev.mm_summary(Some(pid)).is_err() {
        bits |= SUMMARY;
    }
    if !matches!(dev.vma_list_page(Some(pid), 0, &mut records), Ok(l) if l.count > 0) {
        bits |= LIST;
    }
    if dev.vma_query(Some(pid), 0, true).is_err() {
        bits |= QUERY;
    }
    bits
}

/// The tracer of `pid`, as the `TracerPid` line of `/proc/<pid>/status` names it (0: none).
fn tracer_pid(pid: i32) -> Result<i32, Outcome> {
    let status =
        fs::read_to_string(format!("/proc/{pid}/status")).context("read /proc/<pid>/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:")?.trim().parse().ok())
        .ok_or_else(|| Outcome::Fail(format!("no TracerPid line in /proc/{pid}/status")))
}

/// The exit status of a child that ran [`not_refused`] (or 8: it could not change users).
fn refused_code(end: ChildEnd) -> String {
    match end {
        ChildEnd::Exited(0) => "refused everything".into(),
        ChildEnd::Exited(8) => "could not change users".into(),
        ChildEnd::Exited(bits) => format!("answered {bits} ({BITS})"),
        ChildEnd::Signaled(sig) => format!("killed by signal {sig}"),
    }
}

/// The tracer rule belongs to the tracer: while process A (uid 1000) traces T (uid 1000,
/// `PTRACE_SEIZE`), a process of T's own user that does not trace it, a process A forked, and
/// a process of another user are each refused the summary, the VMA list and the query on T
/// with `EACCES`, and A reads T both before and after they ask. A rule of "someone traces it"
/// instead of "the caller's thread group traces it" fails here. Ground truth: T's `TracerPid`,
/// read before and after the third parties ask.
pub fn tracer_rule_refuses_third_parties() -> TestResult {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        skip!("needs root to create processes of other users");
    }
    let dev = Device::open().context("open /dev/mmscope")?;
    let (target_ready, hold) = (Pipe::new()?, Pipe::new()?);
    // T: uid 1000, dumpable, holding still until it is killed.
    let target = fork_child(|| {
        let ok = become_user(1000);
        target_ready.send(ok as u8);
        hold.recv();
        0
    })
    .context("fork the target")?;
    check_eq!(target_ready.recv(), Some(1), "the target became uid 1000");
    let t = target.pid();
    let (attached, go) = (Pipe::new()?, Pipe::new()?);
    // A: seizes T and reads it; reports; waits while the third parties ask; reads it again.
    let tracer = fork_child(|| {
        if !become_user(1000) {
            attached.send(2);
            return 2;
        }
        if seize(t) != 0 {
            attached.send(3);
            return 3;
        }
        let first = not_answered(&dev, t);
        if first != 0 {
            attached.send(1);
            return 10 + first;
        }
        // A process the tracer forked has its user, but does not trace T.
        let child = match in_child(|| not_refused(&dev, t)) {
            Ok(ChildEnd::Exited(bits)) => bits,
            _ => 8,
        };
        attached.send(0);
        if go.recv() != Some(1) {
            return 4;
        }
        let second = not_answered(&dev, t);
        if !let_go(t) {
            return 5;
        }
        match (second, child) {
            (0, 0) => 0,
            (0, child) => 20 + child,
            (second, _) => 30 + second,
        }
    })
    .context("fork the tracer")?;
    let codes = format!(
        "2: setuid, 3: seize, 10 + bits: A's reads before, 20 + bits: A's child answered \
         (28: it crashed), 4: no go, 30 + bits: A's reads after, 5: detach; {BITS}"
    );
    if attached.recv() != Some(0) {
        let end = tracer.wait().context("wait for the tracer")?;
        return Err(Outcome::Fail(format!(
            "the tracer failed before the third parties asked: {end:?} ({codes})"
        )));
    }
    check_eq!(
        tracer_pid(t)?,
        tracer.pid(),
        "T's tracer before the third parties ask"
    );
    let same_user = in_child(|| {
        if !become_user(1000) {
            return 8;
        }
        not_refused(&dev, t)
    })
    .context("fork a process of T's user")?;
    let other_user = in_child(|| {
        if !become_user(1001) {
            return 8;
        }
        not_refused(&dev, t)
    })
    .context("fork a process of another user")?;
    check_eq!(
        tracer_pid(t)?,
        tracer.pid(),
        "T's tracer after the third parties asked"
    );
    go.send(1);
    let end = tracer.wait().context("wait for the tracer")?;
    check!(
        same_user == ChildEnd::Exited(0),
        "a process of T's user (uid 1000) that does not trace T, while A traces it: {}",
        refused_code(same_user)
    );
    check!(
        other_user == ChildEnd::Exited(0),
        "a process of uid 1001, while A traces T: {}",
        refused_code(other_user)
    );
    check_eq!(
        end,
        ChildEnd::Exited(0),
        "the tracer reads T before and after the third parties ask, and a child it forked is \
         refused ({codes})"
    );
    drop(target);
    Ok(())
}

/// `execve(path, argv, [])`; returns only if it failed.
fn exec(path: &CStr, argv: &[&CStr]) {
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let envp = [std::ptr::null::<libc::c_char>()];
    // SAFETY: `path` and the arrays' strings are valid C strings, and both arrays end with a
    // null pointer; all outlive the call.
    unsafe { libc::execve(path.as_ptr(), ptrs.as_ptr(), envp.as_ptr()) };
}

/// Whether an exec of the setuid-root `image` by a process of uid 1000 takes effect here: the
/// process is then no longer dumpable, so its files in `/proc` belong to root (for good, even
/// once busybox has dropped its privileges again), which they never do for a process of uid
/// 1000 that execs an ordinary image. The probe runs `sleep 5` from the image, and is killed
/// once it has answered.
fn setuid_takes_effect(image: &CStr) -> Result<bool, Outcome> {
    let (ready, go) = (Pipe::new()?, Pipe::new()?);
    let mut probe = fork_child(|| {
        let ok = become_user(1000);
        ready.send(ok as u8);
        if !ok || go.recv() != Some(1) {
            return 3;
        }
        exec(image, &[c"sleep", c"5"]);
        100 + io::Error::last_os_error().raw_os_error().unwrap_or(0)
    })
    .context("fork the probe")?;
    check_eq!(ready.recv(), Some(1), "the probe became uid 1000");
    let proc_dir = format!("/proc/{}", probe.pid());
    let status = format!("{proc_dir}/status");
    let owner = || fs::metadata(&status).map(|m| m.uid());
    check_eq!(
        owner().context("stat /proc/<pid>/status")?,
        1000,
        "owner of the probe's /proc/<pid>/status before the exec"
    );
    go.send(1);
    let comm = format!("{proc_dir}/comm");
    let deadline = Instant::now() + Duration::from_secs(5);
    while fs::read_to_string(&comm).unwrap_or_default().trim() != "busybox" {
        if let Some(end) = probe.try_wait().context("waitpid")? {
            return Err(Outcome::Fail(format!(
                "the probe ended without running the setuid image: {end:?} (100 + errno: the \
                 exec failed)"
            )));
        }
        check!(
            Instant::now() < deadline,
            "the probe did not exec the setuid image within 5 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The exec names the process before it installs the new credentials: give it time.
    let deadline = Instant::now() + Duration::from_secs(2);
    let raised = loop {
        if owner().context("stat /proc/<pid>/status")? == 0 {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    drop(probe);
    Ok(raised)
}

/// Counters of [`exec_after_detach_is_never_read`], summed over its rounds by the tracers.
const ATTACHED_READS: usize = 0;
const LATE_TRIES: usize = 1;
const LATE_READS: usize = 2;
const OTHER_IMAGE: usize = 3;
const REFUSED: usize = 4;
const ODD_ERRORS: usize = 5;
/// The first answer that was not of the old image: which (1: summary, 2: VMA, 3: no VMA at
/// the old code), and its `start_code`, `end_code`, `start_brk` or its VMA's start, end and
/// inode.
const OTHER_WHAT: usize = 6;
const OTHER_VALUES: usize = 7;

/// How long [`exec_after_detach_is_never_read`] races, at most [`RACE_ROUNDS`] rounds.
const RACE_TIME: Duration = Duration::from_secs(10);
const RACE_ROUNDS: usize = 2000;

/// The layout a fork of this process shares with it: `start_code`, `end_code`, `start_brk`.
type Layout = (u64, u64, u64);

/// The tracer's side of one round of [`exec_after_detach_is_never_read`]; returns its exit
/// status (0: the round ran).
///
/// Thread 1 asks for T's summary, and for the VMA at T's old `start_code`, in turn, in a tight
/// loop, noting whether each request started before or after the detach returned and whether
/// an answer was of the old image. This thread (the one that seized T, as ptrace requests must)
/// waits for a first answer, interrupts and detaches T, and only then lets it exec.
fn race(
    dev: &Device,
    t: i32,
    go: &Pipe,
    old: Layout,
    old_inode: u64,
    counters: &SharedCounters,
) -> i32 {
    if !become_user(1000) {
        return 2;
    }
    // SAFETY: pidfd_open takes no pointers; it returns a new descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, t, 0) } as i32;
    if pidfd < 0 {
        return 3;
    }
    if seize(t) != 0 {
        return 4;
    }
    let (detached, stop) = (AtomicBool::new(false), AtomicBool::new(false));
    let attached_reads = AtomicU64::new(0);
    let count = |i: usize| counters.get(i).fetch_add(1, SeqCst);
    let code = std::thread::scope(|s| {
        s.spawn(|| {
            let mut summary = true;
            while !stop.load(SeqCst) {
                let late = detached.load(SeqCst);
                let answer = if summary {
                    dev.mm_summary(Some(t)).map(|s| {
                        let got = (s.start_code, s.end_code, s.start_brk);
                        (got == old, 1, got)
                    })
                } else {
                    match dev.vma_query(Some(t), old.0, false) {
                        Ok(v) => Ok((v.inode == old_inode, 2, (v.start, v.end, v.inode))),
                        // An answer too: there is no VMA there, so this is not the old image.
                        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok((false, 3, old)),
                        Err(e) => Err(e),
                    }
                };
                summary = !summary;
                if late {
                    count(LATE_TRIES);
                }
                match answer {
                    Ok((same, what, got)) => {
                        if !same && count(OTHER_IMAGE) == 0 {
                            counters.get(OTHER_WHAT).store(what, SeqCst);
                            for (i, v) in [got.0, got.1, got.2].into_iter().enumerate() {
                                counters.get(OTHER_VALUES + i).store(v, SeqCst);
                            }
                        }
                        if late {
                            count(LATE_READS);
                        } else {
                            attached_reads.fetch_add(1, SeqCst);
                            count(ATTACHED_READS);
                        }
                    }
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::ESRCH)) => {
                        count(REFUSED);
                    }
                    Err(_) => {
                        count(ODD_ERRORS);
                    }
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(2);
        while attached_reads.load(SeqCst) == 0 && Instant::now() < deadline {
            std::thread::yield_now();
        }
        let code = if !let_go(t) {
            5
        } else {
            detached.store(true, SeqCst);
            if !go.send(1) {
                6
            } else {
                let mut pfd = libc::pollfd {
                    fd: pidfd,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: One valid pollfd; the pidfd turns readable when T has exited.
                if unsafe { libc::poll(&mut pfd, 1, 5000) } == 1 {
                    0
                } else {
                    7
                }
            }
        };
        stop.store(true, SeqCst);
        code
    });
    // SAFETY: `pidfd` is ours.
    unsafe { libc::close(pidfd) };
    code
}

/// A loop racing the ioctls, a detach and a setuid exec never reads the setuid image: in each
/// round, A (uid 1000) seizes T (uid 1000, a fork of this process), one of A's threads asks
/// for T's summary and the VMA at T's code in a tight loop while another interrupts and
/// detaches T and only then lets T exec a setuid-root copy of busybox. Every answer must be of
/// the old image (the layout T shares with this process), and no request that started after
/// the detach returned may be answered at all. Ground truth: this process's own layout, and
/// the owner of `/proc/<pid>/status` for whether a setuid exec takes effect here at all.
///
/// The window the module must close is a few instructions wide (between its tracer check and
/// its taking the target's address space), and only a preemption inside it lets T's exec
/// through, so the test runs as many rounds as fit in [`RACE_TIME`], and a run that passes is
/// evidence, not proof. (A module that takes the address space without holding off the exec
/// leaked it here a few times in 3,000 rounds on a loaded host, and not once in 6,000 on an
/// idle one.)
pub fn exec_after_detach_is_never_read() -> TestResult {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        skip!("needs root to make a setuid image and processes of other users");
    }
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        skip!("no /bin/busybox to make a setuid image of");
    }
    let dir = std::env::temp_dir().join(format!("mmscope-setuid-{}", std::process::id()));
    fs::create_dir(&dir).context("create a directory for the setuid image")?;
    let result = (|| -> TestResult {
        let dir_c = CString::new(dir.as_os_str().as_bytes()).unwrap_or_default();
        // SAFETY: An all-zero statvfs is a valid value for statvfs to overwrite.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `dir_c` is a valid C string and `st` a valid out-pointer.
        if unsafe { libc::statvfs(dir_c.as_ptr(), &mut st) } != 0 {
            return Err(Outcome::Fail(format!(
                "statvfs {}: {}",
                dir.display(),
                io::Error::last_os_error()
            )));
        }
        if st.f_flag & libc::ST_NOSUID != 0 {
            skip!("{} is on a nosuid mount", dir.display());
        }
        let image = dir.join("busybox");
        fs::copy(busybox, &image).context("copy /bin/busybox")?;
        fs::set_permissions(&image, fs::Permissions::from_mode(0o4755))
            .context("make the copy setuid root")?;
        let image = CString::new(image.as_os_str().as_bytes()).unwrap_or_default();
        if !setuid_takes_effect(&image)? {
            skip!("an exec of a setuid-root image does not raise a process of uid 1000 here");
        }
        let dev = Device::open().context("open /dev/mmscope")?;
        let own = dev.mm_summary(None).context("MMSCOPE_IOC_MM_SUMMARY")?;
        let old = (own.start_code, own.end_code, own.start_brk);
        let old_inode = dev
            .vma_query(None, own.start_code, false)
            .context("MMSCOPE_IOC_VMA_QUERY at our own code")?
            .inode;
        let counters = SharedCounters::new().context("map shared counters")?;
        let start = Instant::now();
        let mut rounds = 0;
        while rounds < RACE_ROUNDS && start.elapsed() < RACE_TIME {
            let (ready, go) = (Pipe::new()?, Pipe::new()?);
            let target = fork_child(|| {
                let ok = become_user(1000);
                ready.send(ok as u8);
                if !ok || go.recv() != Some(1) {
                    return 3;
                }
                exec(&image, &[c"true"]);
                127
            })
            .context("fork the target")?;
            check_eq!(
                ready.recv(),
                Some(1),
                "round {rounds}: the target became uid 1000"
            );
            let t = target.pid();
            let tracer = in_child(|| race(&dev, t, &go, old, old_inode, &counters))
                .context("fork the tracer")?;
            check_eq!(
                tracer,
                ChildEnd::Exited(0),
                "round {rounds}: the tracer (2: setuid, 3: pidfd_open, 4: seize, 5: detach, \
                 6: letting T exec, 7: T did not exit within 5 s)"
            );
            check_eq!(
                target.wait().context("wait for the target")?,
                ChildEnd::Exited(0),
                "round {rounds}: the target ran `true` from the setuid image"
            );
            rounds += 1;
        }
        let n = |i: usize| counters.get(i).load(SeqCst);
        println!(
            "# {rounds} rounds in {:.1} s: {} answers while attached, {} requests after the \
             detach ({} answered), {} refused in all",
            start.elapsed().as_secs_f64(),
            n(ATTACHED_READS),
            n(LATE_TRIES),
            n(LATE_READS),
            n(REFUSED)
        );
        let first = (n(OTHER_VALUES), n(OTHER_VALUES + 1), n(OTHER_VALUES + 2));
        let first = match n(OTHER_WHAT) {
            1 => format!(
                "a summary with start_code {:#x}, end_code {:#x}, start_brk {:#x}",
                first.0, first.1, first.2
            ),
            2 => format!(
                "a VMA {:#x}-{:#x} of inode {} at the old start_code",
                first.0, first.1, first.2
            ),
            _ => "no VMA at the old start_code".into(),
        };
        check_eq!(
            n(OTHER_IMAGE),
            0,
            "answers that were not of the image T had while traced (the first: {first}; the \
             old image: start_code {:#x}, end_code {:#x}, start_brk {:#x}, inode {old_inode})",
            old.0,
            old.1,
            old.2
        );
        check_eq!(
            n(LATE_READS),
            0,
            "answers to requests that started after the detach returned"
        );
        check_eq!(
            n(ODD_ERRORS),
            0,
            "requests that failed with neither EACCES nor ESRCH"
        );
        check!(
            n(ATTACHED_READS) > 0 && n(LATE_TRIES) > 0,
            "the race did not run: {} answers while attached, {} requests after the detach",
            n(ATTACHED_READS),
            n(LATE_TRIES)
        );
        Ok(())
    })();
    let _ = fs::remove_dir_all(&dir);
    result
}

/// A word of the test binary's data, the same address in every process forked from it, for
/// `PTRACE_PEEKDATA`.
static PEEK_WORD: AtomicU64 = AtomicU64::new(0x6d6d_7363_6f70_6521);

/// Whether `PTRACE_PEEKDATA` of [`PEEK_WORD`] in the stopped tracee `pid` succeeds.
fn peek_allowed(pid: i32) -> bool {
    // SAFETY: PTRACE_PEEKDATA reads a word of our stopped tracee; errno tells a failure from a
    // word that happens to be -1.
    unsafe {
        *libc::__errno_location() = 0;
        let word = libc::ptrace(
            libc::PTRACE_PEEKDATA,
            pid,
            PEEK_WORD.as_ptr() as usize,
            0usize,
        );
        word != -1 || *libc::__errno_location() == 0
    }
}

/// The tracer rule follows the tracee's dumpability, as `PTRACE_PEEKDATA` does: an
/// unprivileged tracer (uid 1000) of its own child (`PTRACE_TRACEME`, which skips the attach
/// check) reads it while the child is dumpable, and is refused the summary, the VMA list and
/// the query with `EACCES` once the child has made itself non-dumpable (`PR_SET_DUMPABLE` 0, as
/// a setuid program or an unreadable binary is after `execve`). Ground truth: whether the
/// kernel lets the same tracer `PTRACE_PEEKDATA` the stopped child, asked each time.
pub fn tracer_refused_when_tracee_not_dumpable() -> TestResult {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        skip!("needs root to run an unprivileged tracer");
    }
    let dev = Device::open().context("open /dev/mmscope")?;
    // The tracer, uid 1000: for a dumpable then a non-dumpable child, 1 bit per case where the
    // module's answer (all three answered / all three refused) disagrees with PEEKDATA.
    let tracer = in_child(|| {
        if !become_user(1000) {
            return 100;
        }
        let mut code = 0;
        for (case, dumpable) in [(0, true), (1, false)] {
            let hold = match Pipe::new() {
                Ok(pipe) => pipe,
                Err(_) => return 101,
            };
            let Ok(child) = fork_child(|| {
                // SAFETY: Plain process-control calls on the calling process.
                unsafe {
                    if libc::ptrace(libc::PTRACE_TRACEME, 0, 0usize, 0usize) != 0 {
                        return 1;
                    }
                    if !dumpable && libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) != 0 {
                        return 2;
                    }
                    libc::raise(libc::SIGSTOP);
                }
                hold.recv();
                0
            }) else {
                return 102;
            };
            let c = child.pid();
            let mut status = 0;
            // SAFETY: Waits for our own child to stop; `status` is a valid out-pointer.
            if unsafe { libc::waitpid(c, &mut status, libc::__WALL) } != c {
                return 103;
            }
            if !libc::WIFSTOPPED(status) {
                // Reaped already: the child must not be killed by its pid again.
                std::mem::forget(child);
                return if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1 {
                    // PTRACE_TRACEME refused (Yama's ptrace_scope 2 or 3, or another LSM).
                    104
                } else {
                    103
                };
            }
            let peek = peek_allowed(c);
            let module = if peek {
                not_answered(&dev, c) == 0
            } else {
                not_refused(&dev, c) == 0
            };
            if peek != dumpable {
                // The kernel itself did not behave as the case assumes.
                code |= 16 << case;
            }
            if !module {
                code |= 1 << case;
            }
            drop(child);
        }
        code
    })
    .context("fork the tracer")?;
    if tracer == ChildEnd::Exited(104) {
        skip!("PTRACE_TRACEME is refused here (Yama ptrace_scope or another LSM)");
    }
    check_eq!(
        tracer,
        ChildEnd::Exited(0),
        "the module agrees with PTRACE_PEEKDATA (1: dumpable child not read, 2: non-dumpable \
         child read; 16/32: PEEKDATA did not follow dumpability; 100-103: setup)"
    );
    Ok(())
}
