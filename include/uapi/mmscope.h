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
 * The ABI version this header describes. It grows when an ioctl is added or
 * a rule is relaxed; a version never changes the meaning of an existing ioctl.
 *   3: the address-space ioctls
 *   4: a tracer may read its tracee's address space (MMSCOPE_F_PID)
 *   5: the extensible-struct rule in full: sizes above 4096 bytes are E2BIG
 *      (EINVAL before), and so are nonzero bytes past the kernel's struct
 *   6: mmap() past the object's size limit is EINVAL (EFBIG before, which is
 *      not an mmap() errno); struct mmscope_vma_list's next_addr is the last
 *      byte of the next VMA (its start before, ambiguous for a VMA at 0)
 *   7: struct mmscope_mm_summary grows vma_seq; a caller with the struct of
 *      version 6 (MMSCOPE_MM_SUMMARY_SIZE_VER0 bytes) is served as before
 */
#define MMSCOPE_ABI_VERSION	7

/*
 * MMSCOPE_IOC_VERSION: write the module's ABI version to *arg.
 * Errors: EFAULT if arg is not a writable __u32.
 */
#define MMSCOPE_IOC_VERSION	_IOR(MMSCOPE_IOC_MAGIC, 0x00, __u32)

/*
 * Extensible structs start with __u32 size, then __u32 flags, and follow the
 * kernel's rule for them (copy_struct_from_user(), PROCMAP_QUERY). The caller
 * sets size to sizeof() of the struct it was built with:
 *   - below the size of the struct's first version: EINVAL;
 *   - above 4096 bytes: E2BIG (as clone3() and perf_event_open());
 *   - larger than the kernel's struct: the bytes the kernel does not know must
 *     be zero, E2BIG otherwise, so that a request a newer program makes is
 *     never silently half-understood (ABI version 5).
 * The kernel reads and writes no more than the smaller of the caller's size
 * and its own, and reports that in size. Flags the kernel does not know give
 * EINVAL.
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
 *   EINVAL if the mapping reaches past the object's size limit (module
 *          parameter object_max_mb, lowered by MMSCOPE_IOC_SET_LIMIT), as
 *          mmap(2) documents for a length or offset that is too large.
 * mremap() can move and shrink mappings. Growing one works when it moves
 * (MREMAP_MAYMOVE with no room after it, or MREMAP_FIXED); growing in place
 * fails with ENOMEM, as for every VM_MIXEDMAP mapping.
 *
 * An access at or past the size limit (after mremap() grew a mapping, or the
 * limit was lowered), or one that would take the objects of the object's user
 * past their allowance (module parameter max_mb), or all objects past the
 * module-wide cap (total_max_mb), raises SIGBUS. A failed
 * allocation in the fault handler (the page, or the page store's own memory)
 * is VM_FAULT_OOM: the memory cgroup's OOM handling when a cgroup limit caused
 * it, otherwise the kernel retries the fault. Nothing is left half-allocated.
 *
 * On a fault on a page the object already held, the other pages it holds
 * within the aligned 64 KiB window around it are mapped as well
 * (fault-around); the first touch of a page maps only that page.
 *
 * Fault-ahead is opt-in: on a mapping advised MADV_SEQUENTIAL, a fault (other
 * than a write to a MAP_PRIVATE mapping) allocates the pages the object does
 * not hold yet in the 16 pages from the faulting page on, within the
 * mapping, the faulting page's page table (the aligned PMD_SIZE range, 2 MiB
 * with 4 KiB pages) and the size limit, and maps them, so a sequential first
 * touch takes one fault per 16 pages. Its allocations are a guess: they never
 * wait for reclaim, so they cannot invoke the OOM killer (the faulting page
 * itself, and its page table, can, as in any page fault); when one fails, or
 * the user's allowance is reached, allocation stops there, without an error.
 * MADV_NORMAL or MADV_RANDOM makes the mapping exactly lazy again.
 *
 * Whose pages: each object belongs to the user who opened it (the effective
 * UID of the opening credentials, a kernel UID: a user namespace does not
 * make a new user), whatever process faults its pages in. All objects of one
 * user together hold at most max_mb MiB (max_pages in struct
 * mmscope_mem_stats), so that no user's objects can take what another user's
 * faults need; the allowance is whole again once the user's objects are gone.
 * Before this rule max_mb capped the objects of all users together, which let
 * one user make every other user's faults SIGBUS; a program written for that
 * rule, which reads max_pages as a bound on what it may hold, is right under
 * this one. Above the allowances, all objects of all users together hold at
 * most total_max_mb MiB (the fdinfo of an open file shows it as
 * mmscope-total-max-pages, and the user's pages as mmscope-user-pages): the
 * pages are neither on the LRU nor swappable, and a person with many UIDs
 * (subordinate UIDs in user namespaces) holds many allowances. Pages are also
 * memory of the faulting task's memory cgroup, whose limits bound them as they
 * bound anonymous memory.
 */

/*
 * struct mmscope_mem_stats - counters of the lazily allocated memory
 * @size:                  in: sizeof(struct mmscope_mem_stats); out: bytes written
 * @flags:                 in: must be 0
 * @obj_faults:            this object: faults served
 * @obj_pages:             this object: pages it holds
 * @obj_limit_pages:       this object: size limit, in pages
 * @obj_faultaround_pages: this object: pages mapped by fault-around or
 *                         fault-ahead, not by a fault of their own
 * @faults:                all objects: faults served since load
 * @pages:                 all objects: pages allocated now
 * @pages_freed:           all objects: pages freed since load
 * @peak_pages:            all objects: most pages allocated at one time
 * @max_pages:             the allowance of each user: the most pages all
 *                         objects of one user may hold together (max_mb)
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

/*
 * Address spaces
 *
 * The ioctls below report the memory map of the calling process, or with
 * MMSCOPE_F_PID of the process pid. Another process may be read
 *   - if it is in the caller's thread group;
 *   - if a thread of the caller's thread group traces it (ABI version 4), or
 *     the caller has CAP_SYS_PTRACE in the target's user namespace; and in
 *     both cases only while the target is dumpable (its execve() did not make
 *     it setuid or unreadable, it did not PR_SET_DUMPABLE 0) or the caller
 *     has CAP_SYS_PTRACE in the user namespace of that execve(). For a
 *     tracer that is what PTRACE_PEEKDATA allows it on every access, but
 *     asked from any thread of its thread group, and with the caller's
 *     current capabilities. Credential changes (setuid() and the like) make
 *     a process non-dumpable too. The rule holds while the tracer is
 *     attached: a former tracer is refused. A tool may seize a process
 *     without stopping it (PTRACE_SEIZE), read it, and detach.
 * The rule is applied as mm_access() applies procfs's: under the target's
 * exec_update_lock, so that it is decided for the image whose address space
 * is read, never for one an execve() has replaced meanwhile (a former
 * tracer cannot read the setuid program its tracee execs after a detach).
 * ptrace_may_access() itself is not exported to modules, so mmscope does not
 * re-implement procfs's same-user rule: it refuses a process of the same
 * user that the caller does not trace, which /proc/<pid>/maps would show.
 *
 * Each request starts with the same header:
 *
 *   __u32 size;      sizeof() the struct the caller knows
 *   __u32 flags;     MMSCOPE_F_PID, and the ioctl's own flags
 *   __s32 pid;       with MMSCOPE_F_PID the target (> 0), else 0
 *   __u32 reserved;  must be 0
 *
 * Errors, for all of them: EINVAL for a bad size, an unknown flag, a nonzero
 * reserved field or a bad pid field; EFAULT for a bad pointer; ESRCH if
 * there is no such process or it has no address space; EACCES if the caller
 * may not read it; EINTR if a fatal signal arrived while waiting for the
 * target's locks.
 */
#define MMSCOPE_F_PID			(1U << 0)

/*
 * struct mmscope_mm_summary - the memory-map fields of an mm_struct
 *
 * Read under the mmap read lock. What is consistent with what:
 *   - the layout (start_code to env_end, mmap_base, task_size) and map_count
 *     are one snapshot, consistent with each other and with the VMAs at that
 *     moment: brk() changes brk under the mmap write lock, prctl(PR_SET_MM)
 *     the layout under arg_lock, which the read takes too. The exception is
 *     a process in the middle of execve(), whose new layout is written
 *     without either lock until the new program starts;
 *   - total_vm, data_vm, exec_vm, stack_vm and hiwater_vm may lag a munmap()
 *     running at the same time, which removes its VMAs (and lowers
 *     map_count) under the write lock but these counters after downgrading
 *     it to read; each is a value it had;
 *   - locked_vm, pinned_vm, hiwater_rss and the rss_* counters are each read
 *     once, as /proc/<pid>/status reads them; the rss_* counters are summed
 *     over CPUs, while faults may be adding to them.
 * For the caller's own process with no other thread running, all of it is
 * one snapshot. Addresses are as the kernel stores them: brk is not page
 * aligned. The *_vm, hiwater_* and rss_* fields count pages. /proc shows
 * start_brk (field 47 of /proc/<pid>/stat) but not brk.
 *
 * vma_seq (ABI version 7) tells a caller that keeps a VMA list whether it must
 * read it again: it is one more than the sequence count that the mmap lock's
 * writers advance (mm->mm_lock_seq, at every mmap_write_lock() and at the
 * unlock or downgrade), read under the mmap read lock with map_count. The
 * VMAs' ranges, flags, offsets and files change only under the write lock, and
 * so does brk through brk(), so two readings of one mm_struct with the same
 * vma_seq had the same VMAs; the converse does not hold (a writer may change
 * nothing). Not counted: what a VMA's kind derives from outside that lock,
 * which prctl(PR_SET_MM) and PR_SET_MM_MAP (a checkpoint-restore tool's calls,
 * under the read lock) may move (brk, start_brk, start_stack: [heap] and
 * [stack]), and the link count of a tmpfs file (shmem, once unlinked). It is 0
 * where the kernel keeps no such count (CONFIG_PER_VMA_LOCK off). Across an
 * execve() the process has a new mm_struct, whose count starts again: compare
 * readings of one program only.
 *
 * The struct's first version (ABI 3 to 6) ends at rss_shmem,
 * MMSCOPE_MM_SUMMARY_SIZE_VER0 bytes; a caller built with it gets those bytes.
 * The command number keeps that size.
 */
struct mmscope_mm_summary {
	__u32 size;
	__u32 flags;
	__s32 pid;
	__u32 reserved;
	__u64 start_code;
	__u64 end_code;
	__u64 start_data;
	__u64 end_data;
	__u64 start_brk;
	__u64 brk;
	__u64 start_stack;
	__u64 arg_start;
	__u64 arg_end;
	__u64 env_start;
	__u64 env_end;
	__u64 mmap_base;
	__u64 task_size;
	__u64 map_count;
	__u64 total_vm;
	__u64 locked_vm;
	__u64 pinned_vm;
	__u64 data_vm;
	__u64 exec_vm;
	__u64 stack_vm;
	__u64 hiwater_rss;
	__u64 hiwater_vm;
	__u64 rss_anon;
	__u64 rss_file;
	__u64 rss_shmem;
	__u64 vma_seq;
};

#define MMSCOPE_MM_SUMMARY_SIZE_VER0	216

/* What a VMA maps: the rules /proc/<pid>/maps uses to name it. */
enum mmscope_vma_kind {
	MMSCOPE_KIND_ANON	= 0,	/* private anonymous memory */
	MMSCOPE_KIND_HEAP	= 1,	/* [heap]: overlaps start_brk..brk */
	MMSCOPE_KIND_STACK	= 2,	/* [stack]: holds start_stack */
	MMSCOPE_KIND_VDSO	= 3,	/* [vdso] */
	MMSCOPE_KIND_VVAR	= 4,	/* [vvar], [vvar_vclock] */
	MMSCOPE_KIND_FILE	= 5,	/* a file */
	MMSCOPE_KIND_SHMEM	= 6,	/* unnamed shared memory: MAP_SHARED|
					 * MAP_ANONYMOUS, memfd, SysV shm */
	MMSCOPE_KIND_MMSCOPE	= 7,	/* a mapping of /dev/mmscope */
	MMSCOPE_KIND_SPECIAL	= 8,	/* another special mapping with a name */
};

/* struct mmscope_vma flags: the VM_* flags (smaps VmFlags mnemonic). */
#define MMSCOPE_VMA_READ	(1ULL << 0)	/* rd */
#define MMSCOPE_VMA_WRITE	(1ULL << 1)	/* wr */
#define MMSCOPE_VMA_EXEC	(1ULL << 2)	/* ex */
#define MMSCOPE_VMA_SHARED	(1ULL << 3)	/* sh */
#define MMSCOPE_VMA_MAYREAD	(1ULL << 4)	/* mr */
#define MMSCOPE_VMA_MAYWRITE	(1ULL << 5)	/* mw */
#define MMSCOPE_VMA_MAYEXEC	(1ULL << 6)	/* me */
#define MMSCOPE_VMA_MAYSHARE	(1ULL << 7)	/* ms; maps shows 's' */
#define MMSCOPE_VMA_GROWSDOWN	(1ULL << 8)	/* gd */
#define MMSCOPE_VMA_LOCKED	(1ULL << 9)	/* lo */
#define MMSCOPE_VMA_IO		(1ULL << 10)	/* io */
#define MMSCOPE_VMA_PFNMAP	(1ULL << 11)	/* pf */
#define MMSCOPE_VMA_MIXEDMAP	(1ULL << 12)	/* mm */
#define MMSCOPE_VMA_DONTCOPY	(1ULL << 13)	/* dc */
#define MMSCOPE_VMA_DONTEXPAND	(1ULL << 14)	/* de */
#define MMSCOPE_VMA_ACCOUNT	(1ULL << 15)	/* ac */
#define MMSCOPE_VMA_NORESERVE	(1ULL << 16)	/* nr */
#define MMSCOPE_VMA_HUGETLB	(1ULL << 17)	/* ht */
#define MMSCOPE_VMA_DONTDUMP	(1ULL << 18)	/* dd */
#define MMSCOPE_VMA_WIPEONFORK	(1ULL << 19)	/* wf */
#define MMSCOPE_VMA_HUGEPAGE	(1ULL << 20)	/* hg */
#define MMSCOPE_VMA_NOHUGEPAGE	(1ULL << 21)	/* nh */
#define MMSCOPE_VMA_MERGEABLE	(1ULL << 22)	/* mg */
#define MMSCOPE_VMA_LOCKONFAULT	(1ULL << 23)	/* lf */

/*
 * struct mmscope_vma - one VMA
 * @start, @end:  its range, end exclusive
 * @pgoff:        vm_pgoff: for a file, the offset in pages (maps shows it
 *                in bytes); for anonymous memory the kernel's own index
 *                (maps shows 0)
 * @flags:        MMSCOPE_VMA_*
 * @inode:        for a file, its inode number; else 0
 * @dev_major, @dev_minor: for a file, its filesystem's device; else 0
 * @kind:         enum mmscope_vma_kind
 * @reserved:     0
 */
struct mmscope_vma {
	__u64 start;
	__u64 end;
	__u64 pgoff;
	__u64 flags;
	__u64 inode;
	__u32 dev_major;
	__u32 dev_minor;
	__u32 kind;
	__u32 reserved;
};

/*
 * struct mmscope_vma_list - a page of the VMA list
 * @start_addr:  in: report VMAs from the first one ending above it
 * @records:     in: user pointer to an array of records
 * @record_size: in: the array's stride, at least sizeof(struct mmscope_vma)
 *               (EINVAL) and at most 4096 (E2BIG); the kernel writes its
 *               own record at the start of each and leaves the rest alone;
 *               out: the bytes of each record the kernel wrote
 * @capacity:    in: how many records the array holds (0: only count them)
 * @count:       out: records written
 * @total:       out: map_count, the number of VMAs the process has
 * @next_addr:   out: start_addr for the next call: the last byte of the
 *               first VMA not reported (so never 0, even for a VMA at
 *               address 0 when vm.mmap_min_addr is 0); 0 once the walk has
 *               reported the last VMA (ABI version 6)
 *
 * The kernel walks in chunks of at most 128 VMAs under the mmap read lock
 * and copies each chunk out after dropping it; a walk is consistent within a
 * chunk and, across chunks, continues where the last one ended, as reading
 * /proc/<pid>/maps does.
 */
struct mmscope_vma_list {
	__u32 size;
	__u32 flags;
	__s32 pid;
	__u32 reserved;
	__u64 start_addr;
	__u64 records;
	__u32 record_size;
	__u32 capacity;
	__u32 count;
	__u32 total;
	__u64 next_addr;
};

/* struct mmscope_vma_query flags */
#define MMSCOPE_QUERY_COVERING_OR_NEXT	(1U << 1)

/*
 * struct mmscope_vma_query - the VMA at an address
 * @addr: in: the address
 * @vma:  out: the VMA covering @addr or, with MMSCOPE_QUERY_COVERING_OR_NEXT,
 *        the first one above it. ENOENT if there is none.
 */
struct mmscope_vma_query {
	__u32 size;
	__u32 flags;
	__s32 pid;
	__u32 reserved;
	__u64 addr;
	struct mmscope_vma vma;
};

#define MMSCOPE_IOC_MM_SUMMARY	_IOC(_IOC_READ | _IOC_WRITE, MMSCOPE_IOC_MAGIC, 0x10, \
				     MMSCOPE_MM_SUMMARY_SIZE_VER0)
#define MMSCOPE_IOC_VMA_LIST	_IOWR(MMSCOPE_IOC_MAGIC, 0x11, struct mmscope_vma_list)
#define MMSCOPE_IOC_VMA_QUERY	_IOWR(MMSCOPE_IOC_MAGIC, 0x12, struct mmscope_vma_query)

#endif /* _UAPI_MMSCOPE_H */
