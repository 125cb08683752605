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
