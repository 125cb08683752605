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
}

/// The Rust ABI definitions agree with `include/uapi/mmscope.h` as compiled by a C compiler.
pub fn abi_matches_c_header() -> TestResult {
    // SAFETY: These are plain constants defined in c/abi.c and never written.
    let (magic, version, ioc_version) = unsafe {
        (
            mmscope_c_ioc_magic,
            mmscope_c_abi_version,
            mmscope_c_ioc_version,
        )
    };
    check_eq!(abi::MMSCOPE_IOC_MAGIC, magic, "MMSCOPE_IOC_MAGIC");
    check_eq!(abi::MMSCOPE_ABI_VERSION, version, "MMSCOPE_ABI_VERSION");
    check_eq!(abi::MMSCOPE_IOC_VERSION, ioc_version, "MMSCOPE_IOC_VERSION");
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
