// SPDX-License-Identifier: GPL-2.0

//! The device itself: registration, the ABI contract, the version ioctl, unloading.

use crate::harness::{expect_errno, Context, TestResult};
use crate::{check, check_eq, skip, sys};
use mmscope::abi;
use mmscope::Device;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// The misc character major (`MISC_MAJOR`).
const MISC_MAJOR: u64 = 10;

extern "C" {
    static mmscope_c_ioc_magic: u32;
    static mmscope_c_abi_version: u32;
    static mmscope_c_ioc_version: u32;
    static mmscope_c_ioc_mem_stats: u32;
    static mmscope_c_ioc_set_limit: u32;
    static mmscope_c_ioc_mm_summary: u32;
    static mmscope_c_ioc_vma_list: u32;
    static mmscope_c_ioc_vma_query: u32;
    static mmscope_c_f_pid: u32;
    static mmscope_c_query_covering_or_next: u32;
    static mmscope_c_kinds: [u32; 9];
    static mmscope_c_vma_flags: [u64; 24];
    static mmscope_c_mem_stats_layout: [libc::c_ulong; 0];
    static mmscope_c_mem_stats_layout_len: libc::c_ulong;
    static mmscope_c_mm_summary_layout: [libc::c_ulong; 0];
    static mmscope_c_mm_summary_layout_len: libc::c_ulong;
    static mmscope_c_vma_layout: [libc::c_ulong; 0];
    static mmscope_c_vma_layout_len: libc::c_ulong;
    static mmscope_c_vma_list_layout: [libc::c_ulong; 0];
    static mmscope_c_vma_list_layout_len: libc::c_ulong;
    static mmscope_c_vma_query_layout: [libc::c_ulong; 0];
    static mmscope_c_vma_query_layout_len: libc::c_ulong;
}

/// The layout of a Rust struct as c/abi.c records a C one: its size, then the offset and size
/// of each field in order.
macro_rules! layout {
    ($t:ty: $($f:ident),+ $(,)?) => {{
        let v = <$t>::default();
        let mut l = vec![std::mem::size_of::<$t>() as libc::c_ulong];
        $(
            l.push(std::mem::offset_of!($t, $f) as libc::c_ulong);
            l.push(std::mem::size_of_val(&v.$f) as libc::c_ulong);
        )+
        l
    }};
}

/// The layout array c/abi.c exports as `array` with `len` entries.
///
/// # Safety
///
/// `array` must be the first element of an array of `len` entries.
unsafe fn c_layout(array: *const libc::c_ulong, len: libc::c_ulong) -> Vec<libc::c_ulong> {
    // SAFETY: The caller guarantees the array has `len` entries.
    unsafe { std::slice::from_raw_parts(array, len as usize) }.to_vec()
}

/// The Rust ABI definitions agree with `include/uapi/mmscope.h` as compiled by a C compiler:
/// constants, ioctl numbers, struct sizes and every field's offset and size.
pub fn abi_matches_c_header() -> TestResult {
    // SAFETY: These are plain constants defined in c/abi.c and never written.
    let c = unsafe {
        [
            mmscope_c_ioc_magic,
            mmscope_c_abi_version,
            mmscope_c_ioc_version,
            mmscope_c_ioc_mem_stats,
            mmscope_c_ioc_set_limit,
            mmscope_c_ioc_mm_summary,
            mmscope_c_ioc_vma_list,
            mmscope_c_ioc_vma_query,
            mmscope_c_f_pid,
            mmscope_c_query_covering_or_next,
        ]
    };
    let rust = [
        abi::MMSCOPE_IOC_MAGIC,
        abi::MMSCOPE_ABI_VERSION,
        abi::MMSCOPE_IOC_VERSION,
        abi::MMSCOPE_IOC_MEM_STATS,
        abi::MMSCOPE_IOC_SET_LIMIT,
        abi::MMSCOPE_IOC_MM_SUMMARY,
        abi::MMSCOPE_IOC_VMA_LIST,
        abi::MMSCOPE_IOC_VMA_QUERY,
        abi::MMSCOPE_F_PID,
        abi::MMSCOPE_QUERY_COVERING_OR_NEXT,
    ];
    let names = [
        "IOC_MAGIC",
        "ABI_VERSION",
        "IOC_VERSION",
        "IOC_MEM_STATS",
        "IOC_SET_LIMIT",
        "IOC_MM_SUMMARY",
        "IOC_VMA_LIST",
        "IOC_VMA_QUERY",
        "F_PID",
        "QUERY_COVERING_OR_NEXT",
    ];
    for ((name, c), rust) in names.iter().zip(c).zip(rust) {
        check_eq!(rust, c, "MMSCOPE_{name}: Rust, C");
    }
    use abi::kind;
    let kinds = [
        kind::ANON,
        kind::HEAP,
        kind::STACK,
        kind::VDSO,
        kind::VVAR,
        kind::FILE,
        kind::SHMEM,
        kind::MMSCOPE,
        kind::SPECIAL,
    ];
    // SAFETY: Plain constants defined in c/abi.c.
    check_eq!(
        kinds,
        unsafe { mmscope_c_kinds },
        "enum mmscope_vma_kind: Rust, C"
    );
    let flags: Vec<u64> = (0..abi::VMA_FLAGS.len()).map(|i| 1 << i).collect();
    // SAFETY: Plain constants defined in c/abi.c.
    check_eq!(
        flags,
        unsafe { mmscope_c_vma_flags }.to_vec(),
        "MMSCOPE_VMA_*: Rust, C"
    );

    // SAFETY: Each pair names an array and its length from c/abi.c.
    let c = unsafe {
        [
            c_layout(
                mmscope_c_mem_stats_layout.as_ptr(),
                mmscope_c_mem_stats_layout_len,
            ),
            c_layout(
                mmscope_c_mm_summary_layout.as_ptr(),
                mmscope_c_mm_summary_layout_len,
            ),
            c_layout(mmscope_c_vma_layout.as_ptr(), mmscope_c_vma_layout_len),
            c_layout(
                mmscope_c_vma_list_layout.as_ptr(),
                mmscope_c_vma_list_layout_len,
            ),
            c_layout(
                mmscope_c_vma_query_layout.as_ptr(),
                mmscope_c_vma_query_layout_len,
            ),
        ]
    };
    let rust = [
        layout!(abi::MemStats: size, flags, obj_faults, obj_pages, obj_limit_pages,
            obj_faultaround_pages, faults, pages, pages_freed, peak_pages, max_pages, objects),
        layout!(abi::MmSummary: size, flags, pid, reserved, start_code, end_code, start_data,
            end_data, start_brk, brk, start_stack, arg_start, arg_end, env_start, env_end,
            mmap_base, task_size, map_count, total_vm, locked_vm, pinned_vm, data_vm, exec_vm,
            stack_vm, hiwater_rss, hiwater_vm, rss_anon, rss_file, rss_shmem, vma_seq),
        layout!(abi::Vma: start, end, pgoff, flags, inode, dev_major, dev_minor, kind, reserved),
        layout!(abi::VmaList: size, flags, pid, reserved, start_addr, records, record_size,
            capacity, count, total, next_addr),
        layout!(abi::VmaQuery: size, flags, pid, reserved, addr, vma),
    ];
    let names = ["mem_stats", "mm_summary", "vma", "vma_list", "vma_query"];
    for ((name, c), rust) in names.iter().zip(c).zip(rust) {
        check_eq!(rust, c, "layout of struct mmscope_{name}: Rust, C");
    }
    Ok(())
}

/// `/dev/mmscope` is a character device whose number is the one `/proc/misc` lists.
pub fn device_node_is_registered() -> TestResult {
    let minor = sys::misc_minor("mmscope").context("read /proc/misc")?;
    let Some(minor) = minor else {
        return Err(crate::harness::Outcome::Fail(
            "mmscope is not in /proc/misc".into(),
        ));
    };
    let meta = fs::metadata(mmscope::DEVICE_PATH).context("stat /dev/mmscope")?;
    check!(
        meta.file_type().is_char_device(),
        "/dev/mmscope is not a character device"
    );
    let rdev = meta.rdev();
    check_eq!(
        libc::major(rdev) as u64,
        MISC_MAJOR,
        "major of /dev/mmscope"
    );
    check_eq!(
        libc::minor(rdev),
        minor,
        "minor of /dev/mmscope against /proc/misc"
    );
    Device::open().context("open /dev/mmscope read-write")?;
    Ok(())
}

/// The version ioctl writes the ABI version the header declares and returns 0.
pub fn version_ioctl() -> TestResult {
    let dev = Device::open().context("open /dev/mmscope")?;
    let mut version = u32::MAX;
    // SAFETY: MMSCOPE_IOC_VERSION writes one u32 to a live u32.
    let ret = unsafe { dev.ioctl(abi::MMSCOPE_IOC_VERSION, &mut version as *mut u32 as usize) }
        .context("MMSCOPE_IOC_VERSION")?;
    check_eq!(ret, 0, "return value of MMSCOPE_IOC_VERSION");
    // SAFETY: A plain constant defined in c/abi.c.
    check_eq!(version, unsafe { mmscope_c_abi_version }, "ABI version");
    Ok(())
}

/// The version ioctl with a pointer it cannot write gives EFAULT.
pub fn version_ioctl_bad_pointer() -> TestResult {
    let dev = Device::open().context("open /dev/mmscope")?;
    // SAFETY: Address 0 is never mapped; the kernel must refuse it.
    expect_errno(
        unsafe { dev.ioctl(abi::MMSCOPE_IOC_VERSION, 0) },
        libc::EFAULT,
        "NULL",
    )?;
    // A read-only page: the kernel may read it but must not write it.
    // SAFETY: A fresh anonymous mapping; nothing else refers to it.
    let page = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    check!(page != libc::MAP_FAILED, "mmap of a read-only page failed");
    // SAFETY: The page is mapped read-only; the ioctl must fail without writing it.
    let res = unsafe { dev.ioctl(abi::MMSCOPE_IOC_VERSION, page as usize) };
    expect_errno(res, libc::EFAULT, "read-only page")
}

/// Commands the module does not know give ENOTTY, also near-misses of a real one.
pub fn unknown_ioctl_is_enotty() -> TestResult {
    let dev = Device::open().context("open /dev/mmscope")?;
    let mut buf = [0u8; 256];
    let arg = buf.as_mut_ptr() as usize;
    let magic = abi::MMSCOPE_IOC_MAGIC;
    let cases = [
        ("unused number", abi::ior::<u32>(magic, 0x7f)),
        ("other magic", abi::ior::<u32>(b'|' as u32, 0x00)),
        ("version with wrong size", abi::ior::<u64>(magic, 0x00)),
        (
            "version with wrong direction",
            abi::ioc(abi::IOC_WRITE, magic, 0x00, 4),
        ),
        ("bare number 0", 0),
    ];
    for (what, cmd) in cases {
        // SAFETY: `arg` points to 256 writable bytes, more than any of these sizes.
        expect_errno(unsafe { dev.ioctl(cmd, arg) }, libc::ENOTTY, what)?;
    }
    check!(
        buf.iter().all(|&b| b == 0),
        "an unknown ioctl wrote to its argument"
    );
    Ok(())
}

/// While a file is open the module is pinned: `rmmod` fails with EWOULDBLOCK and the device
/// keeps working; after close it unloads, and loading it again brings the device back.
pub fn rmmod_refused_while_open() -> TestResult {
    let Ok(ko) = std::env::var("MMSCOPE_KO") else {
        skip!("MMSCOPE_KO does not name the module file, so it could not be loaded again");
    };
    check_eq!(
        sys::module_refcount("mmscope")?,
        Some(0),
        "refcount before open"
    );
    let dev = Device::open().context("open /dev/mmscope")?;
    check_eq!(
        sys::module_refcount("mmscope")?,
        Some(1),
        "refcount while open"
    );
    expect_errno(
        sys::delete_module("mmscope"),
        libc::EWOULDBLOCK,
        "rmmod while open",
    )?;
    check_eq!(
        dev.abi_version().context("ioctl after refused rmmod")?,
        abi::MMSCOPE_ABI_VERSION
    );
    drop(dev);

    sys::delete_module("mmscope").context("rmmod after close")?;
    let gone = sys::module_refcount("mmscope")?.is_none();
    let node_gone = fs::metadata(mmscope::DEVICE_PATH).is_err();
    // Load it again before judging, so that later tests find the device whatever happened.
    sys::load_module_with(&ko, "").context(format!("insmod {ko}"))?;
    check!(gone, "mmscope still in /proc/modules after rmmod");
    check!(node_gone, "/dev/mmscope still exists after rmmod");
    check_eq!(
        Device::open()?.abi_version()?,
        abi::MMSCOPE_ABI_VERSION,
        "after reload"
    );
    Ok(())
}
