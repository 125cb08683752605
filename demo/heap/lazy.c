// SPDX-License-Identifier: GPL-2.0
/*
 * lazy: malloc reserves address space, not memory. After malloc(8 MiB) the
 * resident set does not move (or by the one page malloc writes its header
 * into); memset of k pages adds exactly k pages, one page fault each; calloc
 * of a large block touches nothing, because fresh anonymous memory is
 * already zero.
 */
#include "observe.h"

#define BIG (8 * MiB)
#define K 100

static struct snap s0, s1, s2, s3;

int main(void)
{
	char *p, *z;
	long long after_memset;
	unsigned long block, block_touched, zeroed;

	begin("lazy", "malloc(8 MiB), memset of 100 pages, calloc(8 MiB)");
	/* The allocator's own first-use setup is not the point here. */
	free(malloc(1));
	take(&s0);
	p = malloc(BIG);
	if (!p)
		die("malloc(8 MiB) failed");
	take(&s1);
	block = resident_pages(p, BIG);
	show("malloc(8 MiB)", &s0, &s1);
	say("  %lu of the block's pages are resident (mincore)\n", block);
	/* Page-aligned within the block, so that exactly K pages are written. */
	memset(p + (PAGE - ((uintptr_t)p & (PAGE - 1))), 1, K * PAGE);
	take(&s2);
	block_touched = resident_pages(p, BIG);
	show("memset of 100 pages", &s1, &s2);
	z = calloc(1, BIG);
	if (!z)
		die("calloc(8 MiB) failed");
	take(&s3);
	zeroed = resident_pages(z, BIG);
	show("calloc(1, 8 MiB)", &s2, &s3);
	say("  %lu of its pages are resident (mincore)\n", zeroed);

	after_memset = rss_change(&s1, &s2);

	/*
	 * The verdicts count the block's own resident pages (mincore): the RSS change also
	 * holds the allocator's bookkeeping, which some allocators touch or not from run to run.
	 * Only residency is in their words: how much address space the block adds depends, for
	 * jemalloc, on where its extents fall from run to run (+12 or +18 MiB), and the trace
	 * above shows it.
	 */
	if (block == 0)
		claim("lazy-malloc", HOLDS, "malloc(8 MiB): no page of the block resident");
	else if (block == 1)
		claim("lazy-malloc", HOLDS_IF,
		      "but for the page malloc writes its header into: malloc(8 MiB): 1 page of the block resident");
	else
		claim("lazy-malloc", DOES_NOT_HOLD, "malloc(8 MiB): %lu pages of the block resident",
		      block);

	claim("lazy-memset",
	      after_memset == (long long)(K * PAGE) && block_touched == block + K ? HOLDS : DOES_NOT_HOLD,
	      "memset of 100 pages: RSS %s (%lld pages), %lu more of the block resident",
	      delta_str(after_memset), after_memset / (long long)PAGE, block_touched - block);

	/* The same measure as malloc's: the header's page is no page calloc zeroed. */
	if (zeroed == 0)
		claim("lazy-calloc", HOLDS, "calloc(1, 8 MiB): no page of it resident");
	else if (zeroed == 1)
		claim("lazy-calloc", HOLDS_IF,
		      "but for the page malloc writes its header into: calloc(1, 8 MiB): 1 page of it resident");
	else
		claim("lazy-calloc", DOES_NOT_HOLD, "calloc(1, 8 MiB): %lu pages of it resident",
		      zeroed);
	return 0;
}
