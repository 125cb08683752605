// SPDX-License-Identifier: GPL-2.0
/*
 * A 32-bit C user of include/uapi/mmscope.h: proves that the ABI has the same
 * layout for 32-bit userspace and that its ioctls work through the compat
 * path (compat_ptr_ioctl) of a 64-bit kernel. Run by the selftest
 * compat_32bit_userspace; exits 0 if every check holds and prints the first
 * one that does not.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "mmscope.h"

#define CHECK(cond, ...)                                                \
	do {                                                            \
		if (!(cond)) {                                          \
			printf("# compat32: " __VA_ARGS__);             \
			printf("\n");                                   \
			return 1;                                       \
		}                                                       \
	} while (0)

_Static_assert(sizeof(void *) == 4, "build this with -m32");
/* The sizes of the 64-bit ABI: every struct packs without padding on both. */
_Static_assert(sizeof(struct mmscope_mm_summary) == 224, "mm_summary layout");
_Static_assert(sizeof(struct mmscope_vma) == 56, "vma layout");
_Static_assert(sizeof(struct mmscope_vma_list) == 56, "vma_list layout");
_Static_assert(sizeof(struct mmscope_vma_query) == 80, "vma_query layout");
_Static_assert(sizeof(struct mmscope_mem_stats) == 88, "mem_stats layout");

int main(void)
{
	struct mmscope_vma vmas[64];
	struct mmscope_mm_summary s = { .size = sizeof(s) };
	struct mmscope_vma_list list = {
		.size = sizeof(list),
		.records = (uintptr_t)vmas,
		.record_size = sizeof(vmas[0]),
		.capacity = 64,
	};
	struct mmscope_vma_query q = { .size = sizeof(q) };
	struct mmscope_mem_stats st = { .size = sizeof(st) };
	unsigned char *p;
	__u32 version = 0;
	int fd;

	fd = open("/dev/mmscope", O_RDWR);
	CHECK(fd >= 0, "open: %s", strerror(errno));
	CHECK(ioctl(fd, MMSCOPE_IOC_VERSION, &version) == 0, "VERSION: %s", strerror(errno));
	CHECK(version == MMSCOPE_ABI_VERSION, "version %u", version);

	CHECK(ioctl(fd, MMSCOPE_IOC_MM_SUMMARY, &s) == 0, "MM_SUMMARY: %s", strerror(errno));
	CHECK(s.brk == (uintptr_t)sbrk(0), "brk %llx, sbrk(0) %p", (unsigned long long)s.brk, sbrk(0));
	CHECK(s.task_size > 0 && s.task_size <= 0x100000000ULL, "32-bit task_size %llx",
	      (unsigned long long)s.task_size);

	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
	p[0] = 1;
	CHECK(ioctl(fd, MMSCOPE_IOC_MEM_STATS, &st) == 0, "MEM_STATS: %s", strerror(errno));
	CHECK(st.obj_pages == 1 && st.obj_faults == 1, "pages %llu faults %llu",
	      (unsigned long long)st.obj_pages, (unsigned long long)st.obj_faults);

	CHECK(ioctl(fd, MMSCOPE_IOC_VMA_LIST, &list) == 0, "VMA_LIST: %s", strerror(errno));
	CHECK(list.count > 0 && list.count == s.map_count + 1 && list.next_addr == 0,
	      "count %u, map_count %llu, next %llx", list.count,
	      (unsigned long long)s.map_count, (unsigned long long)list.next_addr);

	q.addr = (uintptr_t)p;
	CHECK(ioctl(fd, MMSCOPE_IOC_VMA_QUERY, &q) == 0, "VMA_QUERY: %s", strerror(errno));
	CHECK(q.vma.start == (uintptr_t)p && q.vma.kind == MMSCOPE_KIND_MMSCOPE,
	      "query: start %llx kind %u", (unsigned long long)q.vma.start, q.vma.kind);
	return 0;
}
