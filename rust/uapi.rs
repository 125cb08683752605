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
pub(crate) const MMSCOPE_ABI_VERSION: u32 = 2;

/// Writes [`MMSCOPE_ABI_VERSION`] to the `u32` that the argument points to.
pub(crate) const MMSCOPE_IOC_VERSION: u32 = _IOR::<u32>(MMSCOPE_IOC_MAGIC, 0x00);

/// Fills a [`MmscopeMemStats`].
pub(crate) const MMSCOPE_IOC_MEM_STATS: u32 = _IOWR::<MmscopeMemStats>(MMSCOPE_IOC_MAGIC, 0x01);

/// Lowers the size limit of this open file's memory object to the `u64` (bytes) at the argument.
pub(crate) const MMSCOPE_IOC_SET_LIMIT: u32 = _IOW::<u64>(MMSCOPE_IOC_MAGIC, 0x02);

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
    /// This object: pages mapped by fault-around.
    pub(crate) obj_faultaround_pages: u64,
    /// All objects: faults served.
    pub(crate) faults: u64,
    /// All objects: pages allocated now.
    pub(crate) pages: u64,
    /// All objects: pages freed.
    pub(crate) pages_freed: u64,
    /// All objects: the most pages allocated at any one time.
    pub(crate) peak_pages: u64,
    /// The module-wide cap in pages (module parameter `max_mb`).
    pub(crate) max_pages: u64,
    /// Memory objects alive (open files and the mappings that outlive them).
    pub(crate) objects: u64,
}

/// Reads and checks the header of an extensible struct at `arg`, whose first version is `T`.
///
/// Every extensible struct starts with a `u32` size, then `u32` flags. Returns the size to use: the smaller of the caller's and ours. The caller's must be at least
/// the first version's size (`EINVAL` otherwise); flags must be zero (`EINVAL`).
pub(crate) fn read_ext_header<T>(arg: usize) -> Result<usize> {
    let mut reader = UserSlice::new(UserPtr::from_addr(arg), 2 * size_of::<u32>()).reader();
    let size = reader.read::<u32>()? as usize;
    let flags = reader.read::<u32>()?;
    if size < size_of::<T>() || flags != 0 {
        return Err(EINVAL);
    }
    Ok(size.min(size_of::<T>()))
}

/// Writes the first `size` bytes of `value` to `arg`.
pub(crate) fn write_ext<T: IntoBytes + Immutable>(arg: usize, value: &T, size: usize) -> Result {
    let bytes = value.as_bytes();
    let bytes = bytes.get(..size).ok_or(EINVAL)?;
    UserSlice::new(UserPtr::from_addr(arg), size)
        .writer()
        .write_slice(bytes)
}
