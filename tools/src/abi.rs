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
pub const MMSCOPE_ABI_VERSION: u32 = 7;

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
    /// This object: pages mapped by fault-around or fault-ahead, not by a fault of their own.
    pub obj_faultaround_pages: u64,
    /// All objects: faults served since the module was loaded.
    pub faults: u64,
    /// All objects: pages allocated now.
    pub pages: u64,
    /// All objects: pages freed since the module was loaded.
    pub pages_freed: u64,
    /// All objects: the most pages allocated at one time.
    pub peak_pages: u64,
    /// The allowance of each user: the most pages all objects of one user may hold together
    /// (module parameter `max_mb`).
    pub max_pages: u64,
    /// Memory objects alive.
    pub objects: u64,
}

/// `MMSCOPE_IOC_MEM_STATS`.
pub const MMSCOPE_IOC_MEM_STATS: u32 = iowr::<MemStats>(MMSCOPE_IOC_MAGIC, 0x01);

/// `MMSCOPE_IOC_SET_LIMIT`: lowers the object's size limit to a `u64` number of bytes.
pub const MMSCOPE_IOC_SET_LIMIT: u32 = iow::<u64>(MMSCOPE_IOC_MAGIC, 0x02);

/// `MMSCOPE_F_PID`: the request names a target process.
pub const MMSCOPE_F_PID: u32 = 1 << 0;
/// `MMSCOPE_QUERY_COVERING_OR_NEXT`.
pub const MMSCOPE_QUERY_COVERING_OR_NEXT: u32 = 1 << 1;

/// `struct mmscope_mm_summary`. Serializes as the header names its fields, without the
/// request header (`size`, `flags`, `pid`, `reserved`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MmSummary {
    #[serde(skip)]
    pub size: u32,
    #[serde(skip)]
    pub flags: u32,
    #[serde(skip)]
    pub pid: i32,
    #[serde(skip)]
    pub reserved: u32,
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
    pub mmap_base: u64,
    pub task_size: u64,
    pub map_count: u64,
    pub total_vm: u64,
    pub locked_vm: u64,
    pub pinned_vm: u64,
    pub data_vm: u64,
    pub exec_vm: u64,
    pub stack_vm: u64,
    pub hiwater_rss: u64,
    pub hiwater_vm: u64,
    pub rss_anon: u64,
    pub rss_file: u64,
    pub rss_shmem: u64,
    /// One more than the mmap lock's write sequence: unchanged, the VMAs are too (ABI 7);
    /// 0 if unknown.
    #[serde(skip)]
    pub vma_seq: u64,
}

/// `MMSCOPE_MM_SUMMARY_SIZE_VER0`: the size of the first version of [`MmSummary`], which the
/// command number keeps.
pub const MMSCOPE_MM_SUMMARY_SIZE_VER0: usize = 216;

/// `enum mmscope_vma_kind`.
pub mod kind {
    pub const ANON: u32 = 0;
    pub const HEAP: u32 = 1;
    pub const STACK: u32 = 2;
    pub const VDSO: u32 = 3;
    pub const VVAR: u32 = 4;
    pub const FILE: u32 = 5;
    pub const SHMEM: u32 = 6;
    pub const MMSCOPE: u32 = 7;
    pub const SPECIAL: u32 = 8;

    /// A short name for each kind, as the CLI and tests print it.
    pub fn name(kind: u32) -> &'static str {
        match kind {
            ANON => "anon",
            HEAP => "heap",
            STACK => "stack",
            VDSO => "vdso",
            VVAR => "vvar",
            FILE => "file",
            SHMEM => "shmem",
            MMSCOPE => "mmscope",
            SPECIAL => "special",
            _ => "?",
        }
    }
}

/// The `MMSCOPE_VMA_*` flags, bit `i` named by the smaps `VmFlags` mnemonic `VMA_FLAGS[i]`.
pub const VMA_FLAGS: [&str; 24] = [
    "rd", "wr", "ex", "sh", "mr", "mw", "me", "ms", "gd", "lo", "io", "pf", "mm", "dc", "de", "ac",
    "nr", "ht", "dd", "wf", "hg", "nh", "mg", "lf",
];

/// `MMSCOPE_VMA_READ`.
pub const MMSCOPE_VMA_READ: u64 = 1 << 0;
/// `MMSCOPE_VMA_WRITE`.
pub const MMSCOPE_VMA_WRITE: u64 = 1 << 1;
/// `MMSCOPE_VMA_EXEC`.
pub const MMSCOPE_VMA_EXEC: u64 = 1 << 2;
/// `MMSCOPE_VMA_MAYSHARE`.
pub const MMSCOPE_VMA_MAYSHARE: u64 = 1 << 7;
/// `MMSCOPE_VMA_GROWSDOWN`.
pub const MMSCOPE_VMA_GROWSDOWN: u64 = 1 << 8;

/// `struct mmscope_vma`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub pgoff: u64,
    pub flags: u64,
    pub inode: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub kind: u32,
    pub reserved: u32,
}

/// `struct mmscope_vma_list`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmaList {
    pub size: u32,
    pub flags: u32,
    pub pid: i32,
    pub reserved: u32,
    pub start_addr: u64,
    pub records: u64,
    pub record_size: u32,
    pub capacity: u32,
    pub count: u32,
    pub total: u32,
    pub next_addr: u64,
}

/// `struct mmscope_vma_query`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmaQuery {
    pub size: u32,
    pub flags: u32,
    pub pid: i32,
    pub reserved: u32,
    pub addr: u64,
    pub vma: Vma,
}

/// `MMSCOPE_IOC_MM_SUMMARY`.
pub const MMSCOPE_IOC_MM_SUMMARY: u32 = ioc(
    IOC_READ | IOC_WRITE,
    MMSCOPE_IOC_MAGIC,
    0x10,
    MMSCOPE_MM_SUMMARY_SIZE_VER0,
);
/// `MMSCOPE_IOC_VMA_LIST`.
pub const MMSCOPE_IOC_VMA_LIST: u32 = iowr::<VmaList>(MMSCOPE_IOC_MAGIC, 0x11);
/// `MMSCOPE_IOC_VMA_QUERY`.
pub const MMSCOPE_IOC_VMA_QUERY: u32 = iowr::<VmaQuery>(MMSCOPE_IOC_MAGIC, 0x12);
