/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * mmscope: process memory management made visible.
 *
 * The userspace contract of /dev/mmscope. The module's Rust definitions in
 * rust/uapi.rs mirror this file; the selftests check that they agree.
 *
 * Only fixed-width fields: 32-bit and 64-bit userspace see the same layout.
 */
#ifndef _UAPI_MMSCOPE_H
#define _UAPI_MMSCOPE_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* The ioctl magic, free in Documentation/userspace-api/ioctl/ioctl-number.rst. */
#define MMSCOPE_IOC_MAGIC	0xB9

/*
 * The ABI version this header describes. It grows when an ioctl is added;
 * a version never changes the meaning of an existing ioctl.
 */
#define MMSCOPE_ABI_VERSION	1

/*
 * MMSCOPE_IOC_VERSION: write the module's ABI version to *arg.
 * Errors: EFAULT if arg is not a writable __u32.
 */
#define MMSCOPE_IOC_VERSION	_IOR(MMSCOPE_IOC_MAGIC, 0x00, __u32)

#endif /* _UAPI_MMSCOPE_H */
