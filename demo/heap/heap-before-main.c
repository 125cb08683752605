// SPDX-License-Identifier: GPL-2.0
/*
 * heap-before-main: does a program have a heap before main() runs? Its brk
 * is read first thing in main(), against start_brk. For glibc the scenario
 * runs twice: as built (dynamically linked) and as heap-before-main-static,
 * a static build beside it, whose start-up code sets up thread-local storage
 * with sbrk() (__libc_setup_tls) where the dynamic loader uses mmap.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
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

/* The static build's heap at main, from its own run: -1 if there is none. */
static long static_heap(void)
{
	static char path[4096], answer[128];
	char *const argv[] = { path, "--child", NULL };
	char *version;
	int fds[2], status;
	ssize_t n, len;
	pid_t pid;

	len = readlink("/proc/self/exe", path, sizeof(path) - 8);
	if (len <= 0)
		return -1;
	strcpy(path + len, "-static");
	if (access(path, X_OK) != 0 || pipe(fds) != 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(fds[1], 1);
		execv(path, argv);
		_exit(127);
	}
	close(fds[1]);
	n = read(fds[0], answer, sizeof(answer) - 1);
	close(fds[0]);
	if (pid < 0 || waitpid(pid, &status, 0) != pid || status != 0 || n <= 0)
		return -1;
	answer[n] = '\0';
	/* "HEAP ALLOCATOR": the static build must be of the same glibc as this one. */
	version = strchr(answer, ' ');
	if (!version || strcmp(version + 1, allocator())) {
		printf("heap-before-main: the static build answered %s, it is not of %s\n", answer,
		       allocator());
		exit(1);
	}
	return strtol(answer, NULL, 10);
}

int main(int argc, char **argv)
{
	unsigned long heap = (unsigned long)syscall(SYS_brk, 0) - start_brk();
	long other;

	if (argc > 1 && !strcmp(argv[1], "--child")) {
		printf("%lu %s", heap, allocator());
		return 0;
	}
	printf("heap-before-main (%s): brk - start_brk as main() starts\n", allocator());
	other = static_heap();
	if (other < 0)
		printf("claim: heap-before-main: %s: brk - start_brk = %lu B at main\n",
		       heap ? "does-not-hold" : "holds", heap);
	else
		printf("claim: heap-before-main: %s: as built (dynamic): %lu B; static: %ld B (the "
		       "static start-up's sbrk for thread-local storage, then its malloc)\n",
		       !heap && !other ? "holds" : "does-not-hold", heap,
		       other);
	return 0;
}
