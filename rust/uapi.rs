// SPDX-License-Identifier: GPL-2.0

//! The userspace ABI of `/dev/mmscope`.
//!
//! Mirrors `include/uapi/mmscope.h`, which is the contract; the selftests check that both agree
//! on every number and layout.

use kernel::ioctl::_IOR;

/// The ioctl magic, free in `Documentation/userspace-api/ioctl/ioctl-number.rst`.
pub(crate) const MMSCOPE_IOC_MAGIC: u32 = 0xB9;

/// The ABI version this module implements (`MMSCOPE_ABI_VERSION`).
pub(crate) const MMSCOPE_ABI_VERSION: u32 = 1;

/// Writes [`MMSCOPE_ABI_VERSION`] to the `u32` that the argument points to.
pub(crate) const MMSCOPE_IOC_VERSION: u32 = _IOR::<u32>(MMSCOPE_IOC_MAGIC, 0x00);
