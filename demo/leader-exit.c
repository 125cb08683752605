// SPDX-License-Identifier: GPL-2.0
/*
 * leader-exit: the main thread calls pthread_exit() while a second thread runs
 * on; that thread maps and unmaps a page, then ends the process with exit(5).
 * The process's exit is the second thread's, after its calls.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static void *late(void *arg)
{
	void *p;

	(void)arg;
	usleep(300 * 1000);
	p = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p != MAP_FAILED)
		munmap(p, 4096);
	printf("late thread: mapped %p, exiting\n", p);
	fflush(stdout);
	exit(5);
}

int main(void)
{
	pthread_t t;

	if (pthread_create(&t, NULL, late, NULL))
		return 1;
	pthread_exit(NULL);
}
