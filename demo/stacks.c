// SPDX-License-Identifier: GPL-2.0
/*
 * Memory calls made from known functions, for `mmscope trace --stacks`: grow_heap()
 * mallocs three blocks just under the mmap threshold, so that malloc must grow the heap
 * with brk; map_direct() maps 3 MiB itself; start_thread() starts a thread, whose stack
 * glibc maps. Each stores its result before it returns, so that the compiler cannot turn its
 * call into a jump that leaves no frame. Prints the source line of each call, as JSON.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

void *volatile sink;
static int grow_line, map_line, thread_line;

__attribute__((noinline)) static void grow_heap(void)
{
	grow_line = __LINE__ + 2;
	for (int i = 0; i < 3; i++)
		sink = malloc(127 * 1024);
}

__attribute__((noinline)) static void map_direct(void)
{
	map_line = __LINE__ + 1;
	sink = mmap(NULL, 3 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

static void *idle(void *arg)
{
	return arg;
}

__attribute__((noinline)) static void start_thread(void)
{
	pthread_t t;
	void *ret = NULL;

	thread_line = __LINE__ + 1;
	if (pthread_create(&t, NULL, idle, NULL) == 0)
		pthread_join(t, &ret);
	sink = ret;
}

int main(void)
{
	grow_heap();
	map_direct();
	start_thread();
	printf("{\"grow_heap\":%d,\"map_direct\":%d,\"start_thread\":%d}\n", grow_line, map_line,
	       thread_line);
	return 0;
}
