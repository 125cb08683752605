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

/// `_IOR(ty, nr, T)`.
pub const fn ior<T>(ty: u32, nr: u32) -> u32 {
    ioc(IOC_READ, ty, nr, core::mem::size_of::<T>())
}

/// `MMSCOPE_IOC_MAGIC`.
pub const MMSCOPE_IOC_MAGIC: u32 = 0xB9;

/// `MMSCOPE_ABI_VERSION`: the ABI version these definitions describe.
pub const MMSCOPE_ABI_VERSION: u32 = 1;

/// `MMSCOPE_IOC_VERSION`: the module writes its ABI version to a `u32`.
pub const MMSCOPE_IOC_VERSION: u32 = ior::<u32>(MMSCOPE_IOC_MAGIC, 0x00);
