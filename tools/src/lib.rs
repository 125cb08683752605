// SPDX-License-Identifier: GPL-2.0

//! Userspace side of `/dev/mmscope`.
//!
//! [`abi`] mirrors `include/uapi/mmscope.h`; [`Device`] wraps an open of the device with one
//! safe method per ioctl.

pub mod abi;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// The device node the module registers.
pub const DEVICE_PATH: &str = "/dev/mmscope";

/// One open of `/dev/mmscope`.
pub struct Device {
    file: File,
}

impl Device {
    /// Opens [`DEVICE_PATH`] read-write.
    pub fn open() -> io::Result<Self> {
        Self::open_path(DEVICE_PATH)
    }

    /// Opens the device node at `path` read-write.
    pub fn open_path(path: impl AsRef<Path>) -> io::Result<Self> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Self { file })
    }

    /// The ABI version the loaded module implements (`MMSCOPE_IOC_VERSION`).
    pub fn abi_version(&self) -> io::Result<u32> {
        let mut version = 0u32;
        // SAFETY: MMSCOPE_IOC_VERSION writes one u32 to the pointer, which points to one.
        unsafe { self.ioctl(abi::MMSCOPE_IOC_VERSION, &mut version as *mut u32 as usize) }?;
        Ok(version)
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
