// SPDX-License-Identifier: GPL-2.0
/*
 * dynamic: the mmap threshold is not fixed. glibc starts at 128 KiB, and
 * when a block that came from mmap is freed, the threshold rises to its size
 * (up to 32 MiB) and the trim threshold to twice that: the same request then
 * comes from the heap. A program that allocates and frees 200 KiB in a loop
 * calls mmap and munmap once, not every time.
 */
#include "observe.h"

static struct snap s0, s1, s2, s3;

int main(void)
{
	const size_t size = 200 * KiB;
	void *first, *again;
	const char *src_first, *src_again;

	begin("dynamic", "malloc(200 KiB), free, malloc(200 KiB) again");
	/*
	 * The allocator's own first-use setup (glibc: its thread cache, and with it the heap's
	 * first 132 KiB) is not the point here: the numbers below are the block's alone.
	 */
	free(malloc(1));
	take(&s0);
	first = malloc(size);
	if (!first)
		die("malloc(200 KiB) failed");
	take(&s1);
	src_first = source(&s1, first);
	say("  first malloc(200 KiB) = %p (%s)\n", first, src_first);
	show("malloc(200 KiB)", &s0, &s1);
	free(first);
	take(&s2);
	show("free", &s1, &s2);
	again = malloc(size);
	if (!again)
		die("malloc(200 KiB) failed");
	take(&s3);
	src_again = source(&s3, again);
	say("  second malloc(200 KiB) = %p (%s)\n", again, src_again);
	show("malloc(200 KiB)", &s2, &s3);

	if (in_mmap(&s1, first) && in_brk(&s3, again))
		claim("dynamic-threshold", HOLDS,
		      "200 KiB: first from mmap (VM %s: the block with its header, page-rounded), "
		      "after its free from brk (brk %s)",
		      delta_str(vm_change(&s0, &s1)), delta_str(brk_change(&s2, &s3)));
	else
		claim("dynamic-threshold", DOES_NOT_HOLD, "200 KiB: first from %s, after its free from %s",
		      src_first, src_again);
	return 0;
}
