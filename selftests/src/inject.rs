// SPDX-License-Identifier: GPL-2.0

//! Allocation failures, injected (the debug kernel: `CONFIG_FAILSLAB`, `CONFIG_FAIL_PAGE_ALLOC`).
//!
//! Each operation runs again and again with `/proc/thread-self/fail-nth` set to 1, 2, 3, ...:
//! the Nth slab or page allocation this thread makes fails, and no other, in no other task.
//! When `fail-nth` reads back 0 the failure was injected; when it does not, the operation made
//! fewer allocations and every one of its failure paths has run. Each injected failure must end
//! as documented (`ENOMEM` from a system call; for a page fault, `VM_FAULT_OOM`, which the
//! kernel answers by retrying the fault), the operation must succeed again at once without
//! injection, and the module's counters must come back to where they were: nothing leaked,
//! nothing counted twice. kmemleak, scanned at the end of the run, checks the rest.

use crate::harness::{Context, Outcome, TestResult};
use crate::sys::page_size;
use crate::{check, check_eq, skip};
use mmscope::{abi, Device};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The most injection points one operation may have before the test gives up on it.
const MAX_POINTS: u32 = 64;

/// The debugfs knobs, and this thread's `fail-nth`.
struct Injector {
    fail_nth: File,
}

impl Injector {
    /// Makes every slab and page allocation eligible (by default both skip the ones that may
    /// sleep, which is nearly all a driver makes) and quiet (a stack dump per injected failure
    /// would read as a splat); skips the test where the kernel has no fault injection.
    fn new() -> Result<Self, Outcome> {
        let dbg = "/sys/kernel/debug";
        if !std::path::Path::new(&format!("{dbg}/failslab")).exists() {
            skip!("no fault injection in this kernel (CONFIG_FAILSLAB); `make test-debug` runs it");
        }
        for (file, value) in [
            ("failslab/ignore-gfp-wait", "N"),
            ("failslab/verbose", "0"),
            ("fail_page_alloc/ignore-gfp-wait", "N"),
            ("fail_page_alloc/ignore-gfp-highmem", "N"),
            ("fail_page_alloc/min-order", "0"),
            ("fail_page_alloc/verbose", "0"),
        ] {
            let path = format!("{dbg}/{file}");
            std::fs::write(&path, value).context(&path)?;
        }
        let fail_nth = File::options()
            .read(true)
            .write(true)
            .open("/proc/thread-self/fail-nth")
            .context("/proc/thread-self/fail-nth")?;
        Ok(Self { fail_nth })
    }

    /// Fails this thread's `n`th allocation from now on (0: none).
    fn arm(&self, n: u32) -> io::Result<()> {
        self.fail_nth
            .write_at(n.to_string().as_bytes(), 0)
            .map(|_| ())
    }

    /// What is left of the count: 0 once the failure was injected.
    fn left(&self) -> io::Result<u32> {
        let mut buf = [0u8; 16];
        let n = self.fail_nth.read_at(&mut buf, 0)?;
        std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))
    }

    /// Runs `op` with its 1st, 2nd, ... allocation failing until it makes no more; checks each
    /// outcome and that `op` works again right after. Returns the failures injected.
    ///
    /// `op` must not allocate in userspace (a `brk` or `mmap` there would count) and must undo
    /// what it did, so that every run starts from the same state.
    fn each_failure(
        &self,
        what: &str,
        mut op: impl FnMut() -> io::Result<()>,
    ) -> Result<u32, Outcome> {
        for n in 1..=MAX_POINTS {
            self.arm(n).context("arm fail-nth")?;
            let res = op();
            let left = self.left().context("read fail-nth")?;
            self.arm(0).context("disarm fail-nth")?;
            if left != 0 {
                res.context(format!(
                    "{what} with its allocation {n} set to fail, not reached"
                ))?;
                return Ok(n - 1);
            }
            if let Err(e) = &res {
                check_eq!(
                    e.raw_os_error(),
                    Some(libc::ENOMEM),
                    "{what} with allocation {n} failing: {e}"
                );
            }
            op().context(format!("{what} right after allocation {n} failed"))?;
        }
        Err(Outcome::Fail(format!(
            "{what} makes more than {MAX_POINTS} allocations"
        )))
    }
}

/// The module-wide counters that must balance: pages held now, and live objects.
fn balance(dev: &Device) -> Result<(u64, u64), Outcome> {
    let s = dev.mem_stats().context("MMSCOPE_IOC_MEM_STATS")?;
    Ok((s.pages, s.objects))
}

/// `open`, `mmap` and every ioctl, each through every allocation failure it can meet: `ENOMEM`
/// or success, success again right after, and the module's counters unchanged.
pub fn syscalls_survive_allocation_failures() -> TestResult {
    let inj = Injector::new()?;
    let probe = Device::open().context("open /dev/mmscope")?;
    let before = balance(&probe)?;
    let dev = Device::open().context("open /dev/mmscope")?;
    let ps = page_size();
    let own = std::process::id() as i32;
    let here = &inj as *const Injector as u64;
    let mut records = vec![abi::Vma::default(); 64];
    let mut total = 0;
    let mut report = Vec::new();

    let mut count = |name: &str, n: u32| {
        total += n;
        report.push(format!("{name} {n}"));
    };
    count(
        "open",
        inj.each_failure("open", || Device::open().map(drop))?,
    );
    count(
        "mmap",
        inj.each_failure("mmap", || {
            dev.map(16 * ps, libc::PROT_READ, libc::MAP_SHARED, 0)
                .map(drop)
        })?,
    );
    count(
        "VERSION",
        inj.each_failure("MMSCOPE_IOC_VERSION", || dev.abi_version().map(drop))?,
    );
    count(
        "MEM_STATS",
        inj.each_failure("MMSCOPE_IOC_MEM_STATS", || dev.mem_stats().map(drop))?,
    );
    count(
        "SET_LIMIT",
        inj.each_failure("MMSCOPE_IOC_SET_LIMIT", || {
            Device::open().and_then(|d| d.set_limit(ps as u64))
        })?,
    );
    count(
        "MM_SUMMARY",
        inj.each_failure("MMSCOPE_IOC_MM_SUMMARY", || dev.mm_summary(None).map(drop))?,
    );
    count(
        "MM_SUMMARY pid",
        inj.each_failure("MMSCOPE_IOC_MM_SUMMARY of a pid", || {
            dev.mm_summary(Some(own)).map(drop)
        })?,
    );
    count(
        "VMA_LIST",
        inj.each_failure("MMSCOPE_IOC_VMA_LIST", || {
            dev.vma_list_page(None, 0, &mut records).map(drop)
        })?,
    );
    count(
        "VMA_QUERY",
        inj.each_failure("MMSCOPE_IOC_VMA_QUERY", || {
            dev.vma_query(None, here, false).map(drop)
        })?,
    );
    drop(dev);
    println!("# injected {total} failures: {}", report.join(", "));
    check!(total > 0, "no allocation failure was injected at all");
    check_eq!(
        balance(&probe)?,
        before,
        "pages held and objects after all of it"
    );
    Ok(())
}

/// Page faults through every allocation failure on their path (page tables, the page, the
/// page store's node and reference): the fault is retried (`VM_FAULT_OOM` outside a memory
/// cgroup's OOM), the access completes and reads zero, and the object holds exactly the pages
/// touched: none lost, none twice, none leaked.
pub fn faults_survive_allocation_failures() -> TestResult {
    let inj = Injector::new()?;
    let dev = Device::open().context("open /dev/mmscope")?;
    let ps = page_size();
    let pages = MAX_POINTS as usize + 2;
    let before = dev.mem_stats().context("MMSCOPE_IOC_MEM_STATS")?;
    let global_before = before.pages;
    let mut injected = 0;
    let mut touched = 0;
    // A fresh page (and, every 512 pages, a fresh page table) for each attempt: page offsets
    // far apart, each in a mapping of its own.
    let mut maps = Vec::with_capacity(pages);
    for i in 0..pages {
        maps.push(
            dev.map(
                ps,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                (i * 513 * ps) as u64,
            )
            .context("mmap")?,
        );
    }
    for n in 1..=MAX_POINTS {
        let m = &maps[touched];
        inj.arm(n).context("arm fail-nth")?;
        m.write(0, 0x5a);
        let left = inj.left().context("read fail-nth")?;
        inj.arm(0).context("disarm fail-nth")?;
        touched += 1;
        check_eq!(
            m.read(0),
            0x5a,
            "the page written with allocation {n} failing"
        );
        check_eq!(m.read(1), 0, "the rest of that page is zero");
        if left != 0 {
            break;
        }
        injected += 1;
    }
    let after = dev.mem_stats().context("MMSCOPE_IOC_MEM_STATS")?;
    println!("# {injected} allocation failures injected into page faults");
    check!(injected > 0, "no failure was injected into a fault");
    check_eq!(after.obj_pages, touched as u64, "pages the object holds");
    check_eq!(
        after.pages - global_before,
        touched as u64,
        "pages the module holds"
    );
    drop(maps);
    drop(dev);
    let probe = Device::open().context("open /dev/mmscope")?;
    check_eq!(
        probe.mem_stats().context("MMSCOPE_IOC_MEM_STATS")?.pages,
        global_before,
        "pages after the object is gone"
    );
    Ok(())
}
