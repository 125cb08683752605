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
