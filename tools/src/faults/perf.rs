// SPDX-License-Identifier: GPL-2.0

//! The kernel's page-fault software event (`perf_event_open(2)`, `PERF_COUNT_SW_PAGE_FAULTS`)
//! for a traced process and the processes and threads it starts: one sample per fault, with
//! the faulting address, the thread, the user registers an unwinder starts from and a copy of
//! the user stack, read from a ring buffer per CPU.

use perf_event_open_sys::bindings as sys;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, Ordering};

/// How many bytes of user stack each sample copies (from the stack pointer up): the frames of
/// most call chains. The kernel copies less where the stack ends sooner.
pub const STACK_BYTES: u32 = 16 << 10;

/// The x86-64 registers a sample carries (`perf_regs.h`): `bp`, `sp`, `ip`, in that order.
const REGS: u64 = (1 << 6) | (1 << 7) | (1 << 8);

/// One page fault.
#[derive(Debug)]
pub struct Sample<'a> {
    /// The process.
    pub pid: i32,
    /// When (the kernel's perf clock): faults recorded on different CPUs are ordered by it.
    pub time: u64,
    /// The faulting address.
    pub addr: u64,
    /// `ip`, `sp`, `bp` in user mode: where the fault was, or for a fault the kernel took
    /// on the program's behalf (copying to its memory in a system call), where that call was
    /// made. `None` if the kernel had no user registers to give.
    pub regs: Option<(u64, u64, u64)>,
    /// The user stack from `sp` up, as much as the kernel could copy.
    pub stack: &'a [u8],
}

/// One event's ring buffer: the page the kernel and its reader share, and the data pages.
///
/// # Invariants
///
/// `base` is a live shared mapping of `len` bytes of the perf event `fd`: its first page is
/// the `perf_event_mmap_page`, the rest the data area of `data` bytes (a power of two).
pub struct Ring {
    fd: OwnedFd,
    base: *mut u8,
    len: usize,
    data: usize,
    /// A record that wraps around the end of the data area, put together.
    scratch: Vec<u8>,
}

// SAFETY: The mapping belongs to the ring alone and lives as long as it does; the kernel is
// the only other party, through the head and tail protocol `drain` follows. Moving the ring
// to another thread moves that ownership with it.
unsafe impl Send for Ring {}

impl Ring {
    /// Opens the page-fault event of task `pid` on CPU `cpu` (see [`event`]) with a ring of
    /// `pages` data pages (a power of two).
    pub fn open(pid: i32, cpu: i32, how: How, pages: usize) -> io::Result<Self> {
        let fd = event(pid, cpu, how, pages)?;
        let page = crate::snapshot::page_size() as usize;
        let len = (pages + 1) * page;
        // SAFETY: Maps the event's ring, shared with the kernel, at an address the kernel
        // chooses; the result is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // INVARIANT: the mapping succeeded, its first page is the control page and the rest
        // `pages` pages of data.
        Ok(Self {
            fd,
            base: base.cast(),
            len,
            data: pages * page,
            scratch: Vec::new(),
        })
    }

    /// Sends the samples of event `fd` (of the same CPU) to this ring.
    pub fn take_output_of(&self, fd: &OwnedFd) -> io::Result<()> {
        // SAFETY: PERF_EVENT_IOC_SET_OUTPUT takes another perf event's descriptor, both live.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), sys::SET_OUTPUT as _, self.fd.as_raw_fd()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// How the events are opened.
#[derive(Clone, Copy, Debug)]
pub struct How {
    /// Enabled only from the task's next `execve`, else at once.
    pub on_exec: bool,
    /// Also the faults the kernel takes in the process's memory on its behalf, during its
    /// system calls (needs `perf_event_paranoid` <= 1 or `CAP_PERFMON`).
    pub kernel: bool,
    /// Inherited by the processes it starts too, not only by its threads.
    pub processes: bool,
}

/// Opens the page-fault event of task `pid` on CPU `cpu`, inherited by the threads (and with
/// `how.processes` the processes) it starts from now on; `pages` is the ring it will have,
/// whose quarter wakes its reader.
pub fn event(pid: i32, cpu: i32, how: How, pages: usize) -> io::Result<OwnedFd> {
    {
        // SAFETY: perf_event_attr is plain data, for which all zeroes is the default.
        let mut attr: sys::perf_event_attr = unsafe { std::mem::zeroed() };
        attr.type_ = sys::PERF_TYPE_SOFTWARE;
        attr.size = std::mem::size_of::<sys::perf_event_attr>() as u32;
        attr.config = u64::from(sys::PERF_COUNT_SW_PAGE_FAULTS);
        attr.__bindgen_anon_1.sample_period = 1;
        attr.sample_type = u64::from(
            sys::PERF_SAMPLE_TID
                | sys::PERF_SAMPLE_TIME
                | sys::PERF_SAMPLE_ADDR
                | sys::PERF_SAMPLE_REGS_USER
                | sys::PERF_SAMPLE_STACK_USER,
        );
        attr.sample_regs_user = REGS;
        attr.sample_stack_user = STACK_BYTES;
        attr.set_inherit(1);
        attr.set_inherit_thread(u64::from(!how.processes));
        attr.set_exclude_hv(1);
        attr.set_exclude_kernel(u64::from(!how.kernel));
        attr.set_disabled(u64::from(how.on_exec));
        attr.set_enable_on_exec(u64::from(how.on_exec));
        // Wake the reader when a quarter of the ring is full.
        attr.set_watermark(1);
        let page = crate::snapshot::page_size() as usize;
        attr.__bindgen_anon_2.wakeup_watermark = (pages * page / 4) as u32;
        // SAFETY: `attr` is a valid, initialized perf_event_attr of the size it says; no
        // group, no flags.
        let fd = unsafe { perf_event_open_sys::perf_event_open(&mut attr, pid, cpu, -1, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor this function owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

impl Ring {
    /// The event's descriptor, to `poll` for the ring's watermark.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Hands every record in the ring to `sample` (faults) and returns how many faults the
    /// kernel could not record because the ring was full.
    pub fn drain(&mut self, sample: &mut dyn FnMut(&Sample<'_>)) -> u64 {
        let ctl = self.base.cast::<sys::perf_event_mmap_page>();
        // SAFETY: By the type invariant, `ctl` is the live control page. The kernel writes
        // `data_head`; it is read once, then the data it covers is read after an acquire
        // fence, as perf_event_open(2) prescribes.
        let head = unsafe { std::ptr::read_volatile(std::ptr::addr_of!((*ctl).data_head)) };
        fence(Ordering::Acquire);
        // SAFETY: As above; only this reader writes `data_tail`.
        let mut tail = unsafe { std::ptr::read_volatile(std::ptr::addr_of!((*ctl).data_tail)) };
        let mut lost = 0;
        while tail < head {
            let at = (tail % self.data as u64) as usize;
            let mut header = [0u8; 8];
            self.copy(at, &mut header);
            let kind = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]);
            let size = u16::from_ne_bytes([header[6], header[7]]) as usize;
            if size < 8 || tail + size as u64 > head {
                // Not a record: what is left cannot be read.
                tail = head;
                break;
            }
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.resize(size, 0);
            self.copy(at, &mut scratch);
            let record = &scratch[..];
            match kind {
                sys::PERF_RECORD_SAMPLE => {
                    if let Some(s) = parse_sample(&record[8..]) {
                        sample(&s);
                    }
                }
                sys::PERF_RECORD_LOST => {
                    lost += word(record, 16).unwrap_or(0);
                }
                _ => {}
            }
            tail += size as u64;
            self.scratch = scratch;
        }
        fence(Ordering::Release);
        // SAFETY: The records up to `tail` are read; the kernel may reuse their space.
        unsafe { std::ptr::write_volatile(std::ptr::addr_of_mut!((*ctl).data_tail), tail) };
        lost
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the mapping is live and this ring's own; nothing
        // refers to it after this.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

impl Ring {
    /// Copies `out.len()` bytes of the data area from offset `at` (wrapping around its end)
    /// into `out`: bytes the kernel has published and will not write until the tail passes
    /// them, copied through raw pointers (the kernel writes the rest of the area meanwhile).
    fn copy(&self, at: usize, out: &mut [u8]) {
        let len = out.len().min(self.data);
        let first = len.min(self.data - at);
        let page = self.len - self.data;
        // SAFETY: By the type invariant the data area is `data` bytes from one page into the
        // live mapping; `at < data`, `first <= data - at` and `len - first <= data`, so both
        // copies stay inside it, into `out`, which has `len` bytes.
        unsafe {
            let data = self.base.add(page);
            std::ptr::copy_nonoverlapping(data.add(at), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(data, out.as_mut_ptr().add(first), len - first);
        }
    }
}

/// The word at byte `at` of `b`.
fn word(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// A sample's body, laid out as `sample_type` says: `pid, tid`; `time`; `addr`; the registers' ABI and
/// the registers; the stack's size, bytes and the size copied.
fn parse_sample(b: &[u8]) -> Option<Sample<'_>> {
    let pid = i32::from_ne_bytes(b.get(0..4)?.try_into().ok()?);
    let time = word(b, 8)?;
    let addr = word(b, 16)?;
    let abi = word(b, 24)?;
    let mut at = 32;
    let regs = if abi == 0 {
        None
    } else {
        let r = (word(b, at)?, word(b, at + 8)?, word(b, at + 16)?);
        at += 24;
        // In the order of their bits: bp, sp, ip.
        Some((r.2, r.1, r.0))
    };
    let size = word(b, at)? as usize;
    at += 8;
    let stack = if size == 0 {
        &[][..]
    } else {
        let copied = (word(b, at + size)? as usize).min(size);
        b.get(at..at + copied)?
    };
    Some(Sample {
        pid,
        time,
        addr,
        regs,
        stack,
    })
}
