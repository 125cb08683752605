// SPDX-License-Identifier: GPL-2.0

//! The lazily allocating memory object: `mmap` of `/dev/mmscope` and its fault handler.
//!
//! Ground truth: `/proc/self/smaps` (what is mapped), `/proc/self/fdinfo` and the data itself
//! (what each mapping sees), checked against the module's own counters.

use crate::harness::{expect_errno, Context, Outcome, TestResult};
use crate::mm::become_user;
use crate::sys::{
    self, fork_child, in_child, page_size, smaps_rss_kb, ChildEnd, Pipe, SharedCounters,
};
use crate::{check, check_eq, skip};
use mmscope::{abi::MemStats, Device, Mapping};
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Barrier};

const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;
const SHARED: i32 = libc::MAP_SHARED;
const PRIVATE: i32 = libc::MAP_PRIVATE;
const GIB: usize = 1 << 30;

/// Opens the device and reads its counters, failing the test on error.
fn open() -> Result<(Device, MemStats), Outcome> {
    let dev = Device::open().context("open /dev/mmscope")?;
    let stats = dev.mem_stats().context("MMSCOPE_IOC_MEM_STATS")?;
    Ok((dev, stats))
}

/// Maps `pages` pages of `dev` from page `pgoff` on.
fn map(
    dev: &Device,
    pages: usize,
    prot: i32,
    flags: i32,
    pgoff: usize,
) -> Result<Mapping, Outcome> {
    let ps = page_size();
    dev.map(pages * ps, prot, flags, (pgoff * ps) as u64)
        .context(format!("mmap of {pages} pages at page offset {pgoff}"))
}

/// The counters now.
fn stats(dev: &Device) -> Result<MemStats, Outcome> {
    dev.mem_stats().context("MMSCOPE_IOC_MEM_STATS")
}

/// Expects an access done in a child to be killed by `SIGBUS`.
fn expect_sigbus(what: &str, access: impl FnOnce()) -> TestResult {
    let end = in_child(|| {
        access();
        0
    })?;
    check_eq!(end, ChildEnd::Signaled(libc::SIGBUS), "{what}");
    Ok(())
}

/// `mmap` of 1 GiB allocates nothing: no page in the counters, no RSS in smaps.
pub fn mmap_allocates_nothing() -> TestResult {
    let (dev, before) = open()?;
    let m = dev.map(GIB, RW, SHARED, 0).context("mmap 1 GiB")?;
    let after = stats(&dev)?;
    check_eq!(after.obj_pages, 0, "object pages after mmap");
    check_eq!(after.obj_faults, 0, "object faults after mmap");
    check_eq!(after.pages, before.pages, "module pages after mmap");
    check_eq!(
        smaps_rss_kb(m.addr() as usize)?,
        0,
        "smaps Rss of the new mapping"
    );
    Ok(())
}

/// Touching k distinct pages, by reads and by writes, allocates exactly k pages with k faults;
/// touching them again adds nothing. smaps and fdinfo agree with the counters.
pub fn touch_k_pages_k_faults() -> TestResult {
    let ps = page_size();
    let (dev, before) = open()?;
    let m = dev.map(GIB, RW, SHARED, 0).context("mmap 1 GiB")?;
    // Spread over the mapping, alternating first touch by read and by write.
    let offsets: Vec<usize> = (0..37).map(|i| i * 7919 * ps % GIB).collect();
    for (i, &off) in offsets.iter().enumerate() {
        if i % 2 == 0 {
            check_eq!(m.read(off), 0, "first read at {off:#x}");
        } else {
            m.write(off, 0xa5);
        }
    }
    let k = offsets.len() as u64;
    let s = stats(&dev)?;
    check_eq!(s.obj_pages, k, "object pages after touching {k} pages");
    check_eq!(s.obj_faults, k, "object faults after touching {k} pages");
    check_eq!(s.pages, before.pages + k, "module pages");
    check_eq!(
        smaps_rss_kb(m.addr() as usize)?,
        k * ps as u64 / 1024,
        "smaps Rss (kB)"
    );

    for &off in &offsets {
        m.read(off);
        m.write(off + 1, 1);
    }
    let again = stats(&dev)?;
    check_eq!(again.obj_pages, k, "object pages after touching them again");
    check_eq!(
        again.obj_faults,
        k,
        "object faults after touching them again"
    );

    let info = sys::fdinfo(dev.as_raw_fd())?;
    let field = |key: &str| info.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    check_eq!(
        field("mmscope-pages"),
        Some(k.to_string()),
        "fdinfo mmscope-pages"
    );
    check_eq!(
        field("mmscope-faults"),
        Some(k.to_string()),
        "fdinfo mmscope-faults"
    );
    check_eq!(
        field("mmscope-limit-pages"),
        Some(again.obj_limit_pages.to_string()),
        "fdinfo mmscope-limit-pages"
    );
    Ok(())
}

/// A page first touched by a read and one first touched by a write both start as zeroes.
pub fn first_touch_sees_zeroes() -> TestResult {
    let ps = page_size();
    let (dev, _) = open()?;
    let m = map(&dev, 2, RW, SHARED, 0)?;
    check!(
        (0..ps).all(|i| m.read(i) == 0),
        "page first touched by a read is not zero"
    );
    m.write(ps + 100, 7);
    check!(
        (ps..2 * ps).all(|i| i == ps + 100 || m.read(i) == 0),
        "page first touched by a write is not zero elsewhere"
    );
    check_eq!(m.read(ps + 100), 7, "the byte written");
    Ok(())
}

/// MAP_SHARED: a write is seen through every mapping of the same open file, by a forked child
/// and after munmap and mmap again; a second open is a different object.
pub fn shared_mappings_share_pages() -> TestResult {
    let ps = page_size();
    let (dev, _) = open()?;
    let a = map(&dev, 4, RW, SHARED, 0)?;
    let b = map(&dev, 4, RW, SHARED, 0)?;
    a.write(10, 0x11);
    check_eq!(
        b.read(10),
        0x11,
        "write through one mapping, read through another"
    );
    // A mapping at page offset 2 sees the same pages, shifted.
    let c = map(&dev, 2, RW, SHARED, 2)?;
    a.write(2 * ps + 5, 0x22);
    check_eq!(c.read(5), 0x22, "mapping at page offset 2");

    // The child writes through its copy of the mapping; the parent sees it.
    let end = in_child(|| {
        if a.read(10) != 0x11 {
            return 1;
        }
        a.write(3 * ps, 0x33);
        0
    })?;
    check_eq!(end, ChildEnd::Exited(0), "child saw the parent's write");
    check_eq!(b.read(3 * ps), 0x33, "parent sees the child's write");

    drop((a, b, c));
    let again = map(&dev, 4, RW, SHARED, 0)?;
    check_eq!(again.read(10), 0x11, "after munmap and mmap again");
    check_eq!(again.read(3 * ps), 0x33, "after munmap and mmap again");

    let (other, _) = open()?;
    let o = map(&other, 4, RW, SHARED, 0)?;
    check_eq!(
        o.read(10),
        0,
        "a second open must not share the first one's pages"
    );
    check_eq!(stats(&other)?.obj_pages, 1, "the second open's object");
    Ok(())
}

/// MAP_PRIVATE: reads see the object; writes are copied, private to the mapping; the object and
/// other mappings are unchanged.
pub fn private_mappings_copy_on_write() -> TestResult {
    let ps = page_size();
    let (dev, _) = open()?;
    let shared = map(&dev, 2, RW, SHARED, 0)?;
    shared.write(0, b'S');
    let p1 = map(&dev, 2, RW, PRIVATE, 0)?;
    let p2 = map(&dev, 2, RW, PRIVATE, 0)?;
    check_eq!(p1.read(0), b'S', "private mapping reads the object");
    p1.write(0, b'P');
    check_eq!(p1.read(0), b'P', "private mapping sees its own write");
    check_eq!(shared.read(0), b'S', "object after a private write");
    check_eq!(
        p2.read(0),
        b'S',
        "another private mapping after a private write"
    );
    // A later shared write shows in p2 (not yet copied) but not in p1 (copied).
    shared.write(0, b'T');
    check_eq!(p2.read(0), b'T', "uncopied private page follows the object");
    check_eq!(p1.read(0), b'P', "copied private page keeps its own data");
    // First touch by a private write: the object stays zero.
    p2.write(ps, b'Q');
    check_eq!(
        shared.read(ps),
        0,
        "object after a first-touch private write"
    );
    check_eq!(p2.read(ps), b'Q', "the private write");
    Ok(())
}

/// A first write to a page of a private mapping is one page fault, whether or not the object
/// held the page: the private copy is made during that fault, not by a second copy-on-write
/// fault after the object's page was mapped read-only. Ground truth: the thread's minor-fault
/// count from `getrusage`, and smaps' `Anonymous` for the copies.
pub fn private_first_write_one_fault() -> TestResult {
    const PAGES: usize = 64;
    let ps = page_size();
    let (dev, _) = open()?;
    // The object holds the first half of the pages, with 7 in their first byte.
    let shared = map(&dev, PAGES, RW, SHARED, 0)?;
    for p in 0..PAGES / 2 {
        shared.write(p * ps, 7);
    }
    let m = map(&dev, PAGES, RW, PRIVATE, 0)?;
    let before = stats(&dev)?;
    let flt = sys::minor_faults();
    for p in 0..PAGES {
        m.write(p * ps + 1, 9);
    }
    let faults = sys::minor_faults() - flt;
    let after = stats(&dev)?;
    check_eq!(
        faults,
        PAGES as u64,
        "minor faults for first writes to {PAGES} pages of a private mapping"
    );
    check_eq!(
        after.obj_faults - before.obj_faults,
        PAGES as u64,
        "object faults"
    );
    check_eq!(after.obj_pages, PAGES as u64, "pages the object holds");
    check_eq!(
        sys::smaps_kb(m.addr() as usize, "Anonymous")?,
        (PAGES * ps / 1024) as u64,
        "smaps Anonymous of the private mapping: one copy per page"
    );
    for p in 0..PAGES {
        let held = if p < PAGES / 2 { 7 } else { 0 };
        check_eq!(m.read(p * ps), held, "page {p}: the object's data, copied");
        check_eq!(m.read(p * ps + 1), 9, "page {p}: the private write");
        check_eq!(shared.read(p * ps + 1), 0, "page {p}: the object after it");
    }
    Ok(())
}

/// The fault counts the tests and `mmscope lazy` take with `getrusage` around a loop are the
/// faults on the memory the loop touches, and no others: the first count maps in the program's
/// own code, so no page of the loop's code is mapped by a fault inside a count. (Without it, a
/// first touch counted one fault too many in about one run in five: where file fault-around's
/// 64 KiB windows fall in the code moves with the load address.) Ground truth: smaps, where
/// each mapping of the executable is then resident in full.
pub fn fault_counts_exclude_own_code() -> TestResult {
    sys::minor_faults();
    let exe = fs::read_link("/proc/self/exe").context("readlink /proc/self/exe")?;
    let exe = exe.to_string_lossy();
    let maps = fs::read_to_string("/proc/self/maps").context("read /proc/self/maps")?;
    let mut seen = 0;
    for line in maps.lines() {
        let Some(vma) = sys::parse_maps_line(line) else {
            continue;
        };
        if vma.name != exe || !vma.perms.starts_with('r') {
            continue;
        }
        let addr = vma.start as usize;
        check_eq!(
            sys::smaps_kb(addr, "Rss").context("smaps Rss")?,
            sys::smaps_kb(addr, "Size").context("smaps Size")?,
            "smaps Rss and Size (kB) of {line}"
        );
        seen += 1;
    }
    check!(seen > 0, "no mapping of {exe} in /proc/self/maps");
    Ok(())
}

/// Faults on the device are handled under the VMA lock alone, as anonymous faults are: none is
/// sent back to be retried under the mmap lock. Ground truth: the kernel's own per-VMA lock
/// counters in `/proc/vmstat` (`CONFIG_PER_VMA_LOCK_STATS`), over first touches by read, by
/// write and by private write, and re-faults of held pages.
pub fn faults_under_vma_lock() -> TestResult {
    const PAGES: usize = 48;
    fn counters() -> Result<Option<(u64, u64)>, Outcome> {
        let text = fs::read_to_string("/proc/vmstat").context("read /proc/vmstat")?;
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse::<u64>().ok())
        };
        Ok(field("vma_lock_success").zip(field("vma_lock_retry")))
    }
    let Some(before) = counters()? else {
        skip!(
            "the kernel does not count per-VMA lock faults (CONFIG_PER_VMA_LOCK_STATS); \
             `make test-debug` runs it"
        );
    };
    let ps = page_size();
    let (dev, _) = open()?;
    let a = map(&dev, PAGES, RW, SHARED, 0)?;
    let b = map(&dev, PAGES, RW, PRIVATE, 0)?;
    let flt = sys::minor_faults();
    for p in 0..PAGES / 3 {
        a.read(p * ps);
    }
    for p in PAGES / 3..2 * PAGES / 3 {
        a.write(p * ps, 1);
    }
    for p in 2 * PAGES / 3..PAGES {
        b.write(p * ps, 2);
    }
    drop(a);
    let c = map(&dev, PAGES, libc::PROT_READ, SHARED, 0)?;
    for p in 0..PAGES {
        c.read(p * ps);
    }
    let faults = sys::minor_faults() - flt;
    let Some(after) = counters()? else {
        return Err(Outcome::Fail("/proc/vmstat lost its vma_lock lines".into()));
    };
    check_eq!(
        after.1 - before.1,
        0,
        "faults retried under the mmap lock ({faults} faults taken)"
    );
    check!(
        after.0 - before.0 >= faults,
        "{} faults handled under the VMA lock, fewer than the {faults} taken",
        after.0 - before.0
    );
    Ok(())
}

/// PROT_EXEC is refused: mmap with EPERM, and mprotect cannot add it later (EACCES).
pub fn exec_is_refused() -> TestResult {
    let ps = page_size();
    let (dev, _) = open()?;
    for flags in [SHARED, PRIVATE] {
        let res = dev.map(ps, libc::PROT_READ | libc::PROT_EXEC, flags, 0);
        expect_errno(res.map(|m| m.addr()), libc::EPERM, "mmap with PROT_EXEC")?;
        let m = map(&dev, 1, libc::PROT_READ, flags, 0)?;
        // SAFETY: `m` is our mapping; mprotect only changes its protection, if anything.
        let ret = unsafe { libc::mprotect(m.addr().cast(), ps, libc::PROT_READ | libc::PROT_EXEC) };
        let res = if ret == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        };
        expect_errno(res, libc::EACCES, "mprotect to PROT_EXEC")?;
    }
    Ok(())
}

/// With 8 threads touching the same 1024 pages at once, in the same order so that a thread that
/// starts late catches up with the faults of one that started early, each offset gets exactly one page and every thread sees every other thread's
/// writes. Repeated on fresh objects, as a collision is a matter of timing.
pub fn concurrent_faults_allocate_one_page_each() -> TestResult {
    const THREADS: usize = 8;
    const PAGES: usize = 1024;
    const ROUNDS: usize = 4;
    // SAFETY: sysconf has no memory-safety requirements.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if cpus < 2 {
        skip!("the guest has {cpus} CPU: faults cannot run in parallel");
    }
    let ps = page_size();
    let mut collisions = 0;
    for round in 0..ROUNDS {
        let (dev, _) = open()?;
        let m = Arc::new(map(&dev, PAGES, RW, SHARED, 0)?);
        let barrier = Arc::new(Barrier::new(THREADS));
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (m, barrier) = (m.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for page in 0..PAGES {
                        m.write(page * ps + t, t as u8 + 1);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| Outcome::Fail("a worker thread panicked".into()))?;
        }
        let s = stats(&dev)?;
        check_eq!(
            s.obj_pages,
            PAGES as u64,
            "round {round}: pages for {PAGES} touched pages"
        );
        check!(
            s.obj_faults >= PAGES as u64,
            "round {round}: {} faults",
            s.obj_faults
        );
        collisions += s.obj_faults - PAGES as u64;
        let check_map = map(&dev, PAGES, libc::PROT_READ, SHARED, 0)?;
        for page in 0..PAGES {
            for t in 0..THREADS {
                let got = check_map.read(page * ps + t);
                check_eq!(
                    got,
                    t as u8 + 1,
                    "round {round}: page {page}, thread {t}'s byte"
                );
            }
        }
    }
    println!("# {collisions} faults collided with another thread's fault on the same page");
    Ok(())
}

/// Partial munmap and mprotect split the mapping; the rest keeps its data and protection is
/// enforced per part.
pub fn partial_munmap_and_mprotect() -> TestResult {
    let ps = page_size();
    let (dev, _) = open()?;
    let m = map(&dev, 8, RW, SHARED, 0)?;
    for p in 0..8 {
        m.write(p * ps, p as u8 + 1);
    }
    let base = m.addr();
    // SAFETY: Pages 2 and 3 of our mapping; nothing else refers to them.
    check_eq!(
        unsafe { libc::munmap(base.add(2 * ps).cast(), 2 * ps) },
        0,
        "munmap pages 2-3"
    );
    // SAFETY: Page 5 of our mapping.
    let ret = unsafe { libc::mprotect(base.add(5 * ps).cast(), ps, libc::PROT_READ) };
    check_eq!(ret, 0, "mprotect page 5 read-only");
    for p in [0, 1, 4, 5, 6, 7] {
        check_eq!(m.read(p * ps), p as u8 + 1, "page {p} after the splits");
    }
    m.write(4 * ps, 0x44);
    let end = in_child(|| {
        m.write(5 * ps, 0x55);
        0
    })?;
    check_eq!(
        end,
        ChildEnd::Signaled(libc::SIGSEGV),
        "write to the read-only part"
    );
    let end = in_child(|| {
        m.read(2 * ps);
        0
    })?;
    check_eq!(
        end,
        ChildEnd::Signaled(libc::SIGSEGV),
        "read of the unmapped part"
    );
    // The object still holds the unmapped pages.
    let again = map(&dev, 8, libc::PROT_READ, SHARED, 0)?;
    check_eq!(again.read(2 * ps), 3, "page 2 through a new mapping");
    check_eq!(again.read(4 * ps), 0x44, "page 4 through a new mapping");
    check_eq!(stats(&dev)?.obj_pages, 8, "object pages");
    // The holes: unmap the rest piecewise so that drop does not unmap them twice.
    let (addr, len) = m.into_raw();
    // SAFETY: The whole range was our mapping; munmap of its holes is a no-op.
    check_eq!(
        unsafe { libc::munmap(addr.cast(), len) },
        0,
        "munmap of what is left"
    );
    Ok(())
}

/// Reserves `len` bytes of address space (an inaccessible anonymous mapping) and returns its
/// address, for `MAP_FIXED` and `MREMAP_FIXED` destinations.
fn reserve(len: usize) -> Result<*mut u8, Outcome> {
    let m = Mapping::new(len, libc::PROT_NONE, PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        .context("reserve address space")?;
    Ok(m.into_raw().0)
}

/// Reserves `pages` pages of address space (an inaccessible anonymous mapping), unmapped with
/// whatever was mapped over it when dropped: room for [`map_fixed`].
fn reserve_pages(pages: usize) -> Result<Mapping, Outcome> {
    Mapping::new(
        pages * page_size(),
        libc::PROT_NONE,
        PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    )
    .context("reserve address space")
}

/// Maps `pages` pages of `dev` from page `pgoff` on, shared, at exactly `addr` (`MAP_FIXED`).
///
/// # Safety
///
/// `addr..addr + pages * page_size()` must lie in a reservation of the caller's
/// ([`reserve_pages`]), which nothing else uses.
unsafe fn map_fixed(
    dev: &Device,
    addr: *mut u8,
    pages: usize,
    prot: i32,
    pgoff: usize,
) -> io::Result<()> {
    let ps = page_size();
    // SAFETY: The caller guarantees that the range is a reservation of its own, which MAP_FIXED
    // may replace.
    let got = unsafe {
        libc::mmap(
            addr.cast(),
            pages * ps,
            prot,
            SHARED | libc::MAP_FIXED,
            dev.as_raw_fd(),
            (pgoff * ps) as libc::off_t,
        )
    };
    if got == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `mremap`, as a `Mapping` on success.
fn mremap(old: Mapping, new_len: usize, flags: i32, dest: *mut u8) -> io::Result<Mapping> {
    let (addr, len) = old.into_raw();
    // SAFETY: `addr..addr + len` is a mapping we own; mremap moves or resizes it, possibly onto
    // `dest`, a range we reserved.
    let new = unsafe { libc::mremap(addr.cast(), len, new_len, flags, dest) };
    if new == libc::MAP_FAILED {
        let err = io::Error::last_os_error();
        // On failure the old mapping is unchanged: unmap it.
        // SAFETY: As above.
        drop(unsafe { Mapping::from_raw(addr, len) });
        return Err(err);
    }
    // SAFETY: mremap succeeded: `new` is now our mapping of `new_len` bytes.
    Ok(unsafe { Mapping::from_raw(new.cast(), new_len) })
}

/// mremap: moving keeps the data; shrinking keeps the rest; growing by moving maps more of the
/// object (an access past its limit is SIGBUS); growing in place fails with ENOMEM, as for
/// every `VM_MIXEDMAP` mapping.
pub fn mremap_move_shrink_grow() -> TestResult {
    let ps = page_size();
    let (dev, _) = open()?;
    let m = map(&dev, 4, RW, SHARED, 0)?;
    for p in 0..4 {
        m.write(p * ps, p as u8 + 10);
    }
    let dest = reserve(4 * ps)?;
    let fixed = libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED;
    let m = mremap(m, 4 * ps, fixed, dest).context("mremap move")?;
    check_eq!(m.addr(), dest, "mremap moved to the requested address");
    for p in 0..4 {
        check_eq!(m.read(p * ps), p as u8 + 10, "page {p} after the move");
    }
    let m = mremap(m, 2 * ps, 0, std::ptr::null_mut()).context("mremap shrink")?;
    check_eq!(m.read(ps), 11, "page 1 after the shrink");

    // In place: make sure the 4 pages after the mapping are free, then try to grow into them.
    let (addr, len) = m.into_raw();
    let room = reserve(6 * ps)?;
    let m = mremap(
        // SAFETY: `addr..addr + len` is our mapping.
        unsafe { Mapping::from_raw(addr, len) },
        2 * ps,
        fixed,
        room,
    )
    .context("move to a range with room after it")?;
    // SAFETY: The 4 pages after the mapping are the rest of our reservation.
    check_eq!(
        unsafe { libc::munmap(room.add(2 * ps).cast(), 4 * ps) },
        0,
        "free the room"
    );
    let (addr, len) = m.into_raw();
    // SAFETY: `addr..addr + len` is our mapping; on failure mremap leaves it unchanged.
    let grown = unsafe { libc::mremap(addr.cast(), len, 6 * ps, 0) };
    let res = if grown == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(grown)
    };
    // SAFETY: Whatever happened, this is our mapping again (grown, or unchanged).
    let m = unsafe { Mapping::from_raw(addr, if res.is_ok() { 6 * ps } else { len }) };
    expect_errno(res, libc::ENOMEM, "mremap growing in place")?;

    // Growing by moving, with the object limited to 5 pages.
    dev.set_limit(5 * ps as u64)
        .context("MMSCOPE_IOC_SET_LIMIT 5 pages")?;
    let dest = reserve(6 * ps)?;
    let m = mremap(m, 6 * ps, fixed, dest).context("mremap grow by moving")?;
    check_eq!(m.read(ps), 11, "page 1 after the grow");
    check_eq!(
        m.read(3 * ps),
        13,
        "page 3, outside the shrunk mapping but in the object"
    );
    check_eq!(m.read(4 * ps), 0, "page 4, new to the object");
    expect_sigbus("access to page 5, past the 5-page limit", || {
        m.read(5 * ps);
    })?;
    Ok(())
}

/// MADV_DONTNEED on a shared mapping drops its page table entries but not the object's pages:
/// a later read returns the same data.
pub fn madv_dontneed_keeps_data() -> TestResult {
    let ps = page_size();
    let (dev, _) = open()?;
    let m = map(&dev, 4, RW, SHARED, 0)?;
    for p in 0..4 {
        m.write(p * ps + 1, 0x60 + p as u8);
    }
    check_eq!(
        smaps_rss_kb(m.addr() as usize)?,
        4 * ps as u64 / 1024,
        "Rss before"
    );
    let faults = stats(&dev)?.obj_faults;
    // SAFETY: Our mapping; MADV_DONTNEED only drops its page table entries.
    let ret = unsafe { libc::madvise(m.addr().cast(), 4 * ps, libc::MADV_DONTNEED) };
    if ret != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOSYS) {
            skip!("madvise is not available (CONFIG_ADVISE_SYSCALLS=n)");
        }
        return Err(Outcome::Fail(format!("madvise(MADV_DONTNEED): {e}")));
    }
    check_eq!(
        smaps_rss_kb(m.addr() as usize)?,
        0,
        "Rss after MADV_DONTNEED"
    );
    for p in 0..4 {
        check_eq!(
            m.read(p * ps + 1),
            0x60 + p as u8,
            "page {p} after MADV_DONTNEED"
        );
    }
    let s = stats(&dev)?;
    check_eq!(s.obj_pages, 4, "object pages after MADV_DONTNEED");
    check!(
        s.obj_faults > faults,
        "reads after MADV_DONTNEED must fault again"
    );
    Ok(())
}

/// An mmap reaching past the size limit fails with EINVAL, before and after lowering it, and
/// also when it is placed right after a mapping of the object that it would extend: a merge
/// with that mapping must not take it past the check.
pub fn mmap_past_limit_is_einval() -> TestResult {
    let ps = page_size();
    let (dev, s) = open()?;
    let limit = s.obj_limit_pages as usize;
    expect_errno(
        dev.map((limit + 1) * ps, RW, SHARED, 0).map(|m| m.addr()),
        libc::EINVAL,
        "mmap of limit + 1 pages",
    )?;
    expect_errno(
        dev.map(ps, RW, SHARED, (limit * ps) as u64)
            .map(|m| m.addr()),
        libc::EINVAL,
        "mmap of one page at the limit",
    )?;
    map(&dev, 1, RW, SHARED, limit - 1)?;
    dev.set_limit(16 * ps as u64)
        .context("lower the limit to 16 pages")?;
    check_eq!(stats(&dev)?.obj_limit_pages, 16, "limit after lowering");
    expect_errno(
        dev.map(17 * ps, RW, SHARED, 0).map(|m| m.addr()),
        libc::EINVAL,
        "mmap of 17 pages with a 16-page limit",
    )?;
    map(&dev, 16, RW, SHARED, 0)?;
    // Pages 8..16 mapped, then page 16 right after them, with the same protection and flags.
    let space = reserve_pages(10)?;
    let at = |page: usize| space.addr().wrapping_add(page * ps);
    // SAFETY: Pages 1..9 of our reservation.
    unsafe { map_fixed(&dev, at(1), 8, RW, 8) }.context("mmap of pages 8..16")?;
    expect_errno(
        // SAFETY: Page 9 of our reservation, right after the mapping of pages 8..16.
        unsafe { map_fixed(&dev, at(9), 1, RW, 16) },
        libc::EINVAL,
        "mmap of page 16 right after a mapping of pages 8..16, with a 16-page limit",
    )?;
    Ok(())
}

/// An access past a limit lowered after mmap is SIGBUS; accesses below it work.
pub fn access_past_limit_is_sigbus() -> TestResult {
    let ps = page_size();
    let (dev, _) = open()?;
    let m = map(&dev, 4, RW, SHARED, 0)?;
    dev.set_limit(2 * ps as u64)
        .context("lower the limit to 2 pages")?;
    m.write(ps, 1);
    expect_sigbus("write to page 2 with a 2-page limit", || m.write(2 * ps, 1))?;
    expect_sigbus("read of page 3 with a 2-page limit", || {
        m.read(3 * ps);
    })?;
    check_eq!(stats(&dev)?.obj_pages, 1, "object pages");
    Ok(())
}

/// MMSCOPE_IOC_SET_LIMIT refuses what it cannot do, with the documented errno, and loses
/// nothing: the limit stays as it was.
pub fn set_limit_bad_input() -> TestResult {
    let ps = page_size() as u64;
    let (dev, s) = open()?;
    let limit = s.obj_limit_pages * ps;
    expect_errno(dev.set_limit(0), libc::EINVAL, "limit 0")?;
    expect_errno(dev.set_limit(ps + 1), libc::EINVAL, "unaligned limit")?;
    expect_errno(
        dev.set_limit(limit + ps),
        libc::EINVAL,
        "limit above the current one",
    )?;
    expect_errno(dev.set_limit(!(ps - 1)), libc::EINVAL, "huge limit")?;
    let m = map(&dev, 8, RW, SHARED, 0)?;
    m.write(5 * ps as usize, 1);
    expect_errno(
        dev.set_limit(5 * ps),
        libc::EBUSY,
        "limit below a populated page",
    )?;
    check_eq!(
        stats(&dev)?.obj_limit_pages * ps,
        limit,
        "limit after the refusals"
    );
    dev.set_limit(6 * ps)
        .context("limit just above the populated page")?;
    // SAFETY: Address 0 is never mapped; the kernel must refuse to read it.
    let res = unsafe { dev.ioctl(mmscope::abi::MMSCOPE_IOC_SET_LIMIT, 0) };
    expect_errno(res, libc::EFAULT, "NULL argument")?;
    Ok(())
}

/// MMSCOPE_IOC_MEM_STATS checks its size and flags.
pub fn mem_stats_bad_input() -> TestResult {
    let (dev, _) = open()?;
    let size = std::mem::size_of::<MemStats>() as u32;
    let call = |size: u32, flags: u32| {
        let mut s = MemStats {
            size,
            flags,
            ..Default::default()
        };
        // SAFETY: The ioctl reads and writes at most one MemStats at the pointer.
        let res = unsafe {
            dev.ioctl(
                mmscope::abi::MMSCOPE_IOC_MEM_STATS,
                &mut s as *mut _ as usize,
            )
        };
        res.map(|_| s)
    };
    expect_errno(call(0, 0), libc::EINVAL, "size 0")?;
    expect_errno(call(size - 8, 0), libc::EINVAL, "size one field short")?;
    expect_errno(call(size, 1), libc::EINVAL, "unknown flag")?;
    // SAFETY: Address 0 is never mapped.
    let res = unsafe { dev.ioctl(mmscope::abi::MMSCOPE_IOC_MEM_STATS, 0) };
    expect_errno(res, libc::EFAULT, "NULL argument")?;
    // A newer, larger struct: the kernel writes what it knows and says how much.
    let mut big = [0u64; 32];
    big[0] = 256;
    // SAFETY: 256 writable bytes at the pointer.
    unsafe {
        dev.ioctl(
            mmscope::abi::MMSCOPE_IOC_MEM_STATS,
            big.as_mut_ptr() as usize,
        )
    }
    .context("MMSCOPE_IOC_MEM_STATS with size 256")?;
    check_eq!(big[0] & 0xffff_ffff, size as u64, "size written back");
    check!(
        big[size as usize / 8..].iter().all(|&w| w == 0),
        "wrote past its own struct"
    );
    Ok(())
}

/// Pages live as long as the object: closing the file keeps them while a mapping exists; the
/// last munmap frees them all and the module-wide counters return to where they were.
pub fn pages_freed_with_last_user() -> TestResult {
    let ps = page_size();
    let (probe, before) = open()?;
    let dev = Device::open().context("open /dev/mmscope")?;
    let m = map(&dev, 10, RW, SHARED, 0)?;
    for p in 0..10 {
        m.write(p * ps, 1);
    }
    drop(dev);
    let mid = stats(&probe)?;
    check_eq!(
        mid.pages,
        before.pages + 10,
        "pages after close, mapping alive"
    );
    check_eq!(
        mid.objects,
        before.objects + 1,
        "objects after close, mapping alive"
    );
    check_eq!(m.read(9 * ps), 1, "data after close");
    drop(m);
    let after = stats(&probe)?;
    check_eq!(after.pages, before.pages, "pages after the last munmap");
    check_eq!(after.pages_freed, before.pages_freed + 10, "pages freed");
    check_eq!(
        after.objects,
        before.objects,
        "objects after the last munmap"
    );
    check!(
        after.peak_pages >= before.pages + 10,
        "peak below what was allocated"
    );
    Ok(())
}

/// Fault-around: a new mapping of a populated object maps its pages in fewer faults than pages.
pub fn fault_around_maps_resident_pages() -> TestResult {
    let ps = page_size();
    let (dev, _) = open()?;
    let a = map(&dev, 32, RW, SHARED, 0)?;
    for p in 0..32 {
        a.write(p * ps, p as u8);
    }
    drop(a);
    let before = stats(&dev)?;
    let b = map(&dev, 32, libc::PROT_READ, SHARED, 0)?;
    for p in 0..32 {
        check_eq!(b.read(p * ps), p as u8, "page {p} through the new mapping");
    }
    let after = stats(&dev)?;
    let faults = after.obj_faults - before.obj_faults;
    let around = after.obj_faultaround_pages - before.obj_faultaround_pages;
    check!(
        faults < 32,
        "{faults} faults for 32 resident pages: no fault-around"
    );
    check_eq!(faults + around, 32, "faults + fault-around pages");
    check_eq!(
        smaps_rss_kb(b.addr() as usize)?,
        32 * ps as u64 / 1024,
        "Rss of the new mapping"
    );
    Ok(())
}

/// Fault-around applies to pages the object held before the fault: the first touch of a page
/// maps that page alone, even among held neighbours; a fault on a held page maps its held
/// neighbours in the 64 KiB window.
pub fn fault_around_only_on_held_pages() -> TestResult {
    let ps = page_size();
    let (dev, _) = open()?;
    // Pages 0..16 held, but for page 5.
    let a = map(&dev, 16, RW, SHARED, 0)?;
    for p in (0..16).filter(|&p| p != 5) {
        a.write(p * ps, 1);
    }
    drop(a);
    let b = map(&dev, 16, RW, SHARED, 0)?;
    let before = stats(&dev)?;
    b.write(5 * ps, 2);
    let first = stats(&dev)?;
    check_eq!(
        first.obj_faults - before.obj_faults,
        1,
        "faults for the first touch of page 5"
    );
    check_eq!(
        first.obj_faultaround_pages - before.obj_faultaround_pages,
        0,
        "pages mapped around a first touch"
    );
    check_eq!(b.read(4 * ps), 1, "page 4 through the new mapping");
    let held = stats(&dev)?;
    check_eq!(held.obj_faults - first.obj_faults, 1, "faults for page 4");
    // The window is the aligned 64 KiB of virtual addresses around the fault, within the VMA.
    let start = b.addr() as usize;
    let at = start + 4 * ps;
    let lo = (at & !0xffff).max(start);
    let hi = ((at & !0xffff) + 0x10000).min(start + 16 * ps);
    let window: Vec<usize> = (lo..hi).step_by(ps).map(|a| (a - start) / ps).collect();
    let expected = window.iter().filter(|&&p| p != 4 && p != 5).count() as u64;
    check_eq!(
        held.obj_faultaround_pages - first.obj_faultaround_pages,
        expected,
        "pages mapped around a fault on a held page (the window {window:?} but 4 and 5)"
    );
    for p in 0..16 {
        check_eq!(b.read(p * ps), if p == 5 { 2 } else { 1 }, "page {p}");
    }
    let end = stats(&dev)?;
    check_eq!(
        (end.obj_faults - held.obj_faults)
            + (end.obj_faultaround_pages - held.obj_faultaround_pages),
        16 - 2 - expected,
        "the pages outside that window, each mapped once (by a fault or around one)"
    );
    Ok(())
}

/// `madvise(addr, len, advice)` on a mapping, skipping the test where the kernel has no
/// `madvise`.
fn advise(m: &Mapping, len: usize, advice: i32, name: &str) -> TestResult {
    // SAFETY: Our own mapping; the advice changes how it is faulted in, not what it holds.
    if unsafe { libc::madvise(m.addr().cast(), len, advice) } != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOSYS) {
            skip!("madvise is not available (CONFIG_ADVISE_SYSCALLS=n)");
        }
        return Err(Outcome::Fail(format!("madvise({name}): {e}")));
    }
    Ok(())
}

/// Fault-ahead, which `MADV_SEQUENTIAL` opts into: a fault allocates and maps the 16 pages
/// (64 KiB) from the faulting one on, within the mapping and the size limit, so a sequential
/// first touch takes one fault per 16 pages. `MADV_NORMAL` makes the mapping exactly lazy
/// again. Ground truth: the thread's minor faults, smaps `Rss`, and the data.
pub fn fault_ahead_on_madv_sequential() -> TestResult {
    const PAGES: usize = 256;
    const AHEAD: u64 = 16;
    let ps = page_size();
    let (dev, _) = open()?;
    // Aligned to a page table, whose end would end a window.
    let m = dev
        .map_pmd_aligned(PAGES * ps, RW, SHARED, 0)
        .context("mmap aligned to a page table")?;
    advise(&m, PAGES * ps, libc::MADV_SEQUENTIAL, "MADV_SEQUENTIAL")?;
    let before = stats(&dev)?;
    let flt = sys::minor_faults();
    for p in 0..100 {
        m.write(p * ps + 1, p as u8);
    }
    let faults = sys::minor_faults() - flt;
    let s = stats(&dev)?;
    // Faults at pages 0, 16, ..., 96; the last maps up to page 111.
    check_eq!(
        faults,
        7,
        "minor faults for a sequential first touch of 100 pages"
    );
    check_eq!(s.obj_faults - before.obj_faults, 7, "object faults");
    check_eq!(s.obj_pages, 7 * AHEAD, "pages held: 100 touched, 12 ahead");
    check_eq!(
        s.obj_faultaround_pages - before.obj_faultaround_pages,
        7 * (AHEAD - 1),
        "pages mapped ahead of a fault"
    );
    check_eq!(
        smaps_rss_kb(m.addr() as usize)?,
        7 * AHEAD * ps as u64 / 1024,
        "smaps Rss"
    );
    for p in 0..7 * AHEAD as usize {
        let want = if p < 100 { p as u8 } else { 0 };
        check_eq!(m.read(p * ps + 1), want, "page {p}");
    }

    // Back to exactly lazy.
    advise(&m, PAGES * ps, libc::MADV_NORMAL, "MADV_NORMAL")?;
    let s = stats(&dev)?;
    for p in 150..160 {
        m.write(p * ps, 1);
    }
    let lazy = stats(&dev)?;
    check_eq!(
        lazy.obj_faults - s.obj_faults,
        10,
        "faults for 10 pages after MADV_NORMAL"
    );
    check_eq!(
        lazy.obj_pages - s.obj_pages,
        10,
        "pages for 10 pages after MADV_NORMAL"
    );

    // The size limit ends the window: lowered to 200 pages, a fault at page 192 allocates
    // pages 192..200 only, and page 200 is still past the limit.
    dev.set_limit((200 * ps) as u64)
        .context("MMSCOPE_IOC_SET_LIMIT to 200 pages")?;
    advise(&m, PAGES * ps, libc::MADV_SEQUENTIAL, "MADV_SEQUENTIAL")?;
    m.write(192 * ps, 1);
    let limited = stats(&dev)?;
    check_eq!(
        limited.obj_pages - lazy.obj_pages,
        8,
        "pages for a fault 8 pages below the limit"
    );
    expect_sigbus("an access at the limit after fault-ahead", || {
        m.write(200 * ps, 1);
    })?;
    Ok(())
}

/// The per-user allowance: with `max_mb=1` loaded, the objects of one user (here root) hold
/// 256 pages between them, and the next first touch in any of them is SIGBUS; fdinfo's
/// `mmscope-user-pages` counts the user's pages. `max_mb=0` is refused at load.
pub fn user_cap_is_sigbus() -> TestResult {
    let Ok(ko) = std::env::var("MMSCOPE_KO") else {
        skip!("MMSCOPE_KO does not name the module file, so it cannot be reloaded");
    };
    let ps = page_size();
    let reload = |params: &str| sys::reload_module("mmscope", &ko, params);
    reload("max_mb=1").context("reload with max_mb=1")?;
    let result = (|| -> TestResult {
        let (dev, s) = open()?;
        let cap = (1 << 20) / ps;
        check_eq!(s.max_pages, cap as u64, "max_pages with max_mb=1");
        let (other, _) = open()?;
        let m = map(&dev, 300, RW, SHARED, 0)?;
        let n = map(&other, 300, RW, SHARED, 0)?;
        for p in 0..cap - 56 {
            m.write(p * ps, 1);
        }
        for p in 0..56 {
            n.write(p * ps, 1);
        }
        expect_sigbus(
            "a first touch past the allowance, in the first object",
            || m.write((cap - 56) * ps, 1),
        )?;
        expect_sigbus(
            "a first touch past the allowance, in the second object",
            || n.write(56 * ps, 1),
        )?;
        check_eq!(m.read(ps), 1, "a page held within the allowance");
        check_eq!(
            stats(&dev)?.pages,
            cap as u64,
            "module pages at the allowance"
        );
        check_eq!(user_pages(&other)?, cap as u64, "fdinfo mmscope-user-pages");
        drop((n, other));
        m.write((cap - 56) * ps, 1);
        check_eq!(
            user_pages(&dev)?,
            (cap - 55) as u64,
            "the user's pages once the second object is gone"
        );
        Ok(())
    })();
    let bad = reload("max_mb=0");
    reload("").context("reload with the default parameters")?;
    result?;
    expect_errno(bad, libc::EINVAL, "load with max_mb=0")?;
    Ok(())
}

/// The module-wide cap (`total_max_mb`) bounds all objects together, above each user's
/// allowance: with an allowance of 2 MiB and a cap of 1 MiB, one user's first touches raise
/// `SIGBUS` at 1 MiB; fdinfo shows the cap; a load with `total_max_mb=0` is refused.
pub fn module_wide_cap_is_sigbus() -> TestResult {
    let Ok(ko) = std::env::var("MMSCOPE_KO") else {
        skip!("MMSCOPE_KO does not name the module file, so it cannot be reloaded");
    };
    let ps = page_size();
    let reload = |params: &str| sys::reload_module("mmscope", &ko, params);
    reload("max_mb=2 total_max_mb=1").context("reload with max_mb=2 total_max_mb=1")?;
    let result = (|| -> TestResult {
        let (dev, s) = open()?;
        let cap = (1 << 20) / ps;
        check_eq!(s.max_pages, 2 * cap as u64, "max_pages with max_mb=2");
        let info = sys::fdinfo(dev.as_raw_fd()).context("fdinfo")?;
        check!(
            info.iter()
                .any(|(k, v)| k == "mmscope-total-max-pages" && *v == cap.to_string()),
            "fdinfo shows the module-wide cap of {cap} pages: {info:?}"
        );
        let m = map(&dev, 2 * cap, RW, SHARED, 0)?;
        for p in 0..cap {
            m.write(p * ps, 1);
        }
        expect_sigbus("a first touch past the module-wide cap", || {
            m.write(cap * ps, 1)
        })?;
        check_eq!(stats(&dev)?.pages, cap as u64, "module pages at the cap");
        check_eq!(user_pages(&dev)?, cap as u64, "the user's pages at the cap");
        Ok(())
    })();
    let bad = reload("total_max_mb=0");
    reload("").context("reload with the default parameters")?;
    result?;
    expect_errno(bad, libc::EINVAL, "load with total_max_mb=0")?;
    Ok(())
}

/// `mmscope-user-pages` in the fdinfo of `dev`: the pages all objects of its user hold.
fn user_pages(dev: &Device) -> Result<u64, Outcome> {
    let info = sys::fdinfo(dev.as_raw_fd()).context("fdinfo")?;
    info.iter()
        .find(|(k, _)| k == "mmscope-user-pages")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| Outcome::Fail(format!("no mmscope-user-pages in fdinfo: {info:?}")))
}

/// What a user's process in [`one_user_cannot_starve_another`] saw once it filled its
/// allowance, in [`SharedCounters`] slots from its own base. This slot: 0 while it runs, then
/// one more than the step that failed (1 if none did).
const SEEN_DONE: usize = 0;
/// Its first object's pages.
const SEEN_OBJ_PAGES: usize = 1;
/// The module's pages.
const SEEN_PAGES: usize = 2;
/// `max_pages`.
const SEEN_MAX_PAGES: usize = 3;
/// Its user's pages, from fdinfo.
const SEEN_USER_PAGES: usize = 4;
/// Slots per process.
const SEEN_SLOTS: usize = 5;
/// What the failed steps of [`fill_allowance`] are.
const FILL_STEPS: &str = "2: setuid, 3: open, 4: mmap, 5: a first-touch fault was SIGBUS within \
    the allowance, 10-11: second object, 12-13: no SIGBUS past the allowance, 14-15: stats";

/// Becomes `uid` and fills its allowance of `cap` pages with two objects: 200 pages in the
/// first, the rest in a second; then a first touch past the allowance in each, in a child,
/// must be SIGBUS. Records what it saw in `seen` from `base`, then holds its objects until
/// `hold` (if any) says; returns 0, or the step that failed ([`FILL_STEPS`]).
fn fill_allowance(
    uid: u32,
    cap: usize,
    seen: &SharedCounters,
    base: usize,
    hold: Option<&Pipe>,
) -> i32 {
    const FIRST: usize = 200;
    let ps = page_size();
    if !become_user(uid) {
        return 2;
    }
    let Ok(dev) = Device::open() else { return 3 };
    let Ok(first) = dev.map(300 * ps, RW, SHARED, 0) else {
        return 4;
    };
    let Ok(other) = Device::open() else { return 10 };
    let Ok(second) = other.map(300 * ps, RW, SHARED, 0) else {
        return 11;
    };
    // In a child, so that a SIGBUS within the allowance is a step that failed.
    let touched = in_child(|| {
        for p in 0..FIRST {
            first.write(p * ps, 1);
        }
        for p in 0..cap - FIRST {
            second.write(p * ps, 1);
        }
        0
    });
    if touched.ok() != Some(ChildEnd::Exited(0)) {
        return 5;
    }
    for (m, at, step) in [(&first, FIRST, 12), (&second, cap - FIRST, 13)] {
        let end = in_child(|| {
            m.write(at * ps, 1);
            0
        });
        if end.ok() != Some(ChildEnd::Signaled(libc::SIGBUS)) {
            return step;
        }
    }
    let Ok(s) = dev.mem_stats() else { return 14 };
    let Ok(user) = user_pages(&dev) else {
        return 15;
    };
    seen.get(base + SEEN_OBJ_PAGES).store(s.obj_pages, Relaxed);
    seen.get(base + SEEN_PAGES).store(s.pages, Relaxed);
    seen.get(base + SEEN_MAX_PAGES).store(s.max_pages, Relaxed);
    seen.get(base + SEEN_USER_PAGES).store(user, Relaxed);
    seen.get(base + SEEN_DONE).store(1, Relaxed);
    if let Some(hold) = hold {
        hold.recv();
    }
    0
}

/// No user can starve another: with `max_mb=1` loaded (256 pages each), user 1000 fills its
/// allowance with two objects until its faults are SIGBUS, and while it holds them, user
/// 1001's first touches of its own objects get pages, up to an allowance of its own, and the
/// counters say so: each user holds its allowance, the module both. When user 1000's objects
/// are gone, its allowance is whole again.
pub fn one_user_cannot_starve_another() -> TestResult {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        skip!("needs root to create processes of other users");
    }
    let Ok(ko) = std::env::var("MMSCOPE_KO") else {
        skip!("MMSCOPE_KO does not name the module file, so it cannot be reloaded");
    };
    let cap = (1 << 20) / page_size();
    sys::reload_module("mmscope", &ko, "max_mb=1").context("reload with max_mb=1")?;
    let result = (|| -> TestResult {
        let seen = SharedCounters::new().context("shared counters")?;
        let at = |process: usize, slot: usize| seen.get(process * SEEN_SLOTS + slot).load(Relaxed);
        let hold = Pipe::new()?;
        // uid 1000 fills its allowance, and holds it until told.
        let mut holder = fork_child(|| {
            let step = fill_allowance(1000, cap, &seen, 0, Some(&hold));
            seen.get(SEEN_DONE).store(step as u64 + 1, Relaxed);
            step
        })
        .context("fork uid 1000")?;
        while at(0, SEEN_DONE) == 0 {
            if let Some(end) = holder.try_wait().context("uid 1000")? {
                return Err(Outcome::Fail(format!("uid 1000 ended early: {end:?}")));
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        check_eq!(
            at(0, SEEN_DONE),
            1,
            "uid 1000 filled its allowance ({FILL_STEPS})"
        );
        check_eq!(at(0, SEEN_USER_PAGES), cap as u64, "uid 1000's pages");
        check_eq!(
            at(0, SEEN_OBJ_PAGES),
            200,
            "uid 1000's first object's pages"
        );
        check_eq!(at(0, SEEN_MAX_PAGES), cap as u64, "max_pages");
        let before = at(0, SEEN_PAGES);

        // `mmscope lazy` of uid 1001 counts what uid 1001 may still allocate, not what all users
        // hold: a quarter of its allowance, touched page by page, while uid 1000 holds its own.
        if let Ok(bin) = std::env::var("MMSCOPE_BIN") {
            let (code, out, err) =
                crate::cli::spawn_as(1001, &[&bin, "lazy", "256K", "--rows", "1", "--json"])
                    .context("mmscope lazy as uid 1001")?
                    .output()
                    .context("mmscope lazy as uid 1001")?;
            check_eq!(
                code,
                Some(0),
                "mmscope lazy 256K as uid 1001 while uid 1000 holds its allowance: {err}"
            );
            check!(
                out.lines().any(|l| l.contains("\"mmscope_pages\":64")),
                "uid 1001's lazy run got its 64 pages: {out}"
            );
        }

        // While uid 1000 holds its pages, uid 1001's faults get pages of their own.
        let other =
            in_child(|| fill_allowance(1001, cap, &seen, SEEN_SLOTS, None)).context("uid 1001")?;
        check_eq!(
            other,
            ChildEnd::Exited(0),
            "uid 1001 filled an allowance of its own while uid 1000 held its ({FILL_STEPS})"
        );
        check_eq!(at(1, SEEN_USER_PAGES), cap as u64, "uid 1001's pages");
        check_eq!(
            at(1, SEEN_OBJ_PAGES),
            200,
            "uid 1001's first object's pages"
        );
        check_eq!(
            at(1, SEEN_PAGES),
            before + cap as u64,
            "module pages: both users' allowances"
        );
        println!(
            "# max_mb=1: uid 1000 holds {} pages (its allowance, a first touch past it SIGBUS); \
             meanwhile uid 1001's mmscope lazy 256K got 64 pages and it filled {} pages of its \
             own; the module holds {}",
            at(0, SEEN_USER_PAGES),
            at(1, SEEN_USER_PAGES),
            at(1, SEEN_PAGES)
        );

        // uid 1000's objects go: its allowance is whole again.
        hold.send(1);
        check_eq!(
            holder.wait().context("wait for uid 1000")?,
            ChildEnd::Exited(0),
            "uid 1000"
        );
        let again = in_child(|| fill_allowance(1000, cap, &seen, 2 * SEEN_SLOTS, None))
            .context("uid 1000")?;
        check_eq!(
            again,
            ChildEnd::Exited(0),
            "uid 1000 filled its allowance again ({FILL_STEPS})"
        );
        check_eq!(at(2, SEEN_USER_PAGES), cap as u64, "uid 1000's pages again");
        check_eq!(
            at(2, SEEN_PAGES),
            before,
            "module pages: one allowance again"
        );
        Ok(())
    })();
    sys::reload_module("mmscope", &ko, "").context("reload with the default parameters")?;
    result
}

/// Pages are charged to the memory cgroup of the task that faults them in, and uncharged when
/// they are freed: `memory.current` of a fresh cgroup grows by at least their size and shrinks
/// by it, but for what the controller keeps charged in its per-CPU batches.
pub fn pages_charged_to_callers_memcg() -> TestResult {
    const PAGES: usize = 2048;
    // The memory controller charges ahead in batches of 64 pages per CPU (MEMCG_CHARGE_BATCH)
    // and keeps the rest of a batch charged after the pages are freed.
    const BATCH: usize = 64;
    let ps = page_size();
    let root = Path::new("/sys/fs/cgroup");
    let cg = sys::new_memcg("mmscope-test")?;
    let result = (|| -> TestResult {
        fs::write(cg.join("cgroup.procs"), std::process::id().to_string())
            .context("move into the cgroup")?;
        let current = || -> Result<u64, Outcome> {
            let text = fs::read_to_string(cg.join("memory.current")).context("memory.current")?;
            text.trim()
                .parse()
                .map_err(|_| Outcome::Fail(format!("memory.current {text:?}")))
        };
        let (dev, _) = open()?;
        let m = map(&dev, PAGES, RW, SHARED, 0)?;
        let before = current()?;
        for p in 0..PAGES {
            m.write(p * ps, 1);
        }
        let touched = current()?;
        drop((m, dev));
        let freed = current()?;
        let size = (PAGES * ps) as u64;
        check!(
            touched >= before + size,
            "memory.current grew by {} bytes for {size} bytes of pages",
            touched.saturating_sub(before)
        );
        // SAFETY: sysconf has no preconditions.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as u64;
        let slack = (BATCH * ps) as u64 * cpus;
        check!(
            freed + size <= touched + slack,
            "memory.current shrank by {} bytes when {size} bytes of pages were freed \
             (allowing {slack} bytes of per-CPU charge batches)",
            touched.saturating_sub(freed)
        );
        Ok(())
    })();
    // Leave the cgroup so that it can be removed.
    fs::write(root.join("cgroup.procs"), std::process::id().to_string())
        .context("move back to the root cgroup")?;
    fs::remove_dir(&cg).context("remove the cgroup")?;
    result
}

/// Once every test process is gone, no page is left allocated and only our object is alive.
pub fn nothing_left_allocated() -> TestResult {
    let (_dev, s) = open()?;
    check_eq!(s.pages, 0, "pages allocated with no user left");
    check_eq!(s.objects, 1, "objects alive besides this open");
    Ok(())
}
