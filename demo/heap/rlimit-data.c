// SPDX-License-Identifier: GPL-2.0
/*
 * rlimit-data: RLIMIT_DATA limits brk. Set below what the process already
 * uses, it stops brk from growing at all. Does malloc then carry on through
 * mmap? Since Linux 4.7 the same limit also counts private writable
 * mappings (the data_vm counter), so mmap of new anonymous memory fails too.
 */
#include "observe.h"
#include <sys/resource.h>

static struct snap s0, s1;

int main(void)
{
	struct rlimit rl;
	void *first, *second, *large, *warm;
	int brk_refused;
	unsigned long long used;

	begin("rlimit-data", "RLIMIT_DATA set to the data the process already has");
	warm = malloc(1);
	take(&s0);
	/* The kernel's brk check: (brk - start_brk) + (end_data - start_data) must fit. */
	used = (s0.mm.brk - s0.mm.start_brk) + (s0.mm.end_data - s0.mm.start_data);
	if (getrlimit(RLIMIT_DATA, &rl) != 0)
		die("getrlimit: %s", strerror(errno));
	rl.rlim_cur = used;
	if (setrlimit(RLIMIT_DATA, &rl) != 0)
		die("setrlimit(RLIMIT_DATA, %llu): %s", used, strerror(errno));
	say("  RLIMIT_DATA = %s (heap and data segment); data_vm is %s\n", size_str(used),
	    size_str(s0.mm.data_vm * PAGE));

	brk_refused = raw_brk(s0.mm.brk + PAGE) == s0.mm.brk;
	/* The first fits in what malloc(1) left free; the others need new memory. */
	first = malloc(100 * KiB);
	second = malloc(100 * KiB);
	large = malloc(1 * MiB);
	take(&s1);
	say("  brk(2) by 4 KiB: %s\n", brk_refused ? "refused" : "moved");
	say("  malloc(100 KiB) = %p (%s), again = %p (%s), malloc(1 MiB) = %p (%s)\n", first,
	    source(&s1, first), second, source(&s1, second), large, source(&s1, large));
	show("after the three", &s0, &s1);

	claim("rlimit-data-brk", brk_refused ? HOLDS : DOES_NOT_HOLD,
	      "limit at the current %s: brk(2) by 4 KiB %s", size_str(used),
	      brk_refused ? "refused" : "allowed");
	if (second && large && vm_change(&s0, &s1) == 0)
		claim("rlimit-data-mmap", HOLDS_IF,
		      "from memory mapped before the limit (VM +0): 2nd malloc(100 KiB) from %s, "
		      "malloc(1 MiB) from %s", source(&s1, second), source(&s1, large));
	else if (second && large)
		claim("rlimit-data-mmap", HOLDS, "2nd malloc(100 KiB) from %s, malloc(1 MiB) from %s",
		      source(&s1, second), source(&s1, large));
	else if (second || large)
		claim("rlimit-data-mmap", HOLDS_IF, "2nd malloc(100 KiB) %s, malloc(1 MiB) %s",
		      source(&s1, second), source(&s1, large));
	else
		claim("rlimit-data-mmap", DOES_NOT_HOLD,
		      "once new memory is needed malloc returns NULL (2nd 100 KiB, 1 MiB): "
		      "RLIMIT_DATA counts private writable mappings too; VM %s", delta_str(vm_change(&s0, &s1)));
	free(warm);
	return 0;
}
