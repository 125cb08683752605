// SPDX-License-Identifier: GPL-2.0

//! The ABI of `/dev/mmscope`, mirroring `include/uapi/mmscope.h`.

/// Encodes an ioctl number as the kernel's `_IOC(dir, type, nr, size)` does on x86.
pub const fn ioc(dir: u32, ty: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | (ty << 8) | nr
}

/// `_IOC_WRITE`: userspace writes, the kernel reads.
pub const IOC_WRITE: u32 = 1;
/// `_IOC_READ`: the kernel writes, userspace reads.
pub const IOC_READ: u32 = 2;

/// `_IOW(ty, nr, T)`.
pub const fn iow<T>(ty: u32, nr: u32) -> u32 {
    ioc(IOC_WRITE, ty, nr, core::mem::size_of::<T>())
}

/// `_IOWR(ty, nr, T)`.
pub const fn iowr<T>(ty: u32, nr: u32) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, core::mem::size_of::<T>())
}

/// `_IOR(ty, nr, T)`.
pub const fn ior<T>(ty: u32, nr: u32) -> u32 {
    ioc(IOC_READ, ty, nr, core::mem::size_of::<T>())
}

/// `MMSCOPE_IOC_MAGIC`.
pub const MMSCOPE_IOC_MAGIC: u32 = 0xB9;

/// `MMSCOPE_ABI_VERSION`: the ABI version these definitions describe.
pub const MMSCOPE_ABI_VERSION: u32 = 2;

/// `MMSCOPE_IOC_VERSION`: the module writes its ABI version to a `u32`.
pub const MMSCOPE_IOC_VERSION: u32 = ior::<u32>(MMSCOPE_IOC_MAGIC, 0x00);

/// `struct mmscope_mem_stats`: counters of the lazily allocated memory.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemStats {
    /// In: the size of this struct. Out: the bytes the kernel wrote.
    pub size: u32,
    /// In: must be zero.
    pub flags: u32,
    /// This object: faults served.
    pub obj_faults: u64,
    /// This object: pages it holds.
    pub obj_pages: u64,
    /// This object: size limit in pages.
    pub obj_limit_pages: u64,
    /// This object: pages mapped by fault-around.
    pub obj_faultaround_pages: u64,
    /// All objects: faults served since the module was loaded.
    pub faults: u64,
    /// All objects: pages allocated now.
    pub pages: u64,
    /// All objects: pages freed since the module was loaded.
    pub pages_freed: u64,
    /// All objects: the most pages allocated at one time.
    pub peak_pages: u64,
    /// The cap on all objects' pages (module parameter `max_mb`).
    pub max_pages: u64,
    /// Memory objects alive.
    pub objects: u64,
}

/// `MMSCOPE_IOC_MEM_STATS`.
pub const MMSCOPE_IOC_MEM_STATS: u32 = iowr::<MemStats>(MMSCOPE_IOC_MAGIC, 0x01);

/// `MMSCOPE_IOC_SET_LIMIT`: lowers the object's size limit to a `u64` number of bytes.
pub const MMSCOPE_IOC_SET_LIMIT: u32 = iow::<u64>(MMSCOPE_IOC_MAGIC, 0x02);
