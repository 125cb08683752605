// SPDX-License-Identifier: GPL-2.0
/*
 * small: malloc of small blocks. The common explanation: up to 128 KiB,
 * malloc takes memory from the heap by moving brk (by more than asked: glibc
 * adds M_TOP_PAD, 128 KiB), the heap is the VMA the kernel calls [heap], and
 * no other VMA appears.
 *
 * 128 KiB - 24 B is the largest request glibc serves below its default
 * mmap threshold: a request of n bytes needs a chunk of n + 8 rounded up to
 * 16, and a chunk of 128 KiB is already mmapped.
 */
#include "observe.h"

static struct snap s0, s1, s2, s3;

int main(void)
{
	static const size_t sizes[] = { 1, 100 * KiB, 128 * KiB - 24 };
	struct snap *after[] = { &s1, &s2, &s3 };
	const struct snap *before = &s0;
	void *p[3];
	int from_heap = 0, named_heap = 0;
	char what[64];
	int i;

	begin("small", "malloc of 1 B, 100 KiB and 128 KiB - 24 B");
	take(&s0);
	say("  start: start_brk %#llx, brk %#llx (%s of heap), %u VMAs\n",
	    (unsigned long long)s0.mm.start_brk, (unsigned long long)s0.mm.brk,
	    size_str(s0.mm.brk - s0.mm.start_brk), s0.count);
	for (i = 0; i < 3; i++) {
		p[i] = malloc(sizes[i]);
		if (!p[i])
			die("malloc(%zu) failed", sizes[i]);
		take(after[i]);
		snprintf(what, sizeof(what), "malloc(%s) = %p (%s)", size_str(sizes[i]), p[i],
			 source(after[i], p[i]));
		show(what, before, after[i]);
		from_heap += in_brk(after[i], p[i]);
		named_heap += vma_at(after[i], p[i]) && vma_at(after[i], p[i])->kind == MMSCOPE_KIND_HEAP;
		before = after[i];
	}

	/* The first brk growth creates [heap]; after that no VMA may appear. */
	int new_vmas = (int)s3.count - (int)s0.count;
	int heap_created = s0.mm.brk == s0.mm.start_brk && heap_vma(&s3);

	if (from_heap == 3 && named_heap == 3 && new_vmas == heap_created)
		claim("small-from-brk", HOLDS,
		      "malloc(1 B): brk %s, malloc(100 KiB): %s, malloc(128 KiB - 24 B): %s; VMAs %+d "
		      "([heap])",
		      delta_str(brk_change(&s0, &s1)), delta_str(brk_change(&s1, &s2)),
		      delta_str(brk_change(&s2, &s3)), new_vmas);
	else if (from_heap > 0)
		claim("small-from-brk", HOLDS_IF, "%d of 3 from brk; brk %s; VMAs %+d",
		      from_heap, delta_str(brk_change(&s0, &s3)), new_vmas);
	else
		claim("small-from-brk", DOES_NOT_HOLD, "none from brk (brk %s); VMAs %+d, VM %s",
		      delta_str(brk_change(&s0, &s3)), new_vmas, delta_str(vm_change(&s0, &s3)));
	return 0;
}
