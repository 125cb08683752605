// SPDX-License-Identifier: GPL-2.0

//! The userspace ABI of `/dev/mmscope`.
//!
//! Mirrors `include/uapi/mmscope.h`, which is the contract; the selftests check that both agree
//! on every number and layout.

use kernel::{
    ioctl::{
        _IOR,
        _IOW,
        _IOWR, //
    },
    prelude::*,
    transmute::FromBytes,
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};
use zerocopy::Immutable;
use zerocopy_derive::Immutable;

/// The ioctl magic, free in `Documentation/userspace-api/ioctl/ioctl-number.rst`.
pub(crate) const MMSCOPE_IOC_MAGIC: u32 = 0xB9;

/// The ABI version this module implements (`MMSCOPE_ABI_VERSION`).
pub(crate) const MMSCOPE_ABI_VERSION: u32 = 7;

/// Writes [`MMSCOPE_ABI_VERSION`] to the `u32` that the argument points to.
pub(crate) const MMSCOPE_IOC_VERSION: u32 = _IOR::<u32>(MMSCOPE_IOC_MAGIC, 0x00);

/// Fills a [`MmscopeMemStats`].
pub(crate) const MMSCOPE_IOC_MEM_STATS: u32 = _IOWR::<MmscopeMemStats>(MMSCOPE_IOC_MAGIC, 0x01);

/// Lowers the size limit of this open file's memory object to the `u64` (bytes) at the argument.
pub(crate) const MMSCOPE_IOC_SET_LIMIT: u32 = _IOW::<u64>(MMSCOPE_IOC_MAGIC, 0x02);

/// Fills a [`MmscopeMmSummary`]. The number keeps the size of the struct's first version
/// ([`MMSCOPE_MM_SUMMARY_SIZE_VER0`]), so that callers built with it keep calling it.
pub(crate) const MMSCOPE_IOC_MM_SUMMARY: u32 =
    _IOWR::<[u8; MMSCOPE_MM_SUMMARY_SIZE_VER0]>(MMSCOPE_IOC_MAGIC, 0x10);

/// `MMSCOPE_MM_SUMMARY_SIZE_VER0`: the size of [`MmscopeMmSummary`] up to ABI version 6,
/// through `rss_shmem`.
pub(crate) const MMSCOPE_MM_SUMMARY_SIZE_VER0: usize = 216;

/// An extensible struct of the ABI: a caller's `size` from its first version's up to
/// [`MAX_STRUCT_SIZE`] is served.
pub(crate) trait Extensible: Sized {
    /// The size of its first version (`size_of` of it until it grows).
    const FIRST_SIZE: usize = size_of::<Self>();
}

impl Extensible for MmscopeMemStats {}
impl Extensible for MmscopeVmaList {}
impl Extensible for MmscopeVmaQuery {}
impl Extensible for MmscopeMmSummary {
    const FIRST_SIZE: usize = MMSCOPE_MM_SUMMARY_SIZE_VER0;
}

// The first version ends where the fields ABI 7 added begin.
const _: () =
    assert!(core::mem::offset_of!(MmscopeMmSummary, vma_seq) == MMSCOPE_MM_SUMMARY_SIZE_VER0);

/// Fills an array of [`MmscopeVma`] described by a [`MmscopeVmaList`].
pub(crate) const MMSCOPE_IOC_VMA_LIST: u32 = _IOWR::<MmscopeVmaList>(MMSCOPE_IOC_MAGIC, 0x11);

/// Fills a [`MmscopeVmaQuery`].
pub(crate) const MMSCOPE_IOC_VMA_QUERY: u32 = _IOWR::<MmscopeVmaQuery>(MMSCOPE_IOC_MAGIC, 0x12);

/// `MMSCOPE_F_PID`: `pid` names the target process instead of the caller.
pub(crate) const MMSCOPE_F_PID: u32 = 1 << 0;

/// `MMSCOPE_QUERY_COVERING_OR_NEXT`: without a VMA covering the address, report the next one.
pub(crate) const MMSCOPE_QUERY_COVERING_OR_NEXT: u32 = 1 << 1;

/// `struct mmscope_mm_summary`: the memory-map fields of an `mm_struct`; see the header for
/// each field.
#[repr(C)]
#[derive(Default, IntoBytes, Immutable)]
pub(crate) struct MmscopeMmSummary {
    pub(crate) size: u32,
    pub(crate) flags: u32,
    pub(crate) pid: i32,
    pub(crate) reserved: u32,
    pub(crate) start_code: u64,
    pub(crate) end_code: u64,
    pub(crate) start_data: u64,
    pub(crate) end_data: u64,
    pub(crate) start_brk: u64,
    pub(crate) brk: u64,
    pub(crate) start_stack: u64,
    pub(crate) arg_start: u64,
    pub(crate) arg_end: u64,
    pub(crate) env_start: u64,
    pub(crate) env_end: u64,
    pub(crate) mmap_base: u64,
    pub(crate) task_size: u64,
    pub(crate) map_count: u64,
    pub(crate) total_vm: u64,
    pub(crate) locked_vm: u64,
    pub(crate) pinned_vm: u64,
    pub(crate) data_vm: u64,
    pub(crate) exec_vm: u64,
    pub(crate) stack_vm: u64,
    pub(crate) hiwater_rss: u64,
    pub(crate) hiwater_vm: u64,
    pub(crate) rss_anon: u64,
    pub(crate) rss_file: u64,
    pub(crate) rss_shmem: u64,
    /// Since ABI version 7: one more than `mm->mm_lock_seq`, 0 if the kernel has none.
    pub(crate) vma_seq: u64,
}

/// `struct mmscope_vma`: one VMA; see the header for each field.
#[repr(C)]
#[derive(Default, IntoBytes, Immutable)]
pub(crate) struct MmscopeVma {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) pgoff: u64,
    pub(crate) flags: u64,
    pub(crate) inode: u64,
    pub(crate) dev_major: u32,
    pub(crate) dev_minor: u32,
    pub(crate) kind: u32,
    pub(crate) reserved: u32,
}

/// `struct mmscope_vma_list`: a page of the VMA list.
#[repr(C)]
#[derive(Default, IntoBytes, Immutable)]
pub(crate) struct MmscopeVmaList {
    pub(crate) size: u32,
    pub(crate) flags: u32,
    pub(crate) pid: i32,
    pub(crate) reserved: u32,
    pub(crate) start_addr: u64,
    pub(crate) records: u64,
    pub(crate) record_size: u32,
    pub(crate) capacity: u32,
    pub(crate) count: u32,
    pub(crate) total: u32,
    pub(crate) next_addr: u64,
}

/// `struct mmscope_vma_query`: the VMA at or above an address.
#[repr(C)]
#[derive(Default, IntoBytes, Immutable)]
pub(crate) struct MmscopeVmaQuery {
    pub(crate) size: u32,
    pub(crate) flags: u32,
    pub(crate) pid: i32,
    pub(crate) reserved: u32,
    pub(crate) addr: u64,
    pub(crate) vma: MmscopeVma,
}

/// The checked header of a request about an address space.
pub(crate) struct MmRequest {
    /// The size to read and write: the smaller of the caller's and ours.
    pub(crate) size: usize,
    /// The flags, all known.
    pub(crate) flags: u32,
    /// The target process, `None` for the caller.
    pub(crate) pid: Option<i32>,
    /// The input fields that follow the header.
    pub(crate) fields: Input,
}

/// Reads and checks the header every request about an address space starts with: `u32` size,
/// `u32` flags, `i32` pid, `u32` reserved, and the `inputs` bytes of fields after it that the
/// caller fills in. `T` is the request; flags outside `known` (and [`MMSCOPE_F_PID`]), a
/// nonzero reserved field, a pid without `MMSCOPE_F_PID` or a pid below 1 with it give
/// `EINVAL`.
pub(crate) fn read_mm_request<T: Extensible>(
    arg: usize,
    known: u32,
    inputs: usize,
) -> Result<MmRequest> {
    let (size, mut fields) = read_input::<T>(arg, 4 * size_of::<u32>() + inputs)?;
    let [flags, pid, reserved] = fields.read::<[u32; 3]>()?;
    let pid = pid as i32;
    if flags & !(known | MMSCOPE_F_PID) != 0 || reserved != 0 {
        return Err(EINVAL);
    }
    let pid = if flags & MMSCOPE_F_PID != 0 {
        if pid < 1 {
            return Err(EINVAL);
        }
        Some(pid)
    } else if pid != 0 {
        return Err(EINVAL);
    } else {
        None
    };
    Ok(MmRequest {
        size,
        flags,
        pid,
        fields,
    })
}

/// The most input bytes a request has: its header and the fields the caller fills in.
const MAX_INPUT: usize = 64;

/// The input part of a request, read from userspace in one copy, and read field by field.
pub(crate) struct Input {
    /// The bytes; those from `pos` to `len` are still to be read.
    bytes: [u8; MAX_INPUT],
    /// How many bytes were read from userspace.
    len: usize,
    /// How many have been read from here.
    pos: usize,
}

impl Input {
    /// The next field.
    pub(crate) fn read<F: FromBytes>(&mut self) -> Result<F> {
        let rest = self.bytes.get(self.pos..self.len).ok_or(EINVAL)?;
        let (value, _) = F::from_bytes_copy_prefix(rest).ok_or(EINVAL)?;
        self.pos += size_of::<F>();
        Ok(value)
    }
}

/// Reads the first `input` bytes of the extensible struct `T`, which starts with its `u32`
/// size: the size and the fields the caller fills in (all in its first version). Returns the
/// size to read and write (the caller's or ours, whichever is smaller), and the input with
/// the size field read.
///
/// One copy from userspace where the caller's struct is readable; otherwise the checks of
/// [`read_ext_header`] run one by one, so that each bad input gets the same errno either way.
fn read_input<T: Extensible>(arg: usize, input: usize) -> Result<(usize, Input)> {
    if input > MAX_INPUT || input > T::FIRST_SIZE {
        return Err(EINVAL);
    }
    let mut fields = Input {
        bytes: [0; MAX_INPUT],
        len: input,
        pos: 0,
    };
    let mut reader = UserSlice::new(UserPtr::from_addr(arg), input).reader();
    if reader.read_slice(&mut fields.bytes[..input]).is_err() {
        read_ext_header::<T>(arg)?;
        return Err(EFAULT);
    }
    let size = fields.read::<u32>()? as usize;
    Ok((check_size::<T>(arg, size)?, fields))
}

/// `struct mmscope_mem_stats`: the counters of the lazily allocated memory.
#[repr(C)]
#[derive(Default, IntoBytes, Immutable)]
pub(crate) struct MmscopeMemStats {
    /// In: the size of the struct the caller knows. Out: the bytes the kernel wrote.
    pub(crate) size: u32,
    /// In: must be zero.
    pub(crate) flags: u32,
    /// This object: faults served.
    pub(crate) obj_faults: u64,
    /// This object: pages allocated now.
    pub(crate) obj_pages: u64,
    /// This object: size limit in pages.
    pub(crate) obj_limit_pages: u64,
    /// This object: pages mapped by fault-around or fault-ahead.
    pub(crate) obj_faultaround_pages: u64,
    /// All objects: faults served.
    pub(crate) faults: u64,
    /// All objects: pages allocated now.
    pub(crate) pages: u64,
    /// All objects: pages freed.
    pub(crate) pages_freed: u64,
    /// All objects: the most pages allocated at any one time.
    pub(crate) peak_pages: u64,
    /// The allowance of each user: the most pages all objects of one user may hold together
    /// (module parameter `max_mb`).
    pub(crate) max_pages: u64,
    /// Memory objects alive (open files and the mappings that outlive them).
    pub(crate) objects: u64,
}

/// Reads the size of an extensible struct at `arg`, whose first version is `T`.
///
/// Every extensible struct starts with its `u32` size. Returns the size to use: the smaller of
/// the caller's and ours. The caller's must be at least the first version's size (`EINVAL`
/// otherwise) and at most [`MAX_STRUCT_SIZE`] (`E2BIG`); bytes of it past ours must be zero
/// (`E2BIG`), the kernel's rule for extensible structs.
pub(crate) fn read_ext_header<T: Extensible>(arg: usize) -> Result<usize> {
    let mut reader = UserSlice::new(UserPtr::from_addr(arg), size_of::<u32>()).reader();
    let size = reader.read::<u32>()? as usize;
    check_size::<T>(arg, size)
}

/// Checks the `size` a caller gives for the struct `T`: `EINVAL` below its first version's,
/// `E2BIG` above [`MAX_STRUCT_SIZE`] or if the bytes past ours are not all zero. Returns how
/// many bytes to read and write: the caller's size or ours, whichever is smaller.
fn check_size<T: Extensible>(arg: usize, size: usize) -> Result<usize> {
    let ours = size_of::<T>();
    if size < T::FIRST_SIZE {
        return Err(EINVAL);
    }
    if size > MAX_STRUCT_SIZE {
        return Err(E2BIG);
    }
    if size > ours {
        check_zeroed(arg.checked_add(ours).ok_or(EFAULT)?, size - ours)?;
    }
    Ok(size.min(ours))
}

/// The largest struct or record size a caller may pass (`E2BIG` above it), as `clone3()` and
/// `perf_event_open()` bound theirs.
pub(crate) const MAX_STRUCT_SIZE: usize = 4096;

/// Fails with `E2BIG` unless the `len` bytes at `addr` are all zero, as
/// `check_zeroed_user()` does for `copy_struct_from_user()`: the part of a newer caller's
/// struct that this module does not know must not ask for anything.
fn check_zeroed(addr: usize, len: usize) -> Result {
    let mut reader = UserSlice::new(UserPtr::from_addr(addr), len).reader();
    let mut buf = [0u8; 64];
    while !reader.is_empty() {
        let part = buf.get_mut(..reader.len().min(64)).ok_or(EINVAL)?;
        reader.read_slice(part)?;
        if part.iter().any(|&b| b != 0) {
            return Err(E2BIG);
        }
    }
    Ok(())
}

/// Reads the size and flags of an extensible struct whose first version is `T` and that takes
/// no flags (`EINVAL` if any is set).
pub(crate) fn read_ext_header_no_flags<T: Extensible>(arg: usize) -> Result<usize> {
    let (size, mut fields) = read_input::<T>(arg, 2 * size_of::<u32>())?;
    if fields.read::<u32>()? != 0 {
        return Err(EINVAL);
    }
    Ok(size)
}

/// Writes the first `size` bytes of `value` to `arg`.
pub(crate) fn write_ext<T: IntoBytes + Immutable>(arg: usize, value: &T, size: usize) -> Result {
    let bytes = value.as_bytes();
    let bytes = bytes.get(..size).ok_or(EINVAL)?;
    UserSlice::new(UserPtr::from_addr(arg), size)
        .writer()
        .write_slice(bytes)
}
