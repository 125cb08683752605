// SPDX-License-Identifier: GPL-2.0

//! The address-space ioctls: summary, VMA list and address query, against procfs.
//!
//! Ground truth: `/proc/<pid>/maps`, `smaps`, `stat` and `status`, `sbrk(0)` and `brk(0)`, and
//! the kernel's answer to `mmap` at the edge of the address space. Each comparison reads procfs
//! into a buffer prepared beforehand and takes the ioctl snapshot right next to it, with nothing
//! allocating or mapping in between.

use crate::harness::{expect_errno, Context, Outcome, TestResult};
use crate::sys::{
    in_child, kind_of_name, page_size, parse_maps_line, stat_field, status_kb, ChildEnd,
};
use crate::{check, check_eq, skip};
use mmscope::abi::{self, kind, Vma};
use mmscope::{Device, Mapping};
use std::ffi::{CStr, CString};
use std::io;

const RW: i32 = libc::PROT_READ | libc::PROT_WRITE;

/// Room for procfs text and VMA records, allocated and touched before any snapshot.
struct Buffers {
    /// Raw text of a procfs file.
    text: Vec<u8>,
    /// Raw text of a second procfs file.
    text2: Vec<u8>,
    /// VMA records.
    vmas: Vec<Vma>,
}

impl Buffers {
    /// Buffers for up to `vmas` VMAs.
    fn new(vmas: usize) -> Self {
        let touched = |len: usize| {
            let mut v = vec![1u8; len];
            v.clear();
            v
        };
        let mut records = vec![Vma::default(); vmas];
        records.clear();
        Self {
            text: touched(vmas * 128 + (1 << 20)),
            text2: touched(1 << 20),
            vmas: records,
        }
    }
}

/// Reads a procfs file into `buf` without allocating: `buf` must be large enough.
fn read_proc(path: &CStr, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    // SAFETY: `path` is a valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let res = loop {
        let spare = buf.capacity() - buf.len();
        if spare == 0 {
            break Err(io::Error::other("procfs buffer too small"));
        }
        // SAFETY: The spare capacity is writable and `spare` bytes long.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().add(buf.len()).cast(), spare) };
        if n < 0 {
            break Err(io::Error::last_os_error());
        }
        if n == 0 {
            break Ok(());
        }
        // SAFETY: read initialised `n` more bytes.
        unsafe { buf.set_len(buf.len() + n as usize) };
    };
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    res
}

/// `/proc/self/<file>` or `/proc/<pid>/<file>`.
fn proc_path(pid: Option<i32>, file: &str) -> CString {
    let who = pid.map_or("self".to_string(), |p| p.to_string());
    CString::new(format!("/proc/{who}/{file}")).unwrap_or_default()
}

/// Takes `/proc/<pid>/maps` and the VMA list back to back, nothing allocating in between.
fn snapshot_maps(dev: &Device, pid: Option<i32>, b: &mut Buffers) -> TestResult {
    let path = proc_path(pid, "maps");
    let cap = b.vmas.capacity();
    read_proc(&path, &mut b.text).context("read maps")?;
    dev.vmas_into(pid, &mut b.vmas)
        .context("MMSCOPE_IOC_VMA_LIST")?;
    check_eq!(
        b.vmas.capacity(),
        cap,
        "the record buffer grew during the snapshot"
    );
    Ok(())
}

/// Whether a kind maps a file (and so has an offset, device and inode in maps).
fn has_file(k: u32) -> bool {
    matches!(k, kind::FILE | kind::SHMEM | kind::MMSCOPE)
}

/// The VMA list equals the maps text line for line.
fn compare_with_maps(vmas: &[Vma], maps: &[u8]) -> TestResult {
    let maps = std::str::from_utf8(maps).map_err(|_| Outcome::Fail("maps is not UTF-8".into()))?;
    // The vsyscall page is the gate area, not a VMA of the process.
    let lines: Vec<&str> = maps
        .lines()
        .filter(|l| !l.ends_with("[vsyscall]"))
        .collect();
    check_eq!(vmas.len(), lines.len(), "VMA records against maps lines");
    let ps = page_size() as u64;
    for (v, line) in vmas.iter().zip(&lines) {
        let m = parse_maps_line(line)
            .ok_or_else(|| Outcome::Fail(format!("cannot parse maps line {line:?}")))?;
        let bit = |flag: u64, on: char, off: char| if v.flags & flag != 0 { on } else { off };
        let perms: String = [
            bit(abi::MMSCOPE_VMA_READ, 'r', '-'),
            bit(abi::MMSCOPE_VMA_WRITE, 'w', '-'),
            bit(abi::MMSCOPE_VMA_EXEC, 'x', '-'),
            bit(abi::MMSCOPE_VMA_MAYSHARE, 's', 'p'),
        ]
        .iter()
        .collect();
        let file = has_file(v.kind);
        let ours = (
            v.start,
            v.end,
            perms.as_str(),
            if file { v.pgoff * ps } else { 0 },
            (v.dev_major, v.dev_minor),
            v.inode,
            v.kind,
        );
        let theirs = (
            m.start,
            m.end,
            m.perms,
            m.offset,
            m.dev,
            m.inode,
            kind_of_name(m.name),
        );
        check_eq!(ours, theirs, "VMA record against maps line {line:?}");
        if !file {
            check_eq!(
                (v.dev_major, v.dev_minor, v.inode),
                (0, 0, 0),
                "no file: {line:?}"
            );
        }
        check_eq!(v.reserved, 0, "reserved field of {line:?}");
    }
    Ok(())
}

/// Every VMA's flags equal the `VmFlags` line of `/proc/self/smaps`, for the flags the ABI has.
fn compare_flags_with_smaps(vmas: &[Vma], smaps: &[u8]) -> TestResult {
    let smaps = std::str::from_utf8(smaps).map_err(|_| Outcome::Fail("smaps not UTF-8".into()))?;
    let mut flags_lines = Vec::new();
    let mut current = None;
    for line in smaps.lines() {
        if let Some(m) = parse_maps_line(line) {
            current = Some(m.start);
        } else if let Some(rest) = line.strip_prefix("VmFlags:") {
            flags_lines.push((current.unwrap_or(0), rest));
        }
    }
    let mut matched = 0;
    for v in vmas {
        let Some((_, line)) = flags_lines.iter().find(|(s, _)| *s == v.start) else {
            continue;
        };
        let theirs: u64 = line
            .split_whitespace()
            .filter_map(|f| abi::VMA_FLAGS.iter().position(|k| *k == f))
            .fold(0, |bits, i| bits | 1 << i);
        check_eq!(
            v.flags,
            theirs,
            "flags of the VMA at {:#x} against smaps VmFlags {line}",
            v.start
        );
        matched += 1;
    }
    check_eq!(matched, vmas.len(), "VMAs found in smaps");
    Ok(())
}

/// The current program break as the kernel reports it to `brk(0)`.
fn brk0() -> u64 {
    // SAFETY: brk(0) only queries the break.
    unsafe { libc::syscall(libc::SYS_brk, 0) as u64 }
}

/// The summary agrees with everything procfs and the C library say about the same fields.
fn compare_summary(dev: &Device, pid: Option<i32>, b: &mut Buffers) -> TestResult {
    let (stat_path, status_path) = (proc_path(pid, "stat"), proc_path(pid, "status"));
    let s = dev.mm_summary(pid).context("MMSCOPE_IOC_MM_SUMMARY")?;
    read_proc(&stat_path, &mut b.text).context("read stat")?;
    read_proc(&status_path, &mut b.text2).context("read status")?;
    let stat = String::from_utf8_lossy(&b.text).into_owned();
    let status = String::from_utf8_lossy(&b.text2).into_owned();
    let field = |n| stat_field(&stat, n).ok_or_else(|| Outcome::Fail(format!("stat field {n}")));
    for (name, ours, n) in [
        ("start_code", s.start_code, 26),
        ("end_code", s.end_code, 27),
        ("start_stack", s.start_stack, 28),
        ("start_data", s.start_data, 45),
        ("end_data", s.end_data, 46),
        ("start_brk", s.start_brk, 47),
        ("arg_start", s.arg_start, 48),
        ("arg_end", s.arg_end, 49),
        ("env_start", s.env_start, 50),
        ("env_end", s.env_end, 51),
    ] {
        check_eq!(
            ours,
            field(n)?,
            "{name} against field {n} of /proc/<pid>/stat"
        );
    }
    let kb = |key: &str| {
        status_kb(&status, key).ok_or_else(|| Outcome::Fail(format!("no {key} in status")))
    };
    let pk = page_size() as u64 / 1024;
    let rss = s.rss_anon + s.rss_file + s.rss_shmem;
    for (name, ours, key) in [
        ("total_vm", s.total_vm, "VmSize"),
        (
            "max(hiwater_vm, total_vm)",
            s.hiwater_vm.max(s.total_vm),
            "VmPeak",
        ),
        ("locked_vm", s.locked_vm, "VmLck"),
        ("pinned_vm", s.pinned_vm, "VmPin"),
        ("data_vm", s.data_vm, "VmData"),
        ("stack_vm", s.stack_vm, "VmStk"),
        ("rss_anon", s.rss_anon, "RssAnon"),
        ("rss_file", s.rss_file, "RssFile"),
        ("rss_shmem", s.rss_shmem, "RssShmem"),
        ("rss", rss, "VmRSS"),
        ("max(hiwater_rss, rss)", s.hiwater_rss.max(rss), "VmHWM"),
    ] {
        check_eq!(
            ours * pk,
            kb(key)?,
            "{name} (kB) against {key} of /proc/<pid>/status"
        );
    }
    check_eq!(s.reserved, 0, "reserved");
    Ok(())
}

/// The VMA list and the summary match procfs: maps line for line, smaps flags, stat, status,
/// and `brk` equals `sbrk(0)` and `brk(0)`.
pub fn report_matches_procfs() -> TestResult {
    let dev = Device::open().context("open /dev/mmscope")?;
    let mut b = Buffers::new(4096);
    snapshot_maps(&dev, None, &mut b)?;
    compare_with_maps(&b.vmas, &b.text)?;
    for k in [kind::HEAP, kind::STACK, kind::VDSO, kind::FILE] {
        check!(
            b.vmas.iter().any(|v| v.kind == k),
            "no VMA of kind {}",
            kind::name(k)
        );
    }
    read_proc(c"/proc/self/smaps", &mut b.text).context("read smaps")?;
    dev.vmas_into(None, &mut b.vmas)
        .context("MMSCOPE_IOC_VMA_LIST")?;
    compare_flags_with_smaps(&b.vmas, &b.text)?;
    check!(
        b.vmas
            .iter()
            .any(|v| v.kind == kind::STACK && v.flags & abi::MMSCOPE_VMA_GROWSDOWN != 0),
        "the stack does not grow down"
    );
    compare_summary(&dev, None, &mut b)?;
    let s = dev.mm_summary(None)?;
    // SAFETY: sbrk(0) only reads the C library's idea of the break.
    let sbrk = unsafe { libc::sbrk(0) } as u64;
    check_eq!(s.brk, sbrk, "brk against sbrk(0)");
    check_eq!(s.brk, brk0(), "brk against brk(0)");
    check_eq!(
        s.map_count as usize,
        b.vmas.len(),
        "map_count against the VMA list"
    );
    Ok(())
}

/// The address-space layout fields: `task_size` is where `mmap` stops accepting addresses;
/// new mappings go below `mmap_base`, which lies between the heap and the stack.
pub fn layout_fields_match_the_kernel() -> TestResult {
    let ps = page_size();
    let dev = Device::open().context("open /dev/mmscope")?;
    let s = dev.mm_summary(None).context("MMSCOPE_IOC_MM_SUMMARY")?;
    let try_map = |addr: u64| {
        Mapping::new_at(
            addr as usize,
            ps,
            RW,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        )
    };
    match try_map(s.task_size - ps as u64) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => {
            return Err(Outcome::Fail(format!(
                "mmap of the last page below task_size: {e}"
            )))
        }
    }
    expect_errno(
        try_map(s.task_size).map(|m| m.addr()),
        libc::ENOMEM,
        "mmap at task_size",
    )?;
    let m = Mapping::new(ps, RW, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)?;
    check!(
        (m.addr() as u64) < s.mmap_base,
        "a new mapping at {:p} is above mmap_base",
        m.addr()
    );
    check!(s.mmap_base < s.start_stack, "mmap_base is above the stack");
    check!(s.mmap_base > s.brk, "mmap_base is below the heap");
    Ok(())
}

/// A SysV shared memory segment attached read-write, detached on drop.
struct Shm(*mut libc::c_void);

impl Shm {
    fn attach(len: usize) -> io::Result<Self> {
        // SAFETY: A private segment; no pointers are passed.
        let id = unsafe { libc::shmget(libc::IPC_PRIVATE, len, libc::IPC_CREAT | 0o600) };
        if id < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: Attaches at an address the kernel chooses.
        let addr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
        // SAFETY: Marks the segment for removal once detached.
        unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
        if addr as isize == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(addr))
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: We attached it.
        unsafe { libc::shmdt(self.0) };
    }
}

/// After mmap, mprotect (a split), munmap, shared memory of every kind, a mapping of the
/// device, and brk growth and shrink, the report still equals procfs at every step.
pub fn report_follows_changes() -> TestResult {
    let ps = page_size();
    let dev = Device::open().context("open /dev/mmscope")?;
    let mut b = Buffers::new(4096);
    let step = |what: &str, b: &mut Buffers| -> TestResult {
        snapshot_maps(&dev, None, b).map_err(|e| prefix(what, e))?;
        compare_with_maps(&b.vmas, &b.text).map_err(|e| prefix(what, e))?;
        let s = dev.mm_summary(None).context("MMSCOPE_IOC_MM_SUMMARY")?;
        // SAFETY: sbrk(0) only reads the break.
        let sbrk = unsafe { libc::sbrk(0) } as u64;
        check_eq!(
            (s.brk, s.map_count as usize),
            (sbrk, b.vmas.len()),
            "{what}: brk, map_count"
        );
        Ok(())
    };
    let anon = Mapping::new(16 * ps, RW, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)?;
    step("after mmap", &mut b)?;
    // SAFETY: Pages 4..8 of our mapping.
    check_eq!(
        unsafe { libc::mprotect(anon.addr().add(4 * ps).cast(), 4 * ps, libc::PROT_READ) },
        0
    );
    step("after mprotect of a middle part", &mut b)?;
    // SAFETY: Pages 12..16 of our mapping, never used again.
    check_eq!(
        unsafe { libc::munmap(anon.addr().add(12 * ps).cast(), 4 * ps) },
        0
    );
    step("after munmap of the tail", &mut b)?;
    let shared = Mapping::new(4 * ps, RW, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0)?;
    // SAFETY: The name is a valid C string.
    let memfd = unsafe { libc::memfd_create(c"mmscope-test".as_ptr(), libc::MFD_CLOEXEC) };
    check!(memfd >= 0, "memfd_create: {}", io::Error::last_os_error());
    // SAFETY: `memfd` is our new descriptor.
    check_eq!(
        unsafe { libc::ftruncate(memfd, 4 * ps as libc::off_t) },
        0,
        "ftruncate"
    );
    let memfd_map = Mapping::new(4 * ps, RW, libc::MAP_SHARED, memfd, 0)?;
    let shm = Shm::attach(4 * ps).context("shmget/shmat")?;
    let device = dev
        .map(4 * ps, RW, libc::MAP_SHARED, ps as u64)
        .context("mmap the device")?;
    step(
        "with shared anonymous, memfd, SysV shm and device mappings",
        &mut b,
    )?;
    let kinds: Vec<u32> = b.vmas.iter().map(|v| v.kind).collect();
    check_eq!(
        kinds.iter().filter(|&&k| k == kind::SHMEM).count(),
        3,
        "shmem VMAs"
    );
    check_eq!(
        kinds.iter().filter(|&&k| k == kind::MMSCOPE).count(),
        1,
        "device VMAs"
    );
    // SAFETY: Grows the heap by 1 MiB; nothing else in this process uses sbrk directly.
    check!(
        unsafe { libc::sbrk(1 << 20) } as isize != -1,
        "sbrk(+1 MiB)"
    );
    step("after brk growth", &mut b)?;
    // SAFETY: Gives back half of what we took.
    check!(
        unsafe { libc::sbrk(-(1 << 19)) } as isize != -1,
        "sbrk(-512 KiB)"
    );
    step("after brk shrink", &mut b)?;
    drop((anon, shared, memfd_map, shm, device));
    // SAFETY: `memfd` is ours.
    unsafe { libc::close(memfd) };
    step("after unmapping everything", &mut b)?;
    Ok(())
}

/// Prefixes a failure with the step it happened in.
fn prefix(what: &str, e: Outcome) -> Outcome {
    match e {
        Outcome::Fail(m) => Outcome::Fail(format!("{what}: {m}")),
        other => other,
    }
}

/// With more than 10,000 VMAs the list is walked page by page (1,000 records a call) and equals
/// maps; a call with no room says how many VMAs there are and where to start.
pub fn ten_thousand_vmas_paginated() -> TestResult {
    const PAGES: usize = 20_001;
    let ps = page_size();
    let dev = Device::open().context("open /dev/mmscope")?;
    let m = Mapping::new(
        PAGES * ps,
        RW,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    )?;
    for p in (1..PAGES).step_by(2) {
        // SAFETY: Page `p` of our mapping.
        let ret = unsafe { libc::mprotect(m.addr().add(p * ps).cast(), ps, libc::PROT_READ) };
        check_eq!(ret, 0, "mprotect of page {p}");
    }
    let mut b = Buffers::new(PAGES + 1024);
    let mut page = vec![Vma::default(); 1000];
    b.vmas.resize(PAGES + 1024, Vma::default());
    read_proc(c"/proc/self/maps", &mut b.text).context("read maps")?;
    // Where each call said to go on: (records before it, next_addr).
    let mut resumes = Vec::with_capacity(PAGES / 1000 + 8);
    let mut count = 0;
    let mut start = 0;
    let mut calls = 0;
    loop {
        let list = dev
            .vma_list_page(None, start, &mut page)
            .context("MMSCOPE_IOC_VMA_LIST")?;
        let n = list.count as usize;
        b.vmas[count..count + n].copy_from_slice(&page[..n]);
        count += n;
        calls += 1;
        if list.next_addr == 0 {
            break;
        }
        check!(calls < PAGES, "the walk does not end");
        if resumes.len() < resumes.capacity() {
            resumes.push((count, list.next_addr));
        }
        start = list.next_addr;
    }
    b.vmas.truncate(count);
    check!(count > 10_000, "only {count} VMAs");
    check_eq!(
        calls,
        count.div_ceil(1000),
        "calls for {count} VMAs at 1000 a call"
    );
    compare_with_maps(&b.vmas, &b.text)?;
    for &(done, next) in &resumes {
        check_eq!(
            next,
            b.vmas[done].end - 1,
            "next_addr after {done} records: the last byte of the first VMA not reported"
        );
    }
    let empty = dev
        .vma_list_page(None, 0, &mut [])
        .context("VMA list with no room")?;
    check_eq!(empty.count, 0, "records written with no room");
    check_eq!(empty.total as usize, count, "total with no room");
    check_eq!(
        empty.next_addr,
        b.vmas[0].end - 1,
        "next_addr with no room: the last byte of the first VMA"
    );
    Ok(())
}

/// `next_addr` never says "done" while VMAs remain, even when one starts at address 0: with
/// `vm.mmap_min_addr` at 0 and a page mapped there, a call with no room returns the last byte of
/// that page (not 0), and a walk from 0 one VMA a call, each call going on from the last one's
/// `next_addr`, returns exactly the VMAs of `/proc/self/maps`, the one at 0 included. Ground
/// truth: `/proc/self/maps`. The sysctl is restored afterwards.
pub fn vma_list_walks_from_address_zero() -> TestResult {
    const SYSCTL: &str = "/proc/sys/vm/mmap_min_addr";
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        skip!("needs root to set vm.mmap_min_addr");
    }
    let Ok(saved) = std::fs::read_to_string(SYSCTL) else {
        skip!("there is no {SYSCTL} to let a page be mapped at address 0");
    };
    if let Err(e) = std::fs::write(SYSCTL, "0") {
        skip!("cannot set {SYSCTL} to 0: {e}");
    }
    let result = (|| -> TestResult {
        let ps = page_size();
        let page0 = match Mapping::new_at(0, ps, RW, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) {
            Ok(m) => m,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES)) => {
                skip!("a mapping at address 0 is refused with {SYSCTL} at 0: {e}")
            }
            Err(e) => return Err(Outcome::Fail(format!("mmap of a page at 0: {e}"))),
        };
        // Never touched: Rust has no valid pointer to address 0. The VMA is what counts.
        check_eq!(page0.addr() as usize, 0, "address of the page mapped at 0");
        let dev = Device::open().context("open /dev/mmscope")?;
        let mut b = Buffers::new(4096);
        let mut one = [Vma::default()];
        // Where each call said to go on: (records before it, next_addr).
        let mut resumes = Vec::with_capacity(4096);
        read_proc(c"/proc/self/maps", &mut b.text).context("read maps")?;
        let mut start = 0;
        loop {
            let list = dev
                .vma_list_page(None, start, &mut one)
                .context("MMSCOPE_IOC_VMA_LIST")?;
            if list.count == 1 && b.vmas.len() < b.vmas.capacity() {
                b.vmas.push(one[0]);
            }
            if list.next_addr == 0 || resumes.len() == resumes.capacity() {
                break;
            }
            resumes.push((b.vmas.len(), list.next_addr));
            start = list.next_addr;
        }
        let empty = dev
            .vma_list_page(None, 0, &mut [])
            .context("VMA list with no room")?;
        compare_with_maps(&b.vmas, &b.text)?;
        check_eq!(b.vmas[0].start, 0, "the first VMA listed starts at 0");
        check!(
            empty.next_addr != 0,
            "next_addr with no room is 0, as if there were no VMA, with a VMA at 0"
        );
        check_eq!(
            empty.next_addr,
            b.vmas[0].end - 1,
            "next_addr with no room: the last byte of the VMA at 0"
        );
        for &(done, next) in &resumes {
            check_eq!(
                next,
                b.vmas[done].end - 1,
                "next_addr after {done} records: the last byte of the first VMA not reported"
            );
        }
        Ok(())
    })();
    std::fs::write(SYSCTL, saved.trim()).context(format!("restore {SYSCTL}"))?;
    result
}

/// The address query returns the VMA covering an address, the next one with
/// `MMSCOPE_QUERY_COVERING_OR_NEXT`, and ENOENT in a gap or above the last VMA.
pub fn vma_query_matches_list() -> TestResult {
    let ps = page_size() as u64;
    let dev = Device::open().context("open /dev/mmscope")?;
    // A gap: map three pages, unmap the middle one.
    let m = Mapping::new(
        3 * ps as usize,
        RW,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    )?;
    let gap = m.addr() as u64 + ps;
    // SAFETY: The middle page of our mapping.
    check_eq!(
        unsafe { libc::munmap(gap as *mut libc::c_void, ps as usize) },
        0
    );
    let mut vmas = Vec::with_capacity(4096);
    dev.vmas_into(None, &mut vmas)
        .context("MMSCOPE_IOC_VMA_LIST")?;
    for v in &vmas {
        for addr in [v.start, (v.start + v.end) / 2, v.end - 1] {
            let q = dev
                .vma_query(None, addr, false)
                .context(format!("query {addr:#x}"))?;
            check_eq!(q, *v, "query at {addr:#x}");
        }
    }
    expect_errno(
        dev.vma_query(None, gap, false),
        libc::ENOENT,
        "query in a gap",
    )?;
    let next = vmas.iter().find(|v| v.end > gap).copied();
    check_eq!(
        dev.vma_query(None, gap, true).ok(),
        next,
        "query in a gap, or next"
    );
    let last = vmas.last().map_or(0, |v| v.end);
    expect_errno(
        dev.vma_query(None, last, true),
        libc::ENOENT,
        "query above the last VMA",
    )?;
    Ok(())
}

/// Each way of getting a request wrong has its errno, and leaves no trace.
pub fn mm_ioctls_bad_input() -> TestResult {
    let dev = Device::open().context("open /dev/mmscope")?;
    let call = |cmd: u32, arg: usize| {
        // SAFETY: Every `arg` below points to a live request of the command's type or larger,
        // or is an address the kernel must refuse.
        unsafe { dev.ioctl(cmd, arg) }
    };
    let summary = |f: &dyn Fn(&mut abi::MmSummary)| {
        let mut s = abi::MmSummary {
            size: size_of::<abi::MmSummary>() as u32,
            ..Default::default()
        };
        f(&mut s);
        call(abi::MMSCOPE_IOC_MM_SUMMARY, &mut s as *mut _ as usize)
    };
    expect_errno(
        summary(&|s| s.size = 8),
        libc::EINVAL,
        "summary: size too small",
    )?;
    expect_errno(
        summary(&|s| s.size = 1 << 20),
        libc::E2BIG,
        "summary: size above 4096",
    )?;
    expect_errno(
        summary(&|s| s.flags = 1 << 7),
        libc::EINVAL,
        "summary: unknown flag",
    )?;
    expect_errno(
        summary(&|s| s.flags = abi::MMSCOPE_QUERY_COVERING_OR_NEXT),
        libc::EINVAL,
        "summary: a flag of another ioctl",
    )?;
    expect_errno(
        summary(&|s| s.reserved = 1),
        libc::EINVAL,
        "summary: reserved field",
    )?;
    expect_errno(
        summary(&|s| s.pid = 1),
        libc::EINVAL,
        "summary: pid without MMSCOPE_F_PID",
    )?;
    expect_errno(
        summary(&|s| s.flags = abi::MMSCOPE_F_PID),
        libc::EINVAL,
        "summary: MMSCOPE_F_PID with pid 0",
    )?;
    expect_errno(
        summary(&|s| {
            s.flags = abi::MMSCOPE_F_PID;
            s.pid = i32::MAX;
        }),
        libc::ESRCH,
        "summary: no such process",
    )?;
    expect_errno(
        call(abi::MMSCOPE_IOC_MM_SUMMARY, 0),
        libc::EFAULT,
        "summary: NULL",
    )?;

    let mut records = vec![Vma::default(); 8];
    let list = |f: &dyn Fn(&mut abi::VmaList), records: &mut [Vma]| {
        let mut l = abi::VmaList {
            size: size_of::<abi::VmaList>() as u32,
            records: records.as_mut_ptr() as u64,
            record_size: size_of::<Vma>() as u32,
            capacity: records.len() as u32,
            ..Default::default()
        };
        f(&mut l);
        call(abi::MMSCOPE_IOC_VMA_LIST, &mut l as *mut _ as usize).map(|_| l)
    };
    expect_errno(
        list(&|l| l.record_size = 40, &mut records),
        libc::EINVAL,
        "list: record size",
    )?;
    expect_errno(
        list(&|l| l.reserved = 2, &mut records),
        libc::EINVAL,
        "list: reserved",
    )?;
    expect_errno(
        list(&|l| l.flags = 1 << 9, &mut records),
        libc::EINVAL,
        "list: unknown flag",
    )?;
    expect_errno(
        list(&|l| l.records = 8, &mut records),
        libc::EFAULT,
        "list: unmapped records",
    )?;
    let ro = Mapping::new(
        4096,
        libc::PROT_READ,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    )?;
    expect_errno(
        list(&|l| l.records = ro.addr() as u64, &mut records),
        libc::EFAULT,
        "list: read-only records",
    )?;
    let l = list(&|_| {}, &mut records).context("list: a good request after the bad ones")?;
    check_eq!(l.count, 8, "records written after the bad requests");
    check_eq!(
        l.record_size as usize,
        size_of::<Vma>(),
        "record size written back"
    );

    let mut q = abi::VmaQuery {
        size: size_of::<abi::VmaQuery>() as u32,
        ..Default::default()
    };
    q.flags = 1 << 5;
    expect_errno(
        call(abi::MMSCOPE_IOC_VMA_QUERY, &mut q as *mut _ as usize),
        libc::EINVAL,
        "query: unknown flag",
    )?;
    q.flags = 0;
    q.addr = 0;
    expect_errno(
        call(abi::MMSCOPE_IOC_VMA_QUERY, &mut q as *mut _ as usize),
        libc::ENOENT,
        "query: address 0",
    )?;
    Ok(())
}

/// Switches the calling (child) process to `uid`, dumpable so that processes of the same user
/// may inspect it, as after a normal login.
pub(crate) fn become_user(uid: u32) -> bool {
    // SAFETY: Plain credential syscalls on the calling process.
    unsafe {
        libc::setgroups(0, std::ptr::null()) == 0
            && libc::setgid(uid) == 0
            && libc::setuid(uid) == 0
            && libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) == 0
    }
}

/// Another process's address space: root (CAP_SYS_PTRACE) reads it and it equals its procfs;
/// an unprivileged user is refused another user's process with EACCES and may read its own.
/// A process of the same user that nobody traces is refused too: mmscope cannot apply the
/// same-user rule of `ptrace_may_access`, which is not exported to modules (see
/// `include/uapi/mmscope.h`); `tracer_reads_its_tracee` tests the tracer rule that stands in.
pub fn target_pid_follows_ptrace_rules() -> TestResult {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        skip!("needs root to create processes of other users");
    }
    let dev = Device::open().context("open /dev/mmscope")?;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    check_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // The target: a process of uid 1000 that waits until the pipe closes.
    // SAFETY: Single-threaded test process.
    let target = unsafe { libc::fork() };
    if target == 0 {
        let mut byte = 0u8;
        let ok = become_user(1000);
        // SAFETY: Closes our copy of the write end, then waits for EOF on the read end.
        unsafe {
            libc::close(fds[1]);
            libc::read(fds[0], (&mut byte as *mut u8).cast(), 1);
            libc::_exit(if ok { 0 } else { 1 });
        }
    }
    // SAFETY: The parent does not read from the pipe.
    unsafe { libc::close(fds[0]) };
    let result = (|| -> TestResult {
        // Wait until the target has changed its credentials.
        let status = format!("/proc/{target}/status");
        for _ in 0..500 {
            let text = std::fs::read_to_string(&status).unwrap_or_default();
            if text
                .lines()
                .any(|l| l.starts_with("Uid:") && l.contains("1000"))
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let pid = Some(target);
        let mut b = Buffers::new(4096);
        snapshot_maps(&dev, pid, &mut b)?;
        compare_with_maps(&b.vmas, &b.text)?;
        compare_summary(&dev, pid, &mut b)?;
        let same_user = in_child(|| {
            if !become_user(1000) {
                return 2;
            }
            match dev.mm_summary(pid) {
                Err(e) if e.raw_os_error() == Some(libc::EACCES) => 0,
                _ => 1,
            }
        })?;
        check_eq!(
            same_user,
            ChildEnd::Exited(0),
            "a process of the same user is refused with EACCES"
        );
        let other_user = in_child(|| {
            if !become_user(1001) {
                return 2;
            }
            let summary = dev.mm_summary(pid).err().and_then(|e| e.raw_os_error());
            let list = dev
                .vma_query(pid, 0, true)
                .err()
                .and_then(|e| e.raw_os_error());
            let own = dev.mm_summary(Some(std::process::id() as i32)).is_ok();
            if summary == Some(libc::EACCES) && list == Some(libc::EACCES) && own {
                0
            } else {
                1
            }
        })?;
        check_eq!(
            other_user,
            ChildEnd::Exited(0),
            "another user is refused with EACCES and may read its own process"
        );
        Ok(())
    })();
    // SAFETY: Closing the write end lets the target exit; then reap it.
    unsafe {
        libc::close(fds[1]);
        libc::waitpid(target, std::ptr::null_mut(), 0);
    }
    result
}

/// A 32-bit C program built against `include/uapi/mmscope.h` gets the same answers through the
/// compat ioctl path: version, summary (its `brk` equals its `sbrk(0)`), VMA list, query and
/// the memory counters.
pub fn compat_32bit_userspace() -> TestResult {
    let Ok(path) = std::env::var("MMSCOPE_COMPAT32") else {
        skip!("MMSCOPE_COMPAT32 does not name the 32-bit test program");
    };
    let out = match std::process::Command::new(&path).output() {
        Ok(out) => out,
        Err(e) if e.raw_os_error() == Some(libc::ENOEXEC) => {
            skip!("the kernel cannot run 32-bit programs (CONFIG_IA32_EMULATION=n)")
        }
        Err(e) => return Err(Outcome::Fail(format!("run {path}: {e}"))),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    check!(
        out.status.success(),
        "{path} failed ({}): {}",
        out.status,
        text.trim()
    );
    Ok(())
}

/// `PTRACE_SEIZE`s `pid` and returns 0, or the errno.
pub(crate) fn seize(pid: i32) -> i32 {
    // SAFETY: PTRACE_SEIZE takes no memory arguments.
    if unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0usize, 0usize) } == 0 {
        0
    } else {
        io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    }
}

/// Interrupts the seized `pid`, waits for it to stop and detaches: what a tool does to let go.
pub(crate) fn let_go(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: ptrace and waitpid on our own tracee; `status` is a valid out-pointer.
    unsafe {
        libc::ptrace(libc::PTRACE_INTERRUPT, pid, 0usize, 0usize) == 0
            && libc::waitpid(pid, &mut status, libc::__WALL) == pid
            && libc::ptrace(libc::PTRACE_DETACH, pid, 0usize, 0usize) == 0
    }
}

/// The tracer rule (ABI version 4): an unprivileged tracer reads its tracee, from any thread of
/// its thread group, exactly; before it attaches and after it detaches it is refused, and
/// another user can neither attach nor read.
pub fn tracer_reads_its_tracee() -> TestResult {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        skip!("needs root to create processes of other users");
    }
    let dev = Device::open().context("open /dev/mmscope")?;
    // The target: uid 1000 after exec, so dumpable, and holding still until its stdin closes.
    let exe = std::env::current_exe().context("current_exe")?;
    let exe = exe.to_string_lossy().into_owned();
    let mut target =
        crate::cli::spawn_as(1000, &[&exe, "--helper", "hold"]).context("start the target")?;
    let result = (|| -> TestResult {
        let mut line = String::new();
        if let Some(out) = target.stdout.take() {
            use std::io::BufRead;
            io::BufReader::new(out)
                .read_line(&mut line)
                .context("read the target's line")?;
        }
        let pid = target.pid;
        let brk = serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .and_then(|v| v["brk"].as_u64())
            .ok_or_else(|| Outcome::Fail(format!("target printed {line:?}")))?;
        let tracer = in_child(|| {
            if !become_user(1000) {
                return 2;
            }
            match dev.mm_summary(Some(pid)) {
                Err(e) if e.raw_os_error() == Some(libc::EACCES) => {}
                _ => return 10,
            }
            if seize(pid) != 0 {
                return 11;
            }
            match dev.mm_summary(Some(pid)) {
                Ok(s) if s.brk == brk => {}
                _ => return 12,
            }
            let mut vmas = Vec::new();
            if dev.vmas_into(Some(pid), &mut vmas).is_err() || vmas.is_empty() {
                return 13;
            }
            let from_thread = std::thread::scope(|s| {
                s.spawn(|| dev.vma_query(Some(pid), brk - 1, false).is_ok())
                    .join()
                    .unwrap_or(false)
            });
            if !from_thread {
                return 14;
            }
            if !let_go(pid) {
                return 15;
            }
            match dev.mm_summary(Some(pid)) {
                Err(e) if e.raw_os_error() == Some(libc::EACCES) => 0,
                _ => 16,
            }
        })?;
        check_eq!(
            tracer,
            ChildEnd::Exited(0),
            "a tracer reads its tracee (refused before seize: 10, seize: 11, brk: 12, list: \
             13, from another thread: 14, detach: 15, refused after detach: 16)"
        );
        let other = in_child(|| {
            if !become_user(1001) {
                return 2;
            }
            if seize(pid) != libc::EPERM {
                return 3;
            }
            match dev.mm_summary(Some(pid)) {
                Err(e) if e.raw_os_error() == Some(libc::EACCES) => 0,
                _ => 4,
            }
        })?;
        check_eq!(
            other,
            ChildEnd::Exited(0),
            "another user cannot attach (3) nor read (4)"
        );
        Ok(())
    })();
    drop(target);
    result
}

/// A request `req` at the start of a zeroed 4104-byte buffer: room for what a newer program,
/// built with a larger struct, passes.
fn in_big_buffer<T: Copy>(req: &T) -> Vec<u64> {
    let mut buf = vec![0u64; 4104 / 8];
    // SAFETY: `T` is a plain `repr(C)` ABI struct of fewer than 4104 bytes, copied into the
    // buffer's start; the buffer is `u64`-aligned, as `T` needs.
    unsafe {
        std::ptr::copy_nonoverlapping(
            req as *const T as *const u8,
            buf.as_mut_ptr() as *mut u8,
            size_of::<T>(),
        )
    };
    buf
}

/// The kernel's rule for extensible structs, on every ioctl that takes one: a larger struct is
/// accepted when the bytes the module does not know are zero (and the size written back is the
/// module's), refused with `E2BIG` when one of them is not, or when the size is above 4096; a
/// struct of its first version (the summary's before ABI 7) is served with no byte written past
/// it, and one shorter is `EINVAL`; `record_size` of the VMA list likewise.
pub fn extensible_struct_rule() -> TestResult {
    let dev = Device::open().context("open /dev/mmscope")?;
    let mut records = vec![Vma::default(); 64];
    let here = records.as_ptr() as u64;
    let list = abi::VmaList {
        size: size_of::<abi::VmaList>() as u32,
        records: records.as_mut_ptr() as u64,
        record_size: size_of::<Vma>() as u32,
        capacity: 0,
        ..Default::default()
    };
    let query = abi::VmaQuery {
        size: size_of::<abi::VmaQuery>() as u32,
        addr: here,
        ..Default::default()
    };
    let stats = abi::MemStats {
        size: size_of::<abi::MemStats>() as u32,
        ..Default::default()
    };
    let summary = abi::MmSummary {
        size: size_of::<abi::MmSummary>() as u32,
        ..Default::default()
    };
    let cases = [
        (
            "mem_stats",
            abi::MMSCOPE_IOC_MEM_STATS,
            size_of::<abi::MemStats>(),
            size_of::<abi::MemStats>(),
            in_big_buffer(&stats),
        ),
        (
            "mm_summary",
            abi::MMSCOPE_IOC_MM_SUMMARY,
            size_of::<abi::MmSummary>(),
            abi::MMSCOPE_MM_SUMMARY_SIZE_VER0,
            in_big_buffer(&summary),
        ),
        (
            "vma_list",
            abi::MMSCOPE_IOC_VMA_LIST,
            size_of::<abi::VmaList>(),
            size_of::<abi::VmaList>(),
            in_big_buffer(&list),
        ),
        (
            "vma_query",
            abi::MMSCOPE_IOC_VMA_QUERY,
            size_of::<abi::VmaQuery>(),
            size_of::<abi::VmaQuery>(),
            in_big_buffer(&query),
        ),
    ];
    for (name, cmd, ours, first, template) in &cases {
        let call = |mut buf: Vec<u64>| {
            // SAFETY: `buf` holds 4104 writable bytes, more than any size used here.
            unsafe { dev.ioctl(*cmd, buf.as_mut_ptr() as usize) }.map(|_| buf)
        };
        let with = |size: usize, tail: Option<usize>| {
            let mut b = template.clone();
            b[0] = (b[0] & !0xffff_ffff) | size as u64;
            if let Some(at) = tail {
                // SAFETY: `at` is below 4104, inside the buffer.
                unsafe { *(b.as_mut_ptr() as *mut u8).add(at) = 1 };
            }
            b
        };
        for size in [ours + 8, 4096] {
            let out = call(with(size, None)).context(format!("{name}: size {size}, zero tail"))?;
            check_eq!(
                (out[0] & 0xffff_ffff) as usize,
                *ours,
                "{name}: size written back for a {size}-byte struct"
            );
            check!(
                // SAFETY: the buffer has 4104 bytes; the module may write only its own.
                (*ours..4104).all(|i| unsafe { *(out.as_ptr() as *const u8).add(i) } == 0),
                "{name}: wrote past its own struct"
            );
            expect_errno(
                call(with(size, Some(size - 1))),
                libc::E2BIG,
                &format!("{name}: size {size}, last byte nonzero"),
            )?;
        }
        expect_errno(
            call(with(*ours + 8, Some(*ours))),
            libc::E2BIG,
            &format!("{name}: first unknown byte nonzero"),
        )?;
        expect_errno(
            call(with(4097, None)),
            libc::E2BIG,
            &format!("{name}: size 4097"),
        )?;
        expect_errno(
            call(with(first - 1, None)),
            libc::EINVAL,
            &format!("{name}: size one short of the first version"),
        )?;
        if first < ours {
            // A caller built with the first version: served, nothing written past it (the
            // byte after it is left as the caller set it).
            let mut b = with(*first, None);
            // SAFETY: `first` is below 4104, inside the buffer.
            unsafe { *(b.as_mut_ptr() as *mut u8).add(*first) = 0x5a };
            let out = call(b).context(format!("{name}: the first version's size"))?;
            check_eq!(
                (out[0] & 0xffff_ffff) as usize,
                *first,
                "{name}: size written back for the first version"
            );
            check_eq!(
                // SAFETY: as above.
                unsafe { *(out.as_ptr() as *const u8).add(*first) },
                0x5a,
                "{name}: the byte after the first version is untouched"
            );
        }
    }

    // record_size: up to 4096 accepted (the module writes its record at the start of each),
    // above it E2BIG.
    let mut big = vec![0u64; 2 * 4096 / 8];
    for (record_size, want) in [(4096u32, None), (4097, Some(libc::E2BIG))] {
        let mut l = abi::VmaList {
            records: big.as_mut_ptr() as u64,
            record_size,
            capacity: 2,
            ..list
        };
        // SAFETY: `l` is a VmaList; its array holds two records of 4096 bytes.
        let res = unsafe { dev.ioctl(abi::MMSCOPE_IOC_VMA_LIST, &mut l as *mut _ as usize) };
        match want {
            None => {
                res.context("vma_list with record_size 4096")?;
                check_eq!(
                    l.record_size as usize,
                    size_of::<Vma>(),
                    "record_size written back"
                );
                check!(l.count == 2, "two records of 4096 bytes: {}", l.count);
                check!(big[4096 / 8] != 0, "the second record starts 4096 bytes in");
            }
            Some(errno) => expect_errno(res, errno, "vma_list with record_size 4097")?,
        }
    }
    Ok(())
}

/// The VMA list of this process (or of `pid`), taken at a quiet point, against
/// `/proc/<pid>/maps`, line for line.
pub(crate) fn listing_matches_procfs(dev: &Device, pid: Option<i32>) -> TestResult {
    let mut b = Buffers::new(4096);
    snapshot_maps(dev, pid, &mut b)?;
    compare_with_maps(&b.vmas, &b.text)
}

/// `vma_seq` (ABI 7) stays put while no VMA can change, and moves with every change to the
/// VMAs or to `brk`, including those `mmscope trace` does not stop at (`mlock`): it is what
/// lets the tracer skip reading VMAs again, so a change it missed would be shown in the wrong
/// call.
pub fn vma_seq_moves_with_the_vmas() -> TestResult {
    let dev = Device::open().context("open /dev/mmscope")?;
    let page = page_size();
    // Every mapping, and the summaries, made before the first reading: nothing below
    // allocates between two readings.
    let read = |what: &'static str, dev: &Device| -> Result<(&'static str, u64), Outcome> {
        let s = dev.mm_summary(None).context(what)?;
        Ok((what, s.vma_seq))
    };
    let first = read("first reading", &dev)?;
    if first.1 == 0 {
        skip!("vma_seq is 0: this kernel keeps no mmap write sequence (CONFIG_PER_VMA_LOCK)");
    }
    // Nothing that changes a VMA: system calls, page faults on memory mapped already.
    let mem = Mapping::new(
        4 * page,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    )
    .context("map 4 pages")?;
    let base = read("after mapping 4 pages", &dev)?;
    check!(base.1 != first.1, "an mmap moves vma_seq");
    // SAFETY: getpid has no requirements.
    unsafe { libc::getpid() };
    for i in 0..4 {
        mem.write(i * page, 1);
    }
    let quiet = read("after getpid and 4 first touches", &dev)?;
    check_eq!(quiet.1, base.1, "no VMA changed: vma_seq stays");
    let addr = mem.addr() as usize;
    let steps: [(&str, &dyn Fn() -> i64); 5] = [
        // SAFETY: each call works on the 4 pages this test mapped, or moves the break up a
        // page and back, over memory nothing uses.
        ("mprotect", &|| unsafe {
            i64::from(libc::mprotect(addr as *mut _, page, libc::PROT_READ))
        }),
        ("mlock", &|| unsafe {
            i64::from(libc::mlock(addr as *const _, page))
        }),
        ("munlock", &|| unsafe {
            i64::from(libc::munlock(addr as *const _, page))
        }),
        ("brk up", &|| unsafe {
            let b = libc::syscall(libc::SYS_brk, 0);
            libc::syscall(libc::SYS_brk, b + page as i64) - b
        }),
        ("brk down", &|| unsafe {
            let b = libc::syscall(libc::SYS_brk, 0);
            b - libc::syscall(libc::SYS_brk, b - page as i64)
        }),
    ];
    let mut last = quiet;
    for (name, step) in steps {
        let ret = step();
        check!(ret >= 0, "{name}: {ret}");
        let now = read(name, &dev)?;
        check!(
            now.1 != last.1,
            "{name} changes the VMAs (or brk): vma_seq {} stays {}",
            last.0,
            now.1
        );
        last = now;
    }
    drop(mem);
    let end = read("after munmap", &dev)?;
    check!(end.1 != last.1, "munmap moves vma_seq");
    Ok(())
}
