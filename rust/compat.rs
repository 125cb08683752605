// SPDX-License-Identifier: GPL-2.0

//! What differs between the kernel crates of the kernels mmscope supports (`KERNELS` in
//! `scripts/lib.sh`: Linux 7.2 and 7.3), in one place.
//!
//! Each item names the release that changed the API it covers, and is written with what every
//! supported kernel has, so that no version test is needed. When a new series changes an API the
//! module uses, its shim goes here; a shim can go once the oldest supported series has the new
//! API.
//!
//! Kept out of here on purpose: `Task::tgid()`, which Linux 7.3 added (7.2's `Task` has only
//! `pid()` and `tgid_nr_ns()`, whose answer depends on the caller's pid namespace). The module
//! reads the same field on every kernel through `mm_ext::TaskExt::thread_group_id`.

use core::borrow::Borrow;

/// The value of a module parameter of a `Copy` type, from its `value()`.
///
/// Linux 7.3 made `ModuleParamAccess::value()` return a copy of the value, and moved the
/// reference 7.2's `value()` returns to `value_ref()`. A copy and a reference both borrow as
/// the value, which this reads.
pub(crate) fn param_value<T: Copy>(value: impl Borrow<T>) -> T {
    *value.borrow()
}
