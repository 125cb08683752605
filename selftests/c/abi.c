// SPDX-License-Identifier: GPL-2.0
/*
 * The ABI as the C header defines it, compiled by a C compiler, so that the
 * selftests can compare it with the Rust definitions.
 */
#include <stddef.h>
#include "mmscope.h"

const unsigned int mmscope_c_ioc_magic = MMSCOPE_IOC_MAGIC;
const unsigned int mmscope_c_abi_version = MMSCOPE_ABI_VERSION;
const unsigned int mmscope_c_ioc_version = MMSCOPE_IOC_VERSION;
const unsigned int mmscope_c_ioc_mem_stats = MMSCOPE_IOC_MEM_STATS;
const unsigned int mmscope_c_ioc_set_limit = MMSCOPE_IOC_SET_LIMIT;
const unsigned int mmscope_c_ioc_mm_summary = MMSCOPE_IOC_MM_SUMMARY;
const unsigned int mmscope_c_ioc_vma_list = MMSCOPE_IOC_VMA_LIST;
const unsigned int mmscope_c_ioc_vma_query = MMSCOPE_IOC_VMA_QUERY;
const unsigned int mmscope_c_f_pid = MMSCOPE_F_PID;
const unsigned int mmscope_c_query_covering_or_next = MMSCOPE_QUERY_COVERING_OR_NEXT;

/* enum mmscope_vma_kind, in order. */
const unsigned int mmscope_c_kinds[] = {
	MMSCOPE_KIND_ANON, MMSCOPE_KIND_HEAP, MMSCOPE_KIND_STACK, MMSCOPE_KIND_VDSO,
	MMSCOPE_KIND_VVAR, MMSCOPE_KIND_FILE, MMSCOPE_KIND_SHMEM, MMSCOPE_KIND_MMSCOPE,
	MMSCOPE_KIND_SPECIAL,
};

/* MMSCOPE_VMA_*, in bit order. */
const unsigned long long mmscope_c_vma_flags[] = {
	MMSCOPE_VMA_READ, MMSCOPE_VMA_WRITE, MMSCOPE_VMA_EXEC, MMSCOPE_VMA_SHARED,
	MMSCOPE_VMA_MAYREAD, MMSCOPE_VMA_MAYWRITE, MMSCOPE_VMA_MAYEXEC, MMSCOPE_VMA_MAYSHARE,
	MMSCOPE_VMA_GROWSDOWN, MMSCOPE_VMA_LOCKED, MMSCOPE_VMA_IO, MMSCOPE_VMA_PFNMAP,
	MMSCOPE_VMA_MIXEDMAP, MMSCOPE_VMA_DONTCOPY, MMSCOPE_VMA_DONTEXPAND, MMSCOPE_VMA_ACCOUNT,
	MMSCOPE_VMA_NORESERVE, MMSCOPE_VMA_HUGETLB, MMSCOPE_VMA_DONTDUMP, MMSCOPE_VMA_WIPEONFORK,
	MMSCOPE_VMA_HUGEPAGE, MMSCOPE_VMA_NOHUGEPAGE, MMSCOPE_VMA_MERGEABLE,
	MMSCOPE_VMA_LOCKONFAULT,
};

/* The sizes selftests/compat/compat32.c asserts for 32-bit userspace. */
_Static_assert(sizeof(struct mmscope_mem_stats) == 88, "mem_stats size");
_Static_assert(sizeof(struct mmscope_mm_summary) == 224, "mm_summary size");
_Static_assert(offsetof(struct mmscope_mm_summary, vma_seq) == MMSCOPE_MM_SUMMARY_SIZE_VER0,
	       "mm_summary: the first version ends where vma_seq starts");
_Static_assert(sizeof(struct mmscope_vma) == 56, "vma size");
_Static_assert(sizeof(struct mmscope_vma_list) == 56, "vma_list size");
_Static_assert(sizeof(struct mmscope_vma_query) == 80, "vma_query size");

#define FIELD(s, f) offsetof(struct s, f), sizeof(((struct s *)0)->f)

/* sizeof, then (offset, size) of each field in order. */
const unsigned long mmscope_c_mem_stats_layout[] = {
	sizeof(struct mmscope_mem_stats),
	FIELD(mmscope_mem_stats, size),
	FIELD(mmscope_mem_stats, flags),
	FIELD(mmscope_mem_stats, obj_faults),
	FIELD(mmscope_mem_stats, obj_pages),
	FIELD(mmscope_mem_stats, obj_limit_pages),
	FIELD(mmscope_mem_stats, obj_faultaround_pages),
	FIELD(mmscope_mem_stats, faults),
	FIELD(mmscope_mem_stats, pages),
	FIELD(mmscope_mem_stats, pages_freed),
	FIELD(mmscope_mem_stats, peak_pages),
	FIELD(mmscope_mem_stats, max_pages),
	FIELD(mmscope_mem_stats, objects),
};
const unsigned long mmscope_c_mem_stats_layout_len =
	sizeof(mmscope_c_mem_stats_layout) / sizeof(mmscope_c_mem_stats_layout[0]);

#define LAYOUT(name, ...) \
	const unsigned long name[] = { __VA_ARGS__ }; \
	const unsigned long name##_len = sizeof(name) / sizeof(name[0])

LAYOUT(mmscope_c_mm_summary_layout,
	sizeof(struct mmscope_mm_summary),
	FIELD(mmscope_mm_summary, size), FIELD(mmscope_mm_summary, flags),
	FIELD(mmscope_mm_summary, pid), FIELD(mmscope_mm_summary, reserved),
	FIELD(mmscope_mm_summary, start_code), FIELD(mmscope_mm_summary, end_code),
	FIELD(mmscope_mm_summary, start_data), FIELD(mmscope_mm_summary, end_data),
	FIELD(mmscope_mm_summary, start_brk), FIELD(mmscope_mm_summary, brk),
	FIELD(mmscope_mm_summary, start_stack), FIELD(mmscope_mm_summary, arg_start),
	FIELD(mmscope_mm_summary, arg_end), FIELD(mmscope_mm_summary, env_start),
	FIELD(mmscope_mm_summary, env_end), FIELD(mmscope_mm_summary, mmap_base),
	FIELD(mmscope_mm_summary, task_size), FIELD(mmscope_mm_summary, map_count),
	FIELD(mmscope_mm_summary, total_vm), FIELD(mmscope_mm_summary, locked_vm),
	FIELD(mmscope_mm_summary, pinned_vm), FIELD(mmscope_mm_summary, data_vm),
	FIELD(mmscope_mm_summary, exec_vm), FIELD(mmscope_mm_summary, stack_vm),
	FIELD(mmscope_mm_summary, hiwater_rss), FIELD(mmscope_mm_summary, hiwater_vm),
	FIELD(mmscope_mm_summary, rss_anon), FIELD(mmscope_mm_summary, rss_file),
	FIELD(mmscope_mm_summary, rss_shmem), FIELD(mmscope_mm_summary, vma_seq));

LAYOUT(mmscope_c_vma_layout,
	sizeof(struct mmscope_vma),
	FIELD(mmscope_vma, start), FIELD(mmscope_vma, end), FIELD(mmscope_vma, pgoff),
	FIELD(mmscope_vma, flags), FIELD(mmscope_vma, inode), FIELD(mmscope_vma, dev_major),
	FIELD(mmscope_vma, dev_minor), FIELD(mmscope_vma, kind), FIELD(mmscope_vma, reserved));

LAYOUT(mmscope_c_vma_list_layout,
	sizeof(struct mmscope_vma_list),
	FIELD(mmscope_vma_list, size), FIELD(mmscope_vma_list, flags),
	FIELD(mmscope_vma_list, pid), FIELD(mmscope_vma_list, reserved),
	FIELD(mmscope_vma_list, start_addr), FIELD(mmscope_vma_list, records),
	FIELD(mmscope_vma_list, record_size), FIELD(mmscope_vma_list, capacity),
	FIELD(mmscope_vma_list, count), FIELD(mmscope_vma_list, total),
	FIELD(mmscope_vma_list, next_addr));

LAYOUT(mmscope_c_vma_query_layout,
	sizeof(struct mmscope_vma_query),
	FIELD(mmscope_vma_query, size), FIELD(mmscope_vma_query, flags),
	FIELD(mmscope_vma_query, pid), FIELD(mmscope_vma_query, reserved),
	FIELD(mmscope_vma_query, addr), FIELD(mmscope_vma_query, vma));
