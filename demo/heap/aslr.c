// SPDX-License-Identifier: GPL-2.0
/*
 * aslr: where the heap starts. The kernel puts start_brk after the end of
 * the program's data segment (the end of .bss, the linker's `end` symbol),
 * plus a random distance of up to 1 GiB when address space randomization is
 * on (on x86-64; 32 MiB for 32-bit programs). With randomization off
 * (personality(ADDR_NO_RANDOMIZE), what `setarch -R` does) it is right after
 * it, at the next page boundary. The scenario runs itself again RUNS times
 * each way and compares.
 */
#include "observe.h"

#define RUNS 6

extern char end[];

static struct snap s;

/* The child: the distance from the end of .bss, page-aligned, to start_brk. */
static int child(void)
{
	take(&s);
	say("%lld\n", (long long)s.mm.start_brk - (long long)PAGE_ALIGN((uintptr_t)end));
	return 0;
}

/* The child's distance, with or without randomization. */
static long long distance(int randomize)
{
	return strtoll(run_child("aslr", (char *[]){ NULL }, randomize ? 0 : ADDR_NO_RANDOMIZE),
		       NULL, 10);
}

int main(int argc, char **argv)
{
	long long on[RUNS], off[RUNS];
	int i, j, distinct = 1, in_range = 1, zero = 1;

	if (argc > 1 && strcmp(argv[1], "--child") == 0)
		return child();

	begin("aslr", "start_brk against the end of .bss, randomized and not");
	for (i = 0; i < RUNS; i++) {
		on[i] = distance(1);
		off[i] = distance(0);
		say("  run %d: randomized start_brk - end of .bss = %s; not randomized: %s\n", i + 1,
		    size_str((unsigned long long)on[i]), size_str((unsigned long long)off[i]));
	}
	for (i = 0; i < RUNS; i++) {
		in_range &= on[i] > 0 && on[i] <= (long long)(GiB + PAGE);
		zero &= off[i] == 0;
		for (j = 0; j < i; j++)
			distinct &= on[i] != on[j];
	}
	if (in_range && distinct)
		claim("aslr-on", HOLDS, "%d runs: %d different distances, all in (0, 1 GiB]", RUNS, RUNS);
	else
		claim("aslr-on", DOES_NOT_HOLD, "%d runs: %s, %s", RUNS,
		      distinct ? "all different" : "some equal",
		      in_range ? "all in (0, 1 GiB]" : "some outside (0, 1 GiB]");
	if (zero)
		claim("aslr-off", HOLDS, "%d runs: 0 B every time", RUNS);
	else
		claim("aslr-off", DOES_NOT_HOLD, "%d runs: not always 0 B", RUNS);
	return 0;
}
