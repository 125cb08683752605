// SPDX-License-Identifier: GPL-2.0
/*
 * trim: does free() shrink the heap? The common explanation says the heap
 * grows with malloc and shrinks with free. glibc lowers brk only when the
 * free memory is at the top of the heap and more than M_TRIM_THRESHOLD
 * (128 KiB); one live block above it keeps brk where it is, however much is
 * free below. malloc_trim(0) returns such memory anyway, with
 * madvise(MADV_DONTNEED): RSS goes down, brk does not move.
 */
#include "observe.h"

#define BLOCKS 16
#define BLOCK (64 * KiB)

static struct snap a0, a1, a2, b1, b2, b3;
#ifdef GLIBC_MALLOC
static struct snap c1, c2;
#endif

static void fill(void **blocks)
{
	int i;

	for (i = 0; i < BLOCKS; i++) {
		blocks[i] = malloc(BLOCK);
		if (!blocks[i])
			die("malloc(64 KiB) failed");
		memset(blocks[i], 1, BLOCK);
	}
}

static void empty(void **blocks)
{
	int i;

	for (i = BLOCKS - 1; i >= 0; i--)
		free(blocks[i]);
}

int main(void)
{
	void *blocks[BLOCKS], *live;

	begin("trim", "16 x malloc(64 KiB), written, then freed: at the top, under a live block");
	take(&a0);
	fill(blocks);
	take(&a1);
	show("16 x malloc(64 KiB) + memset", &a0, &a1);
	empty(blocks);
	take(&a2);
	show("free all 16 (top of the heap)", &a1, &a2);

#ifdef GLIBC_MALLOC
	/* A high trim threshold keeps the same free memory. */
	if (mallopt(M_TRIM_THRESHOLD, 64 * MiB) != 1)
		die("mallopt(M_TRIM_THRESHOLD) failed");
	fill(blocks);
	take(&c1);
	empty(blocks);
	take(&c2);
	show("same, M_TRIM_THRESHOLD 64 MiB", &c1, &c2);
	if (mallopt(M_TRIM_THRESHOLD, 128 * KiB) != 1)
		die("mallopt(M_TRIM_THRESHOLD) failed");
#endif

	fill(blocks);
	live = malloc(64);
	if (!live)
		die("malloc(64) failed");
	memset(live, 1, 64);
	take(&b1);
	show("16 x malloc(64 KiB) + malloc(64)", &a2, &b1);
	empty(blocks);
	take(&b2);
	show("free the 16 below the 64 B block", &b1, &b2);

	long long top = brk_change(&a1, &a2), under = brk_change(&b1, &b2);

	if (!in_brk(&b1, blocks[0])) {
		claim("free-shrinks-brk", NOT_APPLICABLE,
		      "the blocks are not on the brk heap; freeing 1 MiB: VM %s",
		      delta_str(vm_change(&a1, &a2)));
	} else if (top < 0 && under < 0) {
		claim("free-shrinks-brk", HOLDS, "1 MiB freed at the top: brk %s; under a live block: brk %s",
		      delta_str(top), delta_str(under));
	} else if (top < 0) {
#ifdef GLIBC_MALLOC
		claim("free-shrinks-brk", HOLDS_IF,
		      "only free memory at the top, above M_TRIM_THRESHOLD: 1 MiB there, brk %s; "
		      "with the threshold at 64 MiB, brk %s; under a live 64 B block, brk %s",
		      delta_str(top), delta_str(brk_change(&c1, &c2)), delta_str(under));
#else
		claim("free-shrinks-brk", HOLDS_IF,
		      "only free memory at the top: 1 MiB there, brk %s; under a live 64 B block, brk %s",
		      delta_str(top), delta_str(under));
#endif
	} else {
		claim("free-shrinks-brk", DOES_NOT_HOLD, "1 MiB freed at the top: brk %s, RSS %s",
		      delta_str(top), delta_str(rss_change(&a1, &a2)));
	}

#ifdef GLIBC_MALLOC
	int trimmed = malloc_trim(0);

	take(&b3);
	show("malloc_trim(0)", &b2, &b3);
	if (rss_change(&b2, &b3) < 0)
		claim("malloc-trim", HOLDS,
		      "under a live block: RSS %s by madvise(MADV_DONTNEED), brk only %s",
		      delta_str(rss_change(&b2, &b3)), delta_str(brk_change(&b2, &b3)));
	else
		claim("malloc-trim", DOES_NOT_HOLD, "returned %d; RSS %s, brk %s", trimmed,
		      delta_str(rss_change(&b2, &b3)), delta_str(brk_change(&b2, &b3)));
#else
	(void)b3;
	claim("malloc-trim", NOT_APPLICABLE, "no malloc_trim()");
#endif
	free(live);
	return 0;
}
