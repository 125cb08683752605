// SPDX-License-Identifier: GPL-2.0

//! Userspace side of `/dev/mmscope`, and the `mmscope` command's workings.
//!
//! [`abi`] mirrors `include/uapi/mmscope.h`; [`Device`] wraps an open of the device with one
//! safe method per ioctl. [`source`] is the source of truth about an address space: the
//! device, or procfs where the module is absent. On top: [`snapshot`] (one moment of an
//! address space and the difference between two), [`maps`], [`trace`] with [`report`] and
//! [`plot`], and [`lazy`], one module per subcommand.

/// `PMD_SIZE` on x86-64 with 4 KiB pages: the addresses one page table maps. The module's
/// fault-ahead window ends at a page table's end.
pub const PMD_SIZE: usize = 2 << 20;

pub mod abi;
pub mod access;
pub mod faults;
pub mod flame;
pub mod html;
pub mod kgraph;
pub mod lazy;
pub mod maps;
pub mod plot;
pub mod procfs;
pub mod report;
pub mod snapshot;
pub mod source;
pub mod stack;
pub mod style;
pub mod syscalls;
pub mod trace;
pub mod units;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The device node the module registers.
pub const DEVICE_PATH: &str = "/dev/mmscope";

/// One open of `/dev/mmscope`.
pub struct Device {
    file: File,
    path: PathBuf,
}

impl Device {
    /// Opens [`DEVICE_PATH`] read-write.
    pub fn open() -> io::Result<Self> {
        Self::open_path(DEVICE_PATH)
    }

    /// Opens the device node at `path` read-write.
    pub fn open_path(path: impl AsRef<Path>) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        Ok(Self {
            file,
            path: path.as_ref().to_path_buf(),
        })
    }

    /// The device node this was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The ABI version the loaded module implements (`MMSCOPE_IOC_VERSION`).
    pub fn abi_version(&self) -> io::Result<u32> {
        let mut version = 0u32;
        // SAFETY: MMSCOPE_IOC_VERSION writes one u32 to the pointer, which points to one.
        unsafe { self.ioctl(abi::MMSCOPE_IOC_VERSION, &mut version as *mut u32 as usize) }?;
        Ok(version)
    }

    /// The counters of this open file's memory object and of the module (`MMSCOPE_IOC_MEM_STATS`).
    pub fn mem_stats(&self) -> io::Result<abi::MemStats> {
        let mut stats = abi::MemStats {
            size: std::mem::size_of::<abi::MemStats>() as u32,
            ..Default::default()
        };
        // SAFETY: MMSCOPE_IOC_MEM_STATS reads and writes at most one MemStats at the pointer.
        unsafe { self.ioctl(abi::MMSCOPE_IOC_MEM_STATS, &mut stats as *mut _ as usize) }?;
        Ok(stats)
    }

    /// The module's lines in this open file's fdinfo (`/proc/self/fdinfo/FD`): `mmscope-`
    /// names and their numbers, such as `mmscope-user-pages` (the pages all objects of this
    /// object's user hold) and `mmscope-total-max-pages` (the module-wide cap).
    pub fn fdinfo(&self) -> io::Result<std::collections::HashMap<String, u64>> {
        let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", self.file.as_raw_fd()))?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.starts_with("mmscope-"))
            .filter_map(|(k, v)| Some((k.to_string(), v.trim().parse().ok()?)))
            .collect())
    }

    /// Lowers the size limit of this open file's memory object to `bytes`
    /// (`MMSCOPE_IOC_SET_LIMIT`).
    pub fn set_limit(&self, bytes: u64) -> io::Result<()> {
        // SAFETY: MMSCOPE_IOC_SET_LIMIT reads one u64 from the pointer, which points to one.
        unsafe { self.ioctl(abi::MMSCOPE_IOC_SET_LIMIT, &bytes as *const u64 as usize) }?;
        Ok(())
    }

    /// The memory-map summary of this process, or of `pid` (`MMSCOPE_IOC_MM_SUMMARY`).
    pub fn mm_summary(&self, pid: Option<i32>) -> io::Result<abi::MmSummary> {
        let mut s = abi::MmSummary {
            size: std::mem::size_of::<abi::MmSummary>() as u32,
            flags: pid.map_or(0, |_| abi::MMSCOPE_F_PID),
            pid: pid.unwrap_or(0),
            ..Default::default()
        };
        // SAFETY: The ioctl reads and writes at most one MmSummary at the pointer.
        unsafe { self.ioctl(abi::MMSCOPE_IOC_MM_SUMMARY, &mut s as *mut _ as usize) }?;
        Ok(s)
    }

    /// One call of `MMSCOPE_IOC_VMA_LIST`: fills `records` with the VMAs of this process (or of
    /// `pid`) from the first one ending above `start` on. Returns the list header as the kernel
    /// filled it: `count` records written, `total` VMAs, `next_addr` to continue from (the last
    /// byte of the first VMA not written, never 0; 0: done).
    ///
    /// The caller must not allocate between calls if it wants the pages to join seamlessly;
    /// this function does not allocate.
    pub fn vma_list_page(
        &self,
        pid: Option<i32>,
        start: u64,
        records: &mut [abi::Vma],
    ) -> io::Result<abi::VmaList> {
        let mut list = abi::VmaList {
            size: std::mem::size_of::<abi::VmaList>() as u32,
            flags: pid.map_or(0, |_| abi::MMSCOPE_F_PID),
            pid: pid.unwrap_or(0),
            start_addr: start,
            records: records.as_mut_ptr() as u64,
            record_size: std::mem::size_of::<abi::Vma>() as u32,
            capacity: u32::try_from(records.len()).unwrap_or(u32::MAX),
            ..Default::default()
        };
        // SAFETY: The ioctl reads and writes one VmaList at the pointer and writes at most
        // `capacity` records of `record_size` bytes to `records`, which holds that many.
        unsafe { self.ioctl(abi::MMSCOPE_IOC_VMA_LIST, &mut list as *mut _ as usize) }?;
        Ok(list)
    }

    /// All VMAs of this process (or of `pid`), walked page by page into `buf`, which is
    /// cleared first and grown only between pages when it is full.
    pub fn vmas_into(&self, pid: Option<i32>, buf: &mut Vec<abi::Vma>) -> io::Result<()> {
        self.vmas_into_expecting(pid, buf, 256)
    }

    /// [`Device::vmas_into`], with room for about `expect` VMAs (a `map_count` just read) in
    /// the first page: no more records zeroed than needed, and one call where the count held.
    pub fn vmas_into_expecting(
        &self,
        pid: Option<i32>,
        buf: &mut Vec<abi::Vma>,
        expect: usize,
    ) -> io::Result<()> {
        buf.clear();
        let mut start = 0;
        loop {
            let filled = buf.len();
            if buf.capacity() == filled {
                // A few more than expected: the count may have grown since it was read.
                buf.reserve(if filled == 0 {
                    expect + 16
                } else {
                    256.max(filled)
                });
            }
            buf.resize(buf.capacity(), abi::Vma::default());
            let page = self.vma_list_page(pid, start, &mut buf[filled..])?;
            buf.truncate(filled + page.count as usize);
            if page.next_addr == 0 {
                return Ok(());
            }
            start = page.next_addr;
        }
    }

    /// The VMA covering `addr` or, with `or_next`, the first one above it
    /// (`MMSCOPE_IOC_VMA_QUERY`). `ENOENT` if there is none.
    pub fn vma_query(&self, pid: Option<i32>, addr: u64, or_next: bool) -> io::Result<abi::Vma> {
        let mut flags = pid.map_or(0, |_| abi::MMSCOPE_F_PID);
        if or_next {
            flags |= abi::MMSCOPE_QUERY_COVERING_OR_NEXT;
        }
        let mut q = abi::VmaQuery {
            size: std::mem::size_of::<abi::VmaQuery>() as u32,
            flags,
            pid: pid.unwrap_or(0),
            addr,
            ..Default::default()
        };
        // SAFETY: The ioctl reads and writes at most one VmaQuery at the pointer.
        unsafe { self.ioctl(abi::MMSCOPE_IOC_VMA_QUERY, &mut q as *mut _ as usize) }?;
        Ok(q.vma)
    }

    /// Maps `len` bytes of the memory object from byte `offset` on.
    pub fn map(&self, len: usize, prot: i32, flags: i32, offset: u64) -> io::Result<Mapping> {
        Mapping::new(len, prot, flags, self.file.as_raw_fd(), offset)
    }

    /// Maps `len` bytes of the object from `offset` at an address aligned to [`PMD_SIZE`], so
    /// that fault-ahead windows, which end at a page table's end, are the same on every run.
    pub fn map_pmd_aligned(
        &self,
        len: usize,
        prot: i32,
        flags: i32,
        offset: u64,
    ) -> io::Result<Mapping> {
        Mapping::new_aligned(len, PMD_SIZE, prot, flags, self.file.as_raw_fd(), offset)
    }

    /// Issues `ioctl(fd, cmd, arg)` and turns a -1 into the `errno` error.
    ///
    /// # Safety
    ///
    /// `arg` must be what `cmd` expects: for a command that reads or writes memory, the address
    /// of a live object of the command's type, or an address the caller wants to see rejected.
    pub unsafe fn ioctl(&self, cmd: u32, arg: usize) -> io::Result<i32> {
        // SAFETY: The fd is open for the lifetime of `self`; the caller vouches for `arg`.
        let ret = unsafe { libc::ioctl(self.file.as_raw_fd(), cmd as libc::c_ulong, arg) };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    }

    /// Consumes the handle and returns its file descriptor.
    pub fn into_fd(self) -> OwnedFd {
        self.file.into()
    }
}

impl AsRawFd for Device {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }
}

/// `mmap(addr, len, prot, flags, fd, offset)`: the address of the new mapping, or the `errno`.
///
/// # Safety
///
/// With `MAP_FIXED` in `flags`, `addr..addr + len` must hold nothing of the caller's that
/// anything still uses: the mapping replaces it.
unsafe fn mmap(
    addr: usize,
    len: usize,
    prot: i32,
    flags: i32,
    fd: i32,
    offset: u64,
) -> io::Result<*mut u8> {
    // SAFETY: The caller vouches for what a MAP_FIXED mapping replaces; any other mmap only
    // adds a mapping.
    let got = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            prot,
            flags,
            fd,
            offset as libc::off_t,
        )
    };
    if got == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(got.cast())
}

/// A memory mapping, unmapped on drop.
pub struct Mapping {
    addr: *mut u8,
    len: usize,
}

impl Mapping {
    /// `mmap(NULL, len, prot, flags, fd, offset)`; `fd` -1 for anonymous memory.
    pub fn new(len: usize, prot: i32, flags: i32, fd: i32, offset: u64) -> io::Result<Self> {
        // SAFETY: A new mapping at an address the kernel chooses overlaps nothing of ours.
        let addr = unsafe { mmap(0, len, prot, flags, fd, offset) }?;
        Ok(Self { addr, len })
    }

    /// `mmap` of `len` bytes at an address aligned to `align` (a power of two): a reservation
    /// `align` larger is made first, and the mapping placed in it with `MAP_FIXED`.
    pub fn new_aligned(
        len: usize,
        align: usize,
        prot: i32,
        flags: i32,
        fd: i32,
        offset: u64,
    ) -> io::Result<Self> {
        let span = len
            .checked_add(align)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        let reserved = Self::new(
            span,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )?;
        let start = (reserved.addr as usize).next_multiple_of(align);
        // SAFETY: `start..start + len` lies inside our own reservation, which nothing else uses;
        // MAP_FIXED replaces that part of it.
        unsafe { mmap(start, len, prot, flags | libc::MAP_FIXED, fd, offset) }?;
        let (base, end) = (reserved.addr as usize, reserved.addr as usize + span);
        std::mem::forget(reserved);
        // SAFETY: The head and the tail of our reservation around the new mapping are ours and
        // hold nothing.
        unsafe {
            libc::munmap(base as *mut libc::c_void, start - base);
            libc::munmap((start + len) as *mut libc::c_void, end - (start + len));
        }
        Ok(Self {
            addr: start as *mut u8,
            len,
        })
    }

    /// Anonymous or device-less `mmap` at exactly `addr`, never replacing what is there
    /// (`MAP_FIXED_NOREPLACE`: `EEXIST` if something is).
    pub fn new_at(addr: usize, len: usize, prot: i32, flags: i32) -> io::Result<Self> {
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
        let addr = unsafe { mmap(addr, len, prot, flags | libc::MAP_FIXED_NOREPLACE, -1, 0) }?;
        Ok(Self { addr, len })
    }

    /// Takes over a mapping made elsewhere (for example by `mremap`).
    ///
    /// # Safety
    ///
    /// `addr..addr + len` must be a mapping that nothing else unmaps.
    pub unsafe fn from_raw(addr: *mut u8, len: usize) -> Self {
        Self { addr, len }
    }

    /// The start address.
    pub fn addr(&self) -> *mut u8 {
        self.addr
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (it never is once made).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads the byte at `offset`, faulting the page in if needed.
    pub fn read(&self, offset: usize) -> u8 {
        assert!(offset < self.len, "read past the mapping");
        // SAFETY: `offset` is inside the mapping; a volatile read makes sure the access happens.
        unsafe { self.addr.add(offset).read_volatile() }
    }

    /// Writes the byte at `offset`, faulting the page in if needed.
    pub fn write(&self, offset: usize, value: u8) {
        assert!(offset < self.len, "write past the mapping");
        // SAFETY: `offset` is inside the mapping; a volatile write makes sure the access happens.
        unsafe { self.addr.add(offset).write_volatile(value) }
    }

    /// Gives up ownership without unmapping; returns the address and length.
    pub fn into_raw(self) -> (*mut u8, usize) {
        let raw = (self.addr, self.len);
        std::mem::forget(self);
        raw
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: We own the mapping and nothing refers to it after drop.
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}

// SAFETY: A mapping is plain memory; accesses through it are volatile byte reads and writes.
unsafe impl Send for Mapping {}
// SAFETY: As above: concurrent byte reads and writes of shared memory are what it is for.
unsafe impl Sync for Mapping {}
