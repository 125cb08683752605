// SPDX-License-Identifier: GPL-2.0
/*
 * sigstate: the signal state a program starts with, as the tests compare it
 * traced and untraced (C, so that no language runtime changes it first).
 *
 *   sigstate          prints "ignored N... blocked N..." and exits 0
 *   sigstate write    writes "y" lines to stdout until a write fails, then
 *                     prints the error to stderr and exits 1 (unless SIGPIPE
 *                     killed it first, as it does by default)
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	sigset_t mask;
	int sig;

	if (argc > 1 && !strcmp(argv[1], "write")) {
		for (;;) {
			if (write(1, "y\n", 2) < 0) {
				fprintf(stderr, "write: %s\n", strerror(errno));
				return 1;
			}
		}
	}
	sigprocmask(SIG_SETMASK, NULL, &mask);
	printf("ignored");
	for (sig = 1; sig < NSIG; sig++) {
		struct sigaction act;

		if (!sigaction(sig, NULL, &act) && act.sa_handler == SIG_IGN)
			printf(" %d", sig);
	}
	printf(" blocked");
	for (sig = 1; sig < NSIG; sig++)
		if (sigismember(&mask, sig) == 1)
			printf(" %d", sig);
	printf("\n");
	return 0;
}
