// SPDX-License-Identifier: GPL-2.0

//! The module's life and the system's limits: loaded and unloaded again and again with users
//! in between, kept loaded by every kind of user, and a memory cgroup's limit reached by one
//! process while the rest of the guest goes on.

use crate::harness::{expect_errno, Context, Outcome, TestResult};
use crate::sys::{self, in_child, page_size, ChildEnd};
use crate::{check, check_eq};
use mmscope::Device;
use std::fs;
use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;

/// How many times [`reload_with_users`] loads the module.
const RELOADS: usize = 100;

fn module_file() -> Result<String, Outcome> {
    std::env::var("MMSCOPE_KO").map_err(|_| {
        Outcome::Skip("MMSCOPE_KO does not name the module file, so it cannot be reloaded".into())
    })
}

/// The module loaded and unloaded [`RELOADS`] times; each time a user opens it, maps it,
/// faults pages in from two processes, and goes; each unload leaves no device node and each
/// load starts from zero pages and one object.
pub fn reload_with_users() -> TestResult {
    let ko = module_file()?;
    let ps = page_size();
    for round in 0..RELOADS {
        sys::delete_module("mmscope").context(format!("rmmod, round {round}"))?;
        check!(
            !Path::new(mmscope::DEVICE_PATH).exists(),
            "round {round}: /dev/mmscope left after rmmod"
        );
        sys::load_module_with(&ko, "").context(format!("insmod, round {round}"))?;
        let dev = Device::open().context(format!("open, round {round}"))?;
        let fresh = dev.mem_stats().context("MMSCOPE_IOC_MEM_STATS")?;
        check_eq!(
            (fresh.pages, fresh.objects, fresh.faults),
            (0, 1, 0),
            "round {round}: pages, objects and faults of a fresh load"
        );
        let m = dev
            .map(
                8 * ps,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                0,
            )
            .context("mmap")?;
        m.write(0, 1);
        let end = in_child(|| {
            m.write(ps, 2);
            i32::from(m.read(0) != 1)
        })
        .context("fork")?;
        check_eq!(end, ChildEnd::Exited(0), "round {round}: the child's view");
        check_eq!(m.read(ps), 2, "round {round}: the child's write");
        check_eq!(dev.mem_stats()?.obj_pages, 2, "round {round}: pages held");
    }
    Ok(())
}

/// A mapping keeps the module loaded after its file is closed: `rmmod` is refused until the
/// last mapping goes, then succeeds, and every page is freed.
pub fn rmmod_refused_while_mapped() -> TestResult {
    let ko = module_file()?;
    let ps = page_size();
    let dev = Device::open().context("open /dev/mmscope")?;
    let m = dev
        .map(
            4 * ps,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            0,
        )
        .context("mmap")?;
    m.write(0, 7);
    drop(dev);
    let refused = sys::delete_module("mmscope");
    let still = m.read(0);
    drop(m);
    let after = sys::delete_module("mmscope");
    sys::load_module_with(&ko, "").context(format!("insmod {ko}"))?;
    expect_errno(refused, libc::EWOULDBLOCK, "rmmod while a mapping lives")?;
    check_eq!(still, 7, "the page after the refused rmmod");
    after.context("rmmod after the last munmap")?;
    Ok(())
}

/// A process that faults in more than its memory cgroup's `memory.max` meets the cgroup's
/// OOM killer, alone: it is killed, the cgroup records it, its pages are all freed, and a
/// process outside goes on using the module.
pub fn memcg_limit_kills_only_the_offender() -> TestResult {
    let cg = sys::new_memcg("mmscope-oom")?;
    let result = (|| -> TestResult {
        fs::write(cg.join("memory.max"), "8M").context("memory.max")?;
        fs::write(cg.join("memory.swap.max"), "0").ok();
        let ps = page_size();
        let probe = Device::open().context("open /dev/mmscope")?;
        let before = probe.mem_stats().context("MMSCOPE_IOC_MEM_STATS")?.pages;
        let procs = cg.join("cgroup.procs");
        // The OOM killer prints its report (with a stack trace) to the console: bracket it
        // for the log judge, which allows a stack trace there and nothing else.
        expected_oom("begin");
        let end = in_child(|| {
            if fs::write(&procs, std::process::id().to_string()).is_err() {
                return 3;
            }
            let Ok(dev) = Device::open() else { return 4 };
            let Ok(m) = dev.map(
                64 << 20,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                0,
            ) else {
                return 5;
            };
            for p in 0..(64 << 20) / ps {
                m.write(p * ps, 1);
            }
            0
        })
        .context("fork")?;
        expected_oom("end");
        check_eq!(
            end,
            ChildEnd::Signaled(libc::SIGKILL),
            "the process over its limit"
        );
        check!(oom_kills(&cg)? >= 1, "memory.events records no OOM kill");
        check_eq!(
            probe.mem_stats()?.pages,
            before,
            "pages held once the offender is gone"
        );
        // Outside the cgroup, all is well.
        let m = probe
            .map(
                4 * ps,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                0,
            )
            .context("mmap outside the cgroup")?;
        for p in 0..4 {
            m.write(p * ps, 9);
        }
        check_eq!(
            probe.mem_stats()?.obj_pages,
            4,
            "pages of a process outside"
        );
        Ok(())
    })();
    fs::remove_dir(&cg).context("remove the cgroup")?;
    result
}

/// Marks the `begin` or `end` of a stretch where the OOM killer is expected, for the log judge
/// (`scripts/judge-log.sh`), which allows the stack trace of its report there.
///
/// Through the kernel log, so that the mark reaches the console in order with the report, whole:
/// the console prints the kernel's messages later than the write that follows them on stdout,
/// and a line on stdout can be cut in two by one of them. On stdout after a pause if the kernel
/// log cannot be written.
fn expected_oom(mark: &str) {
    let line = format!("MMSCOPE-EXPECTED-OOM: {mark}\n");
    if fs::write("/dev/kmsg", &line).is_err() {
        std::thread::sleep(std::time::Duration::from_secs(2));
        print!("{line}");
    }
}

/// The `oom_kill` count of the memory cgroup `cg`'s `memory.events`.
fn oom_kills(cg: &Path) -> Result<u64, Outcome> {
    let events = fs::read_to_string(cg.join("memory.events")).context("memory.events")?;
    events
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| Outcome::Fail(format!("no oom_kill line in memory.events: {events}")))
}

/// Shared counters of [`fault_ahead_window_never_oom_kills`]: the pages the first child
/// touched, and what the second one held before exiting.
const TOUCHED: usize = 0;
const HELD: usize = 1;

/// The pages of the window that fault-ahead allocates beyond the faulting page are a guess,
/// allocated without reclaim (but charged to the memory cgroup): they never call in the OOM
/// killer. In a memory cgroup with a few MiB of room, child A touches pages of the device one
/// at a time until the cgroup's OOM killer ends it, which measures the room, c pages, in real
/// use; child B does the same up to page c - 12, then advises `MADV_SEQUENTIAL` and touches
/// pages c - 12 to c - 9, so that the 16-page window from c - 12 would need 4 pages more than
/// there is room for, while the pages B touches fit with 8 to spare. B must exit normally, with
/// no OOM kill in `memory.events`, holding between c - 8 and c pages. Ground truth: how each
/// child ended, and the cgroup's own `memory.events`.
pub fn fault_ahead_window_never_oom_kills() -> TestResult {
    /// Room above what the cgroup holds at the start.
    const ROOM: u64 = 4 << 20;
    let ps = page_size();
    let cg = sys::new_memcg("mmscope-ahead")?;
    let result = (|| -> TestResult {
        let current = fs::read_to_string(cg.join("memory.current")).context("memory.current")?;
        let current: u64 = current
            .trim()
            .parse()
            .map_err(|_| Outcome::Fail(format!("memory.current {current:?}")))?;
        fs::write(cg.join("memory.max"), (current + ROOM).to_string()).context("memory.max")?;
        if cg.join("memory.swap.max").exists() {
            fs::write(cg.join("memory.swap.max"), "0").context("memory.swap.max")?;
        }
        let procs = cg.join("cgroup.procs");
        let counters = sys::SharedCounters::new().context("map shared counters")?;
        // Both children map twice the room: the limit, not the mapping, ends the touching.
        let pages = 2 * ROOM as usize / ps;
        let enter = || fs::write(&procs, std::process::id().to_string()).is_ok();
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let before = oom_kills(&cg)?;
        // The OOM killer prints its report (with a stack trace) to the console: bracket it
        // for the log judge, which allows a stack trace there and nothing else.
        expected_oom("begin");
        let a = in_child(|| {
            if !enter() {
                return 3;
            }
            let Ok(dev) = Device::open() else { return 4 };
            let Ok(m) = dev.map(pages * ps, rw, libc::MAP_SHARED, 0) else {
                return 5;
            };
            for p in 0..pages {
                m.write(p * ps, 1);
                counters.get(TOUCHED).store(p as u64 + 1, SeqCst);
            }
            0
        })
        .context("fork")?;
        expected_oom("end");
        let after_a = oom_kills(&cg)?;
        let c = counters.get(TOUCHED).load(SeqCst) as usize;
        check_eq!(
            a,
            ChildEnd::Signaled(libc::SIGKILL),
            "child A, touching pages until the cgroup is full ({c} touched)"
        );
        check!(
            after_a > before,
            "memory.events records no OOM kill for child A ({before} before, {after_a} after)"
        );
        check!(
            c >= 64,
            "child A touched only {c} pages before the OOM killer came"
        );
        // Should B meet the OOM killer anyway, its report is bracketed too: the failure is
        // the test's to report.
        expected_oom("begin");
        let b = in_child(|| {
            if !enter() {
                return 3;
            }
            let Ok(dev) = Device::open() else { return 4 };
            let Ok(m) = dev.map(pages * ps, rw, libc::MAP_SHARED, 0) else {
                return 5;
            };
            for p in 0..c - 12 {
                m.write(p * ps, 1);
            }
            let rest = m.addr().wrapping_add((c - 12) * ps);
            // SAFETY: The rest of our mapping; the advice changes how it is faulted in, not
            // what it holds.
            if unsafe { libc::madvise(rest.cast(), (pages - (c - 12)) * ps, libc::MADV_SEQUENTIAL) }
                != 0
            {
                return 6;
            }
            for p in c - 12..c - 8 {
                m.write(p * ps, 1);
            }
            let Ok(s) = dev.mem_stats() else { return 7 };
            counters.get(HELD).store(s.obj_pages, SeqCst);
            0
        })
        .context("fork")?;
        expected_oom("end");
        let after_b = oom_kills(&cg)?;
        let held = counters.get(HELD).load(SeqCst);
        println!(
            "# room c = {c} pages; B held {held} pages; oom_kill {before} -> {after_a} (A) -> \
             {after_b} (B)"
        );
        check_eq!(
            b,
            ChildEnd::Exited(0),
            "child B, whose fault-ahead window from page c - 12 = {} reaches 4 pages past the \
             room (3: cgroup, 4: open, 5: mmap, 6: madvise, 7: MMSCOPE_IOC_MEM_STATS)",
            c - 12
        );
        check_eq!(
            after_b,
            after_a,
            "OOM kills in memory.events while child B ran"
        );
        check!(
            (c as u64 - 8..=c as u64).contains(&held),
            "child B held {held} pages, not between c - 8 = {} and c = {c}",
            c - 8
        );
        Ok(())
    })();
    fs::remove_dir(&cg).context("remove the cgroup")?;
    result
}
