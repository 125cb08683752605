// SPDX-License-Identifier: GPL-2.0
/*
 * large: malloc just above the mmap threshold. The common explanation: a
 * block of 128 KiB or more gets a mapping of its own, outside the heap
 * [start_brk, brk), between the heap and the stack (below mmap_base); its
 * size is the request plus malloc's chunk header, rounded up to pages; free()
 * unmaps it at once.
 *
 * glibc checks the threshold only when the heap must grow: the first
 * malloc(128 KiB) of a process fits in the 132 KiB its first brk reserved,
 * and comes from there. The scenario asks twice.
 */
#include "observe.h"

static struct snap s0, s1, s2, s3;

int main(void)
{
	const size_t size = 128 * KiB;
	const struct mmscope_vma *v;
	void *first, *p;
	int own, placed, unmapped;
	long long grown, freed;

	begin("large", "malloc(128 KiB) twice, then free the second");
	take(&s3);
	first = malloc(size);
	if (!first)
		die("malloc(%zu) failed", size);
	take(&s0);
	say("  first malloc(128 KiB) = %p (%s)\n", first, source(&s0, first));
	show("malloc(128 KiB)", &s3, &s0);
	p = malloc(size);
	if (!p)
		die("malloc(%zu) failed", size);
	take(&s1);
	v = vma_at(&s1, p);
	say("  second malloc(128 KiB) = %p (%s), in VMA %#llx-%#llx (%s); brk %#llx, mmap_base %#llx\n",
	    p, source(&s1, p), v ? (unsigned long long)v->start : 0ULL,
	    v ? (unsigned long long)v->end : 0ULL, v ? size_str(v->end - v->start) : "-",
	    (unsigned long long)s1.mm.brk, (unsigned long long)s1.mm.mmap_base);
	show("malloc(128 KiB)", &s0, &s1);
	free(p);
	take(&s2);
	show("free", &s1, &s2);

	grown = vm_change(&s0, &s1);
	freed = vm_change(&s1, &s2);
	/* Its own mapping: the VM grew by the request, page-rounded, with room for a header. */
	own = in_mmap(&s1, p) && grown > (long long)size && grown == (long long)PAGE_ALIGN(size + 16);
	placed = (uintptr_t)p > s1.mm.brk && (uintptr_t)p < s1.mm.mmap_base;
	unmapped = !vma_at(&s2, p) && freed == -grown;

	if (own && placed && unmapped && in_mmap(&s0, first))
		claim("large-from-mmap", HOLDS,
		      "a %s mapping above brk, below mmap_base; free: VM %s",
		      size_str((unsigned long long)grown), delta_str(freed));
	else if (own && placed && unmapped && in_brk(&s0, first))
		claim("large-from-mmap", HOLDS_IF,
		      "the heap's free top is too small: the first malloc(128 KiB) came from brk "
		      "(brk %s); the second got a %s mapping above brk, below mmap_base; free: VM %s",
		      delta_str(brk_change(&s3, &s0)), size_str((unsigned long long)grown),
		      delta_str(freed));
	else if (in_mmap(&s1, p) && grown <= 0 && freed >= 0)
		claim("large-from-mmap", DOES_NOT_HOLD,
		      "from memory the allocator had mapped before: VM %s at malloc, %s at free%s",
		      delta_str(grown), delta_str(freed), placed ? "" : ", not between brk and mmap_base");
	else if (in_mmap(&s1, p))
		claim("large-from-mmap", HOLDS_IF,
		      "from mmap, but VM %s at malloc, %s at free%s", delta_str(grown), delta_str(freed),
		      placed ? "" : ", not between brk and mmap_base");
	else
		claim("large-from-mmap", DOES_NOT_HOLD, "from %s; VM %s, free: VM %s", source(&s1, p),
		      delta_str(grown), delta_str(freed));
	return 0;
}
