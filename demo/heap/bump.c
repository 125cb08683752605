// SPDX-License-Identifier: GPL-2.0
/*
 * bump: a program that never calls free(). Statically linked with musl, it
 * gets musl's bump allocator (free() is not linked, so nothing can be given
 * back, and malloc is a pointer bumped through memory from brk) instead of
 * mallocng: 100 blocks of 1 KiB and one of 100 KiB, where from? The other
 * allocators are linked whole whether free() is called or not: n/a.
 *
 * Nothing here may link free(): not observe.h, whose sscanf() does in musl.
 * brk comes from brk(2) itself, start_brk from /proc/self/stat, parsed by hand.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "allocator.h"
#include "start_brk.h"


/* start_brk, or exit 1 if it cannot be read. */
static unsigned long start_brk(void)
{
	unsigned long v = read_start_brk();

	if (!v)
		exit(1);
	return v;
}

int main(void)
{
	unsigned long heap = start_brk(), brk0 = (unsigned long)syscall(SYS_brk, 0), brk1;
	void *small[100], *big;
	int i, from_brk = 0, big_from_brk;

	printf("bump (%s): 100 x malloc(1 KiB) and malloc(100 KiB), never free()\n", allocator());
	if (strcmp(ALLOCATOR, "musl")) {
		printf("claim: musl-bump: n/a: %s is linked whole, free() or not\n", ALLOCATOR);
		return 0;
	}
	for (i = 0; i < 100; i++)
		if (!(small[i] = malloc(1024)))
			return 1;
	if (!(big = malloc(100 * 1024)))
		return 1;
	brk1 = (unsigned long)syscall(SYS_brk, 0);
	for (i = 0; i < 100; i++)
		from_brk += (unsigned long)small[i] >= heap && (unsigned long)small[i] < brk1;
	big_from_brk = (unsigned long)big >= heap && (unsigned long)big < brk1;
	printf("claim: musl-bump: %s: %d of 100 small blocks and the 100 KiB one %s from brk "
	       "(brk +%lu B)\n",
	       from_brk == 100 && big_from_brk ? "holds" : "does-not-hold", from_brk,
	       big_from_brk ? "too" : "not", brk1 - brk0);
	return 0;
}
