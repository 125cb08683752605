// SPDX-License-Identifier: GPL-2.0

//! Stress against a model: processes and threads fault, write, fork, mremap, munmap,
//! mprotect, `MADV_DONTNEED`, walk their address space through the ioctls and open and close
//! objects of their own, all at once, on one shared object.
//!
//! Each thread owns some pages of the shared object and is the only one to write them, so the
//! model is exact: a page holds 0 or a value tagged with its owner, and at the end the value
//! its owner wrote last. The model also records every page any access touched (the module
//! allocates on reads too) and every page of the threads' own objects, so that the counters
//! must balance to the page: the shared object holds exactly the pages touched, and once all
//! is closed the module has freed exactly the pages ever allocated. Bounded in operations,
//! with fixed seeds printed for replay; each worker compares its VMA list with procfs at its
//! quiet point.

use crate::harness::{Context, Outcome, TestResult};
use crate::mm::listing_matches_procfs;
use crate::sys::{page_size, Rng};
use crate::{check, check_eq};
use mmscope::{Device, Mapping};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

/// Worker processes, threads in each, pages each thread owns, operations per thread.
const PROCS: usize = 3;
const THREADS: usize = 3;
const OWN: usize = 8;
const OPS: u32 = 400;
const PAGES: usize = PROCS * THREADS * OWN;
/// The seed of thread t of process p is `SEED + 16 * p + t`.
const SEED: u64 = 0x5eed_0000_0000_0001;

/// The model, in memory every process shares (`MAP_SHARED | MAP_ANONYMOUS`).
#[repr(C)]
struct Model {
    /// The sequence number the owner wrote last into each page (0: never written).
    last: [AtomicU64; PAGES],
    /// Whether any access touched each page.
    touched: [AtomicU8; PAGES],
    /// Pages the threads' own objects allocated.
    extra_pages: AtomicU64,
    /// Operations done, and failures (a worker's message is printed by the worker).
    ops: AtomicU64,
    failures: AtomicU32,
}

fn tag(page: usize, seq: u64) -> u64 {
    ((page as u64 + 1) << 40) | seq
}

/// Reads the u64 at the start of page `i` of `m`.
fn get(m: *mut u8, i: usize) -> u64 {
    // SAFETY: The callers pass a live mapping with at least `i + 1` pages.
    unsafe { (m.add(i * page_size()) as *const u64).read_volatile() }
}

fn set(m: *mut u8, i: usize, v: u64) {
    // SAFETY: As for `get`, and the mapping is writable.
    unsafe { (m.add(i * page_size()) as *mut u64).write_volatile(v) }
}

/// One thread's life: `OPS` random operations on its pages and its address space.
fn thread_main(
    dev: &Device,
    all: *mut u8,
    model: &Model,
    proc_no: usize,
    t: usize,
) -> Result<(), String> {
    let ps = page_size();
    let first = (proc_no * THREADS + t) * OWN;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let mut rng = Rng(SEED + 16 * proc_no as u64 + t as u64);
    let mut seq = 0u64;
    // The thread's own window onto its pages, moved and remapped as it goes.
    let map_window = || dev.map(OWN * ps, rw, libc::MAP_SHARED, (first * ps) as u64);
    let mut window = map_window().map_err(|e| format!("mmap: {e}"))?;
    let check_window = |w: &Mapping, what: &str| -> Result<(), String> {
        for k in 0..OWN {
            let want = match model.last[first + k].load(Relaxed) {
                0 => 0,
                s => tag(first + k, s),
            };
            model.touched[first + k].store(1, Relaxed);
            let got = get(w.addr(), k);
            if got != want {
                return Err(format!(
                    "after {what}: page {} holds {got:#x}, the model {want:#x}",
                    first + k
                ));
            }
        }
        Ok(())
    };
    for _ in 0..OPS {
        model.ops.fetch_add(1, Relaxed);
        match rng.below(11) {
            0 | 1 => {
                let k = rng.below(OWN as u64) as usize;
                seq += 1;
                model.touched[first + k].store(1, Relaxed);
                set(all, first + k, tag(first + k, seq));
                model.last[first + k].store(seq, Relaxed);
            }
            2 => check_window(&window, "reads through the window")?,
            3 => {
                let p = rng.below(PAGES as u64) as usize;
                model.touched[p].store(1, Relaxed);
                let v = get(all, p);
                if v != 0 && v >> 40 != p as u64 + 1 {
                    return Err(format!("page {p} holds {v:#x}, not its owner's tag"));
                }
            }
            4 => {
                // Grow by moving onto a reserved range (growing in place is ENOMEM for the
                // device, as documented), then shrink back.
                let len = OWN * ps;
                let anon = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
                let room = Mapping::new(2 * len, libc::PROT_NONE, anon, -1, 0)
                    .map_err(|e| format!("reserve: {e}"))?;
                let (to, _) = room.into_raw();
                let (addr, _) = window.into_raw();
                // SAFETY: Our own mapping of `len` bytes, moved onto our own reservation.
                let grown = unsafe {
                    libc::mremap(
                        addr.cast(),
                        len,
                        2 * len,
                        libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                        to,
                    )
                };
                if grown == libc::MAP_FAILED {
                    return Err(format!("mremap grow: {}", std::io::Error::last_os_error()));
                }
                // SAFETY: The moved mapping is ours; shrinking keeps its start.
                let back = unsafe { libc::mremap(grown, 2 * len, len, 0) };
                if back != grown {
                    return Err(format!(
                        "mremap shrink: {}",
                        std::io::Error::last_os_error()
                    ));
                }
                // SAFETY: `len` bytes at `back` are ours now.
                window = unsafe { Mapping::from_raw(back.cast(), len) };
                check_window(&window, "mremap")?;
            }
            5 => {
                drop(window);
                window = map_window().map_err(|e| format!("mmap again: {e}"))?;
                check_window(&window, "munmap and mmap")?;
            }
            6 => {
                // SAFETY: Our own mapping.
                let ret =
                    unsafe { libc::mprotect(window.addr().cast(), OWN * ps, libc::PROT_READ) };
                check_window(&window, "mprotect(PROT_READ)")?;
                // SAFETY: As above.
                let back = unsafe { libc::mprotect(window.addr().cast(), OWN * ps, rw) };
                if ret != 0 || back != 0 {
                    return Err("mprotect failed".into());
                }
            }
            7 => {
                // SAFETY: Our own mapping; MADV_DONTNEED drops page table entries only.
                let ret =
                    unsafe { libc::madvise(window.addr().cast(), OWN * ps, libc::MADV_DONTNEED) };
                if ret != 0 {
                    return Err("madvise failed".into());
                }
                check_window(&window, "MADV_DONTNEED")?;
            }
            8 => {
                let s = dev
                    .mm_summary(None)
                    .map_err(|e| format!("MM_SUMMARY: {e}"))?;
                let mut recs = [mmscope::abi::Vma::default(); 64];
                let l = dev
                    .vma_list_page(None, 0, &mut recs)
                    .map_err(|e| format!("VMA_LIST: {e}"))?;
                let n = l.count as usize;
                if s.map_count == 0 || recs[..n].windows(2).any(|w| w[0].end > w[1].start) {
                    return Err(format!(
                        "an address space walked mid-change is not in order: {:?}",
                        &recs[..n]
                    ));
                }
            }
            9 => {
                // A child forked from this many-threaded process sees the thread's pages
                // through the inherited window; it only reads and leaves with _exit.
                let expect: [u64; OWN] =
                    std::array::from_fn(|k| match model.last[first + k].load(Relaxed) {
                        0 => 0,
                        s => tag(first + k, s),
                    });
                for k in 0..OWN {
                    model.touched[first + k].store(1, Relaxed);
                }
                let w = window.addr();
                // SAFETY: The child only reads memory and calls _exit, which is
                // async-signal-safe in a child of a many-threaded process.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    let same = (0..OWN).all(|k| get(w, k) == expect[k]);
                    // SAFETY: _exit ends the child at once.
                    unsafe { libc::_exit(i32::from(!same)) };
                }
                let mut status = 0;
                // SAFETY: `pid` is our child.
                if pid < 0 || unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
                    return Err("fork or waitpid failed".into());
                }
                if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                    return Err("a forked child saw other values than the model".into());
                }
            }
            _ => {
                // An object of its own: opened, mapped, faulted, closed.
                let own = Device::open().map_err(|e| format!("open: {e}"))?;
                let m = own
                    .map(4 * ps, rw, libc::MAP_PRIVATE, 0)
                    .map_err(|e| format!("mmap: {e}"))?;
                for k in 0..4 {
                    if get(m.addr(), k) != 0 {
                        return Err("a new object's page is not zero".into());
                    }
                }
                let held = own
                    .mem_stats()
                    .map_err(|e| format!("MEM_STATS: {e}"))?
                    .obj_pages;
                model.extra_pages.fetch_add(held, Relaxed);
                if held != 4 {
                    return Err(format!("a new object holds {held} pages after 4 were read"));
                }
            }
        }
    }
    check_window(&window, "the last operation")
}

/// A worker process: its threads at once, then its listing against procfs at a quiet point.
fn worker(dev: &Device, all: *mut u8, model: &Model, proc_no: usize) -> i32 {
    let all = all as usize;
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| s.spawn(move || thread_main(dev, all as *mut u8, model, proc_no, t)))
            .collect();
        handles
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some("a thread panicked".into()),
            })
            .collect()
    });
    let quiet = listing_matches_procfs(dev, None);
    for e in &errors {
        println!("# stress process {proc_no}: {e}");
    }
    if let Err(Outcome::Fail(e)) = &quiet {
        println!("# stress process {proc_no}: at the quiet point: {e}");
    }
    i32::from(!errors.is_empty() || quiet.is_err())
}

/// The stress run; see the module documentation.
pub fn stress_against_model() -> TestResult {
    let ps = page_size();
    let probe = Device::open().context("open /dev/mmscope")?;
    let before = probe.mem_stats().context("MMSCOPE_IOC_MEM_STATS")?;
    let model_map = Mapping::new(
        size_of::<Model>().next_multiple_of(ps),
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_SHARED | libc::MAP_ANONYMOUS,
        -1,
        0,
    )
    .context("the model's shared memory")?;
    // SAFETY: Zeroed shared memory is a valid `Model` (atomics of zero), large and aligned
    // enough, and lives until the end of this function.
    let model = unsafe { &*(model_map.addr() as *const Model) };
    let dev = Device::open().context("open /dev/mmscope")?;
    let all = dev
        .map(
            PAGES * ps,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            0,
        )
        .context("mmap of the shared object")?;
    let mut pids = Vec::new();
    for p in 0..PROCS {
        // SAFETY: The test process is single-threaded when it forks; the child runs the worker
        // (which starts its own threads) and leaves with _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = worker(&dev, all.addr(), model, p);
            // SAFETY: _exit ends the worker without the parent's exit handlers.
            unsafe { libc::_exit(code) };
        }
        check!(pid > 0, "fork: {}", std::io::Error::last_os_error());
        pids.push(pid);
    }
    let mut failed = 0;
    for pid in pids {
        let mut status = 0;
        // SAFETY: `pid` is our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
            failed += 1;
        }
    }
    let ops = model.ops.load(Relaxed);
    println!(
        "# stress: {PROCS} processes x {THREADS} threads, {ops} operations (seeds {SEED:#x} + 16p + t)"
    );
    check_eq!(failed, 0, "worker processes that failed (messages above)");
    check_eq!(
        ops,
        (PROCS * THREADS) as u64 * u64::from(OPS),
        "operations done"
    );

    // Every page holds what its owner wrote last.
    for p in 0..PAGES {
        let want = match model.last[p].load(Relaxed) {
            0 => 0,
            s => tag(p, s),
        };
        check_eq!(get(all.addr(), p), want, "page {p} at the end");
    }
    let touched = model
        .touched
        .iter()
        .filter(|t| t.load(Relaxed) != 0)
        .count() as u64;
    let s = dev.mem_stats().context("MMSCOPE_IOC_MEM_STATS")?;
    check_eq!(
        s.obj_pages,
        touched,
        "pages the shared object holds, against the pages touched"
    );
    listing_matches_procfs(&probe, None)?;
    drop(all);
    drop(dev);
    let extra = model.extra_pages.load(Relaxed);
    let after = probe.mem_stats().context("MMSCOPE_IOC_MEM_STATS")?;
    check_eq!(after.pages, before.pages, "pages held once all is closed");
    check_eq!(
        after.objects,
        before.objects,
        "objects alive once all is closed"
    );
    check_eq!(
        after.pages_freed - before.pages_freed,
        touched + extra,
        "pages freed: the shared object's and the threads' own objects'"
    );
    println!("# stress: {touched} shared pages, {extra} pages in threads' own objects, all freed");
    Ok(())
}
