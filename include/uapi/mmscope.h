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
#define MMSCOPE_ABI_VERSION	2

/*
 * MMSCOPE_IOC_VERSION: write the module's ABI version to *arg.
 * Errors: EFAULT if arg is not a writable __u32.
 */
#define MMSCOPE_IOC_VERSION	_IOR(MMSCOPE_IOC_MAGIC, 0x00, __u32)

/*
 * Extensible structs start with __u32 size, then __u32 flags. The caller sets
 * size to sizeof() of the struct it was built with; it must be at least the
 * size of the struct's first version (EINVAL otherwise). The kernel reads and
 * writes no more than the smaller of the caller's size and its own, and
 * reports that in size. Flags the kernel does not know give EINVAL.
 */

/*
 * The memory object
 *
 * Each open of /dev/mmscope is an independent memory object, like a memfd.
 * mmap() of it at page offset pgoff maps the object's pages from pgoff on,
 * and allocates nothing: the first access to a page offset, through any
 * mapping of the object, allocates a zeroed page in the fault handler
 * (charged to the faulting task's memory cgroup) and maps it. Every later
 * access to that offset, through any mapping of the same open file (also
 * after fork), reaches the same page. MAP_PRIVATE mappings see the object's
 * pages and copy them on write. Pages are freed when the file is closed and
 * its last mapping is gone.
 *
 * mmap() fails with
 *   EPERM  for PROT_EXEC: mappings of the device are never executable, and
 *          mprotect(PROT_EXEC) on them fails with EACCES;
 *   EFBIG  if the mapping reaches past the object's size limit (module
 *          parameter object_max_mb, lowered by MMSCOPE_IOC_SET_LIMIT).
 * mremap() can move and shrink mappings. Growing one works when it moves
 * (MREMAP_MAYMOVE with no room after it, or MREMAP_FIXED); growing in place
 * fails with ENOMEM, as for every VM_MIXEDMAP mapping.
 *
 * An access at or past the size limit (after mremap() grew a mapping, or the
 * limit was lowered), or one that would take the module past its cap on all
 * objects' memory (module parameter max_mb), raises SIGBUS. A failed page
 * allocation is VM_FAULT_OOM.
 *
 * On a fault, pages the object already holds within the aligned 64 KiB
 * window around the faulting page are mapped as well (fault-around).
 */

/*
 * struct mmscope_mem_stats - counters of the lazily allocated memory
 * @size:                  in: sizeof(struct mmscope_mem_stats); out: bytes written
 * @flags:                 in: must be 0
 * @obj_faults:            this object: faults served
 * @obj_pages:             this object: pages it holds
 * @obj_limit_pages:       this object: size limit, in pages
 * @obj_faultaround_pages: this object: pages mapped by fault-around
 * @faults:                all objects: faults served since load
 * @pages:                 all objects: pages allocated now
 * @pages_freed:           all objects: pages freed since load
 * @peak_pages:            all objects: most pages allocated at one time
 * @max_pages:             the cap on all objects' pages (max_mb)
 * @objects:               memory objects alive (open files, and mappings
 *                         that outlive their file)
 */
struct mmscope_mem_stats {
	__u32 size;
	__u32 flags;
	__u64 obj_faults;
	__u64 obj_pages;
	__u64 obj_limit_pages;
	__u64 obj_faultaround_pages;
	__u64 faults;
	__u64 pages;
	__u64 pages_freed;
	__u64 peak_pages;
	__u64 max_pages;
	__u64 objects;
};

/*
 * MMSCOPE_IOC_MEM_STATS: fill a struct mmscope_mem_stats.
 * Errors: EINVAL for a bad size or flags, EFAULT for a bad pointer.
 */
#define MMSCOPE_IOC_MEM_STATS	_IOWR(MMSCOPE_IOC_MAGIC, 0x01, struct mmscope_mem_stats)

/*
 * MMSCOPE_IOC_SET_LIMIT: lower this open file's object size limit to the
 * __u64 number of bytes at arg. Existing mappings stay; their pages at or
 * past the new limit raise SIGBUS when touched.
 * Errors: EINVAL if the size is 0, not a multiple of the page size, or above
 * the current limit; EBUSY if the object holds a page at or past it; EFAULT
 * for a bad pointer.
 */
#define MMSCOPE_IOC_SET_LIMIT	_IOW(MMSCOPE_IOC_MAGIC, 0x02, __u64)

#endif /* _UAPI_MMSCOPE_H */
