// SPDX-License-Identifier: GPL-2.0
/*
 * Pages made resident by known functions, for `mmscope trace --faults`: grow_heap() mallocs
 * blocks that make malloc grow the heap with brk (malloc writes their headers);
 * allocate_block() maps BLOCK_PAGES pages and touches none; touch_pages() writes one byte in
 * each of the first TOUCHED pages of that block; fill_by_kernel() has the kernel write
 * FILLED pages of another block (read() from /dev/zero: the faults are the kernel's, made in
 * the program's memory during its call); populate() maps POPULATED pages with MAP_POPULATE,
 * resident with no fault at all; free_block() unmaps the first block; move_block() moves the
 * filled block elsewhere with mremap (its pages go with it); discard() gives the populated
 * pages back with MADV_DONTNEED; in a child process, child_touch() touches CHILD pages of a
 * new block. Prints what it did, as JSON, with the source line of each first touch.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define BLOCK_PAGES 64
#define TOUCHED 37
#define FILLED 11
#define POPULATED 5
#define CHILD 7

void *volatile sink;
static int touch_line;

__attribute__((noinline)) static void grow_heap(void)
{
	for (int i = 0; i < 3; i++)
		sink = malloc(100 * 1024);
}

__attribute__((noinline)) static char *allocate_block(long pages)
{
	char *p = mmap(NULL, pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);

	sink = p;
	return p == MAP_FAILED ? NULL : p;
}

__attribute__((noinline)) static void touch_pages(char *volatile p, int n)
{
	touch_line = __LINE__ + 2;
	for (int i = 0; i < n; i++)
		p[(long)i * 4096] = 1;
}

__attribute__((noinline)) static long fill_by_kernel(char *p, int n)
{
	int fd = open("/dev/zero", O_RDONLY);
	long got = fd < 0 ? -1 : read(fd, p, (long)n * 4096);

	if (fd >= 0)
		close(fd);
	sink = p;
	return got;
}

__attribute__((noinline)) static char *populate(int n)
{
	char *p = mmap(NULL, (long)n * 4096, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	sink = p;
	return p == MAP_FAILED ? NULL : p;
}

__attribute__((noinline)) static char *move_block(char *p, int n)
{
	/* A place for it, away from its neighbours. */
	char *to = mmap(NULL, (long)n * 4096 * 3, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (to == MAP_FAILED)
		return NULL;
	to += (long)n * 4096;
	p = mremap(p, (long)n * 4096, (long)n * 4096, MREMAP_MAYMOVE | MREMAP_FIXED, to);
	sink = p;
	return p == MAP_FAILED ? NULL : p;
}

__attribute__((noinline)) static int discard(char *p, int n)
{
	return madvise(p, (long)n * 4096, MADV_DONTNEED);
}

__attribute__((noinline)) static void child_touch(int n)
{
	char *volatile p = allocate_block(n);

	for (int i = 0; p && i < n; i++)
		p[(long)i * 4096] = 2;
}

__attribute__((noinline)) static int free_block(char *p, long pages)
{
	int ret = munmap(p, pages * 4096);

	sink = NULL;
	return ret;
}

int main(void)
{
	char *block, *filled, *populated, *moved;
	int status = -1;
	long got;
	pid_t child;

	grow_heap();
	block = allocate_block(BLOCK_PAGES);
	filled = allocate_block(FILLED);
	if (!block || !filled)
		return 1;
	touch_pages(block, TOUCHED);
	got = fill_by_kernel(filled, FILLED);
	populated = populate(POPULATED);
	if (!populated || free_block(block, BLOCK_PAGES))
		return 1;
	moved = move_block(filled, FILLED);
	if (!moved || moved[0] != 0 || discard(populated, POPULATED))
		return 1;
	child = fork();
	if (child == 0) {
		child_touch(CHILD);
		_exit(0);
	}
	if (child < 0 || waitpid(child, &status, 0) != child || status != 0)
		return 1;
	printf("{\"block_pages\":%d,\"touched\":%d,\"filled\":%d,\"read\":%ld,\"populated\":%d,"
	       "\"child\":%d,\"child_pid\":%d,\"touch_line\":%d}\n",
	       BLOCK_PAGES, TOUCHED, FILLED, got, POPULATED, CHILD, (int)child, touch_line);
	return 0;
}
