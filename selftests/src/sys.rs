// SPDX-License-Identifier: GPL-2.0

//! Thin wrappers around the system calls and procfs files the tests use as ground truth.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;

/// Turns a C-style return value into an `io::Result`.
pub fn cvt(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `delete_module(name, O_NONBLOCK)`, what `rmmod` does.
pub fn delete_module(name: &str) -> io::Result<()> {
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
    cvt(unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) })?;
    Ok(())
}

/// `finit_module(fd, "", 0)` on the module file at `path`, what `insmod` does.
pub fn load_module(path: &str) -> io::Result<()> {
    let file = fs::File::open(path)?;
    // SAFETY: The fd is open and the parameter string is a valid empty C string.
    cvt(unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), c"".as_ptr(), 0) })?;
    Ok(())
}

/// The reference count `/proc/modules` shows for `name`, or `None` if it is not loaded.
pub fn module_refcount(name: &str) -> io::Result<Option<u64>> {
    let modules = fs::read_to_string("/proc/modules")?;
    for line in modules.lines() {
        let mut fields = line.split_whitespace();
        if fields.next() == Some(name) {
            let count = fields.nth(1).and_then(|f| f.parse().ok());
            return count.map(Some).ok_or_else(|| {
                io::Error::other(format!("cannot parse /proc/modules line {line:?}"))
            });
        }
    }
    Ok(None)
}

/// The minor number `/proc/misc` lists for the misc device `name`.
pub fn misc_minor(name: &str) -> io::Result<Option<u32>> {
    let misc = fs::read_to_string("/proc/misc")?;
    Ok(misc.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let minor = fields.next()?.parse().ok()?;
        (fields.next() == Some(name)).then_some(minor)
    }))
}
