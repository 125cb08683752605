// SPDX-License-Identifier: GPL-2.0

//! Who may read another process's address space, under pressure: the tracer rule belongs to the
//! tracer's thread group alone, not to every process while someone traces the target.
//!
//! Ground truth: the kernel's own ptrace state (`TracerPid` in `/proc/<pid>/status`).

use crate::harness::{Context, Outcome, TestResult};
use crate::mm::{become_user, let_go, seize};
use crate::sys::{fork_child, in_child, ChildEnd, Pipe};
use crate::{check, check_eq, skip};
use mmscope::abi::Vma;
use mmscope::Device;
use std::fs;
use std::io;

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
