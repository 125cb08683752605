// SPDX-License-Identifier: GPL-2.0
/*
 * The memory calls whose kernel code paths the classic explanations walk through, one of
 * each, for `mmscope trace --kernel`: brk growing an existing heap, brk shrinking it, an
 * anonymous mmap placed right below a compatible mapping (they merge into one VMA), an
 * mprotect of a page in the middle of that mapping (it splits into three), first touches
 * of anonymous pages and, where /dev/mmscope exists, of the module's pages. A madvise that
 * changes nothing (MADV_NORMAL) follows each group of touches, so that the faults show in
 * the trace before a call. Prints what it did, as JSON.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PAGE 4096UL
#define TOUCHED 3

static char *map(void *at, unsigned long len, int flags)
{
	char *p = mmap(at, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1,
		       0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

int main(void)
{
	/* glibc's start-up has set up the heap already: sbrk(0) asks nobody. */
	unsigned long start = (unsigned long)sbrk(0);
	char *upper, *lower, *middle, *dev = NULL;
	int fd, i;

	/* The heap grows by 16 pages: brk expands the existing [heap] VMA. */
	if (syscall(SYS_brk, start + 16 * PAGE) != (long)(start + 16 * PAGE)) {
		fprintf(stderr, "brk could not grow the heap\n");
		return 1;
	}
	/* Shrinking it gives the top 8 pages back. */
	if (syscall(SYS_brk, start + 8 * PAGE) != (long)(start + 8 * PAGE)) {
		fprintf(stderr, "brk could not shrink the heap\n");
		return 1;
	}

	/*
	 * Four pages, then four more right below them (mmap placed the first at the top of a
	 * free gap): the second mmap merges into the first, and only into it.
	 */
	upper = map(NULL, 4 * PAGE, 0);
	lower = map(upper - 4 * PAGE, 4 * PAGE, MAP_FIXED_NOREPLACE);

	/* One page in the middle of those eight read-only: one VMA becomes three. */
	middle = lower + 4 * PAGE;
	if (mprotect(middle, PAGE, PROT_READ)) {
		perror("mprotect");
		return 1;
	}

	/* First touches of anonymous pages. */
	for (i = 0; i < TOUCHED; i++)
		lower[i * PAGE] = 1;
	madvise(lower, PAGE, MADV_NORMAL);

	/* And of the module's, which its fault callback allocates. */
	fd = open("/dev/mmscope", O_RDWR);
	if (fd >= 0) {
		dev = mmap(NULL, TOUCHED * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (dev == MAP_FAILED)
			dev = NULL;
		for (i = 0; dev && i < TOUCHED; i++)
			dev[i * PAGE] = 1;
		madvise(lower, PAGE, MADV_NORMAL);
	}
	printf("{\"brk\": %lu, \"upper\": %lu, \"lower\": %lu, \"middle\": %lu, "
	       "\"device\": %lu, \"touched\": %d}\n",
	       start, (unsigned long)upper, (unsigned long)lower, (unsigned long)middle,
	       (unsigned long)dev, TOUCHED);
	return 0;
}
