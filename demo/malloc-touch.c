// SPDX-License-Identifier: GPL-2.0
/*
 * malloc-touch: a program whose memory story is easy to follow under
 * `mmscope trace`. A small block comes from the heap (brk grows), a large one
 * from a mapping of its own (mmap); neither takes physical memory until it is
 * touched, and touching half of the large block makes exactly that half
 * resident. free() gives the large block back at once (munmap).
 *
 * Prints what it did, one line per action, to stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KiB 1024UL
#define MiB (1024UL * KiB)

int main(void)
{
	char *small, *big;

	small = malloc(100 * KiB);
	printf("malloc(100 KiB) = %p (below the mmap threshold: from the heap)\n", (void *)small);
	memset(small, 1, 100 * KiB);
	printf("memset(small, 100 KiB)\n");

	big = malloc(4 * MiB);
	printf("malloc(4 MiB) = %p (above the mmap threshold: a mapping of its own)\n", (void *)big);
	memset(big, 1, 2 * MiB);
	printf("memset(big, 2 MiB) (touches half of it)\n");
	fflush(stdout);

	free(big);
	printf("free(big)\n");
	free(small);
	printf("free(small)\n");
	return 0;
}
