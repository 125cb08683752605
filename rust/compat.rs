// SPDX-License-Identifier: GPL-2.0

//! What differs between the kernel crates of the kernels mmscope supports (`KERNELS` in
//! `scripts/lib.sh`: Linux 7.2 and 7.3), in one place.
//!
//! Each item names the release that changed the API it covers, and is written with what every
//! supported kernel has, so that no version test is needed (the file operations' owner is probed
//! at run time). Besides `vm_ops.rs` and `mm_ext.rs`, this is the only file with `unsafe` code. When a new series changes an API the
//! module uses, its shim goes here; a shim can go once the oldest supported series has the new
//! API.
//!
//! Kept out of here on purpose: `Task::tgid()`, which Linux 7.3 added (7.2's `Task` has only
//! `pid()` and `tgid_nr_ns()`, whose answer depends on the caller's pid namespace). The module
//! reads the same field on every kernel through `mm_ext::TaskExt::thread_group_id`.

use core::{
    borrow::Borrow,
    ffi::c_int, //
};
use kernel::{
    bindings,
    fs::File,
    prelude::*, //
};

// Compiled from `helpers.c`.
// Only pointers cross: see `mm_ext.rs`.
#[allow(improper_ctypes)]
extern "C" {
    /// Gives `file` operations with an owner, holding the module, if its own have none.
    fn mmscope_file_hold_module(file: *mut bindings::file) -> c_int;
}

/// The value of a module parameter of a `Copy` type, from its `value()`.
///
/// Linux 7.3 made `ModuleParamAccess::value()` return a copy of the value, and moved the
/// reference 7.2's `value()` returns to `value_ref()`. A copy and a reference both borrow as
/// the value, which this reads.
pub(crate) fn param_value<T: Copy>(value: impl Borrow<T>) -> T {
    *value.borrow()
}

/// `VM_MAYSHARE`.
///
/// Linux 7.2's `rust/bindings/bindings_helper.h` gives the kernel crate's `VM_MAYSHARE` (and so
/// `mm::virt::flags::MAYSHARE`) the value of `VM_MAYEXEC`; 7.3 corrected it. The bit number is
/// right on both.
pub(crate) const VM_MAYSHARE: usize = 1 << bindings::VMA_MAYSHARE_BIT;

/// Makes the open `file` of the device hold the module while it is open, and so while any
/// mapping of it exists: called first in the device's `open`.
///
/// Linux 7.3's `kernel::miscdevice` sets `.owner` in the device's file operations, so the kernel
/// takes the module reference at open and drops it after `release` (`fops_put()` in `__fput()`),
/// and this does nothing. Linux 7.2's leaves it NULL: an open file or a mapping of the device
/// does not keep the module loaded, and `rmmod` would free the code their operations point to.
/// There the file gets a copy of its operations with the owner set, as `misc_open()` gives it
/// the device's (see `mmscope_file_hold_module()` in `helpers.c`).
///
/// Fails with `ENODEV` if the module is being unloaded.
pub(crate) fn file_hold_module(file: &File) -> Result {
    // SAFETY: `file` is being opened (this is called from `open`), which is when its operations
    // may be replaced; the helper only reads and replaces `f_op`.
    let ret = unsafe { mmscope_file_hold_module(file.as_ptr()) };
    if ret != 0 {
        return Err(ENODEV);
    }
    Ok(())
}
