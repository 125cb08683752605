// SPDX-License-Identifier: GPL-2.0
/*
 * A long trace on purpose: CALLS memory calls (10,000 unless given as the first argument),
 * a deterministic mix of what programs do: anonymous mappings of 1 to 64 pages, of which at
 * most 48 stay live (the oldest unmapped), brk growing and shrinking, mprotect of a
 * mapping's first page, madvise(MADV_DONTNEED) and mremap growing one in place or moving it,
 * with some pages touched; halfway, the stack grows by 512 KiB between two calls (no call of
 * its own: the kernel grows the stack's VMA on the fault). `mmscope trace --html` of it is the
 * large page the browser tests and `make bench` open. Prints how many calls it made.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096UL
#define LIVE 48

static unsigned long seed = 1;

/* A small linear congruential generator: the same calls on every run. */
static unsigned long next(unsigned long n)
{
	seed = seed * 6364136223846793005UL + 1442695040888963407UL;
	return (seed >> 33) % n;
}

/* Touches 512 KiB of stack below this frame, one page at a time. */
static int __attribute__((noinline)) grow_stack(int pages)
{
	volatile char page[PAGE];

	page[0] = (char)pages;
	return pages > 1 ? grow_stack(pages - 1) + page[0] : page[0];
}

int main(int argc, char **argv)
{
	long calls = argc > 1 ? atol(argv[1]) : 10000;
	char *live[LIVE] = { 0 };
	unsigned long len[LIVE] = { 0 };
	int ro[LIVE] = { 0 };
	long made = 0;
	int oldest = 0;
	char *base = sbrk(0);
	unsigned long grown = 0;
	int stack_grown = 0;

	if (calls <= 0) {
		fprintf(stderr, "usage: manysteps [CALLS above 0]\n");
		return 2;
	}
	while (made < calls) {
		unsigned long what = next(16);

		if (!stack_grown && made >= calls / 2)
			stack_grown = grow_stack(128) != 0;
		int slot = (int)next(LIVE);

		if (what < 6 || !live[slot]) {
			/* A new mapping; the oldest goes when every slot is taken. */
			int i = oldest;

			if (live[i]) {
				munmap(live[i], len[i]);
				made++;
			}
			len[i] = (1 + next(64)) * PAGE;
			live[i] = mmap(NULL, len[i], PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			made++;
			if (live[i] == MAP_FAILED) {
				perror("mmap");
				return 1;
			}
			ro[i] = 0;
			memset(live[i], 1, PAGE);
			oldest = (oldest + 1) % LIVE;
		} else if (what < 9) {
			/* The heap: up by 1 to 8 pages, or back down. */
			if (grown > 32 * PAGE || (grown && next(2))) {
				brk(base + (grown -= PAGE * (1 + next(grown / PAGE))));
			} else {
				grown += PAGE * (1 + next(8));
				brk(base + grown);
				base[grown - 1] = 1;
			}
			made++;
		} else if (what < 11) {
			ro[slot] = (int)next(2);
			mprotect(live[slot], PAGE, ro[slot] ? PROT_READ : PROT_READ | PROT_WRITE);
			made++;
		} else if (what < 13) {
			madvise(live[slot], len[slot], MADV_DONTNEED);
			made++;
		} else if (what < 15) {
			unsigned long bigger = len[slot] + PAGE * (1 + next(8));
			char *moved = mremap(live[slot], len[slot], bigger, MREMAP_MAYMOVE);

			made++;
			if (moved != MAP_FAILED) {
				live[slot] = moved;
				len[slot] = bigger;
			}
		} else {
			if (!ro[slot])
				memset(live[slot], 2, len[slot] < 4 * PAGE ? len[slot] : 4 * PAGE);
			madvise(live[slot], PAGE, MADV_NORMAL);
			made++;
		}
	}
	printf("%ld memory calls\n", made);
	return 0;
}
