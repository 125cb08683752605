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

/// Shared counters of [`fault_ahead_window_never_oom_kills`]: the pages child A touched, and
/// for each child (A, B, C, in this order) the address of its mapping and (B and C) the pages it
/// held before exiting.
const TOUCHED: usize = 0;
const MAPPED_AT: usize = 1;
const HELD: usize = 4;

/// A new memory cgroup (see [`sys::new_memcg`]) that may charge `room` bytes more than it holds
/// now, none of it to swap.
fn memcg_with_room(prefix: &str, room: u64) -> Result<std::path::PathBuf, Outcome> {
    let cg = sys::new_memcg(prefix)?;
    let limit = || -> TestResult {
        let current = fs::read_to_string(cg.join("memory.current")).context("memory.current")?;
        let current: u64 = current
            .trim()
            .parse()
            .map_err(|_| Outcome::Fail(format!("memory.current {current:?}")))?;
        fs::write(cg.join("memory.max"), (current + room).to_string()).context("memory.max")?;
        if cg.join("memory.swap.max").exists() {
            fs::write(cg.join("memory.swap.max"), "0").context("memory.swap.max")?;
        }
        Ok(())
    };
    match limit() {
        Ok(()) => Ok(cg),
        Err(e) => {
            let _ = fs::remove_dir(&cg);
            Err(e)
        }
    }
}

/// The pages of the window that fault-ahead allocates beyond the faulting page are a guess,
/// allocated without reclaim (but charged to the memory cgroup) and never mapped where they
/// would need a page table of their own: they never call in the OOM killer. Each child below
/// runs in a memory cgroup of its own with 1 MiB of room. Child A touches pages of the device
/// one at a time until the cgroup's OOM killer ends it, which measures the room, c pages, in real
/// use. Children B and C each do the same up to page c - 12, then advise `MADV_SEQUENTIAL` and
/// touch pages c - 12 to c - 9, so that the 16-page window from c - 12 (to c + 3) would need 4
/// pages more than there is room for, while the pages they touch fit with 8 to spare. Each must
/// exit normally, with no OOM kill in its cgroup's `memory.events`, holding between c - 8 and c
/// pages.
///
/// Every mapping is aligned to a page table (the 2 MiB one page table maps), so that each of B
/// and C meets one bug, on every run. B's pages start at the mapping's start, as A's do, and its
/// whole window lies in that first page table: a guess allocated with reclaim would OOM-kill B
/// there. C's pages start further in, so that a page table starts at its page c - 8, where the
/// window must end: a window that ran on would map its guessed pages, once they had filled the
/// room, into a new page table, which `vm_insert_pages()` allocates with `GFP_KERNEL`, and the
/// OOM killer would end C for it.
///
/// The margin counts page tables, each a 4 KiB page charged to the cgroup. The room is half of
/// a page table's 512 pages, so A's pages 0 to c (the last one refused) lie in one page table,
/// and so do B's and C's own pages and B's window: with the window ending at the page table,
/// each child needs exactly one. All three map the same length from the same parent, so at the
/// same address, and need the same tables above it. Their other charges differ by less than a
/// page: the VMA that B's and C's advice splits off, and for C, whose offsets start further in,
/// at most one node more of the page array.
///
/// A guess must meet the room exactly, or a window that ran on would find room for its page
/// table after all: a guess, which never waits, ends where the cgroup's counter is full, while a
/// page table's charge drains the cgroup's stocks of charges and retries, and so finds any charge
/// that comes back meanwhile. So each child has a cgroup of its own, into which nothing that an
/// earlier child's exit frees late (its page tables, for one, are freed after an RCU grace
/// period) comes back in the middle of the window; and all three run on one CPU, where the
/// cgroup keeps its stock (up to 64 pages a CPU, which only a charge that may wait takes back
/// from another CPU). (A module whose window ran on had C OOM-killed here in 1 run of 4 with one
/// cgroup for all three, in 12 of 13 with that cgroup on one CPU, and in 10 of 10 as here.)
/// Ground truth: how each child ended, and its cgroup's own `memory.events`.
pub fn fault_ahead_window_never_oom_kills() -> TestResult {
    /// Room above what each cgroup holds at the start: half of what a page table maps.
    const ROOM: u64 = 1 << 20;
    let ps = page_size();
    let table = mmscope::PMD_SIZE / ps;
    let mut cgroups = Vec::new();
    let result = (|| -> TestResult {
        // The children inherit it: every charge, and the stock of charges, on one CPU.
        sys::pin_to_this_cpu().context("sched_setaffinity to this CPU")?;
        for name in ["a", "b", "c"] {
            cgroups.push(memcg_with_room(&format!("mmscope-ahead-{name}"), ROOM)?);
        }
        let counters = sys::SharedCounters::new().context("map shared counters")?;
        // A touches up to twice the room: the limit, not the mapping, ends the touching. C's
        // pages start up to a page table further in.
        let pages = 2 * ROOM as usize / ps;
        let len = pages * ps + mmscope::PMD_SIZE;
        // Child `i` (0: A, 1: B, 2: C) moves itself into its cgroup.
        let enter = |i: usize| {
            fs::write(
                cgroups[i].join("cgroup.procs"),
                std::process::id().to_string(),
            )
            .is_ok()
        };
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let map = |dev: &Device| dev.map_pmd_aligned(len, rw, libc::MAP_SHARED, 0);
        // The OOM killer prints its report (with a stack trace) to the console: bracket it
        // for the log judge, which allows a stack trace there and nothing else.
        expected_oom("begin");
        let a = in_child(|| {
            if !enter(0) {
                return 3;
            }
            let Ok(dev) = Device::open() else { return 4 };
            let Ok(m) = map(&dev) else { return 5 };
            counters.get(MAPPED_AT).store(m.addr() as u64, SeqCst);
            for p in 0..pages {
                m.write(p * ps, 1);
                counters.get(TOUCHED).store(p as u64 + 1, SeqCst);
            }
            0
        })
        .context("fork")?;
        expected_oom("end");
        let kills_a = oom_kills(&cgroups[0])?;
        let c = counters.get(TOUCHED).load(SeqCst) as usize;
        check_eq!(
            a,
            ChildEnd::Signaled(libc::SIGKILL),
            "child A, touching pages until the cgroup is full ({c} touched)"
        );
        check!(
            kills_a > 0,
            "memory.events of A's cgroup records no OOM kill"
        );
        check!(
            c >= 64,
            "child A touched only {c} pages before the OOM killer came"
        );
        // Child `i` (1: B, 2: C) touches its pages from page `skew` of its mapping on.
        let sequential = |i: usize, skew: usize| {
            if !enter(i) {
                return 3;
            }
            let Ok(dev) = Device::open() else { return 4 };
            let Ok(m) = map(&dev) else { return 5 };
            counters.get(MAPPED_AT + i).store(m.addr() as u64, SeqCst);
            let at = |p: usize| (skew + p) * ps;
            for p in 0..c - 12 {
                m.write(at(p), 1);
            }
            let rest = m.addr().wrapping_add(at(c - 12));
            // SAFETY: The rest of our mapping; the advice changes how it is faulted in, not
            // what it holds.
            if unsafe { libc::madvise(rest.cast(), len - at(c - 12), libc::MADV_SEQUENTIAL) } != 0 {
                return 6;
            }
            for p in c - 12..c - 8 {
                m.write(at(p), 1);
            }
            let Ok(s) = dev.mem_stats() else { return 7 };
            counters.get(HELD + i).store(s.obj_pages, SeqCst);
            0
        };
        // Runs child `i` from page `skew` of its mapping on: how it ended, the OOM kills in its
        // cgroup's `memory.events`, and the pages it held.
        let run = |i: usize, skew: usize| -> Result<(ChildEnd, u64, u64), Outcome> {
            // Should the child meet the OOM killer anyway, its report is bracketed too: the
            // failure is the test's to report.
            expected_oom("begin");
            let end = in_child(|| sequential(i, skew)).context("fork")?;
            expected_oom("end");
            let kills = oom_kills(&cgroups[i])?;
            Ok((end, kills, counters.get(HELD + i).load(SeqCst)))
        };
        // B from the page table's start; C so that a page table starts at its page c - 8.
        let (end_b, kills_b, held_b) = run(1, 0)?;
        let (end_c, kills_c, held_c) = run(2, (table - (c - 8) % table) % table)?;
        let mapped_at = |i: usize| counters.get(MAPPED_AT + i).load(SeqCst);
        println!(
            "# room c = {c} pages; B held {held_b} pages, C {held_c}; mapped at {:#x}, {:#x}, \
             {:#x}; OOM kills {kills_a} (A), {kills_b} (B), {kills_c} (C)",
            mapped_at(0),
            mapped_at(1),
            mapped_at(2)
        );
        let codes = "3: cgroup, 4: open, 5: mmap, 6: madvise, 7: MMSCOPE_IOC_MEM_STATS";
        check_eq!(
            end_b,
            ChildEnd::Exited(0),
            "child B, whose fault-ahead window from page c - 12 = {} lies in one page table and \
             reaches 4 pages past the room ({codes})",
            c - 12
        );
        check_eq!(kills_b, 0, "OOM kills in memory.events of B's cgroup");
        check_eq!(
            end_c,
            ChildEnd::Exited(0),
            "child C, whose fault-ahead window from page c - 12 = {} would run into a new page \
             table at page c - 8 ({codes})",
            c - 12
        );
        check_eq!(kills_c, 0, "OOM kills in memory.events of C's cgroup");
        for (child, held) in [("B", held_b), ("C", held_c)] {
            check!(
                (c as u64 - 8..=c as u64).contains(&held),
                "child {child} held {held} pages, not between c - 8 = {} and c = {c}",
                c - 8
            );
        }
        Ok(())
    })();
    for cg in &cgroups {
        fs::remove_dir(cg).context("remove a cgroup")?;
    }
    result
}
