// SPDX-License-Identifier: GPL-2.0
/*
 * rlimit-data: RLIMIT_DATA limits brk. Set below what the process already
 * uses, it stops brk from growing at all. Does malloc then carry on through
 * mmap? Since Linux 4.7 the same limit also counts private writable
 * mappings (the data_vm counter), so mmap of new anonymous memory fails too.
 *
 * Then: with the limit below what the heap uses, can brk still shrink, and
 * what does sbrk(-n) say? And a soft limit of 0 (the hard one larger), which
 * the kernel treats apart: in a fresh process (this program again, as
 * `rlimit-data --child`), is brk refused, are new mappings, does malloc work?
 */
#include "observe.h"
#include <sys/resource.h>

static struct snap s0, s1;

/* The child: soft RLIMIT_DATA 0, then brk, mmap and malloc; one line. */
static int child(void)
{
	struct rlimit rl;
	uintptr_t b = raw_brk(0);
	void *m, *p;

	if (getrlimit(RLIMIT_DATA, &rl) != 0)
		die("getrlimit: %s", strerror(errno));
	rl.rlim_cur = 0;
	if (setrlimit(RLIMIT_DATA, &rl) != 0)
		die("setrlimit(RLIMIT_DATA, 0): %s", strerror(errno));
	m = mmap(NULL, 64 * KiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	p = malloc(1 * MiB);
	printf("brk %s, mmap %s, malloc(1 MiB) %s\n",
	       raw_brk(PAGE_ALIGN(b) + PAGE) == b ? "refused" : "moved",
	       m == MAP_FAILED ? "refused" : "allowed", p ? "succeeded" : "returned NULL");
	return 0;
}

int main(int argc, char **argv)
{
	struct rlimit rl, orig;
	void *first, *second, *large, *warm;
	int brk_refused;
	unsigned long long used;

	if (argc > 1 && !strcmp(argv[1], "--child"))
		return child();
	begin("rlimit-data", "RLIMIT_DATA set to the data the process already has");
	warm = malloc(1);
	take(&s0);
	/* The kernel's brk check: (brk - start_brk) + (end_data - start_data) must fit. */
	used = (s0.mm.brk - s0.mm.start_brk) + (s0.mm.end_data - s0.mm.start_data);
	if (getrlimit(RLIMIT_DATA, &rl) != 0)
		die("getrlimit: %s", strerror(errno));
	orig = rl;
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

	/*
	 * Shrinking by a page, to a size still above a limit at half the heap. Last, as
	 * it takes memory from under malloc. An allocator that keeps no heap gets two
	 * pages of one first, under the first limit.
	 */
	if (setrlimit(RLIMIT_DATA, &orig) != 0)
		die("setrlimit(RLIMIT_DATA): %s", strerror(errno));
	{
		uintptr_t before = raw_brk(0), after, kernel;
		unsigned long long heap;
		void *old;

		if (before - s0.mm.start_brk < 2 * PAGE)
			before = raw_brk(PAGE_ALIGN(before) + 2 * PAGE);
		heap = (before - s0.mm.start_brk) + (s0.mm.end_data - s0.mm.start_data);
		rl.rlim_cur = heap / 2;
		if (setrlimit(RLIMIT_DATA, &rl) != 0)
			die("setrlimit(RLIMIT_DATA, %llu): %s", heap / 2, strerror(errno));
		/* The C library's view, then the kernel's (musl's sbrk(-n) never asks it). */
		old = sbrk(-(intptr_t)PAGE);
		after = raw_brk(0);
		kernel = after == before ? raw_brk(before - PAGE) : after;
		claim("rlimit-data-shrink", kernel == before - PAGE ? HOLDS : DOES_NOT_HOLD,
		      "limit at half the heap's %s: brk(2) a page lower %s; sbrk(-4096) returned %s%s",
		      size_str(heap), kernel == before - PAGE ? "moved" : "refused",
		      old == (void *)-1 ? "-1" : old == (void *)before ? "the old break" : "another address",
		      old == (void *)before && after == before ?
			      ", as if it had shrunk: brk(2) checks the new size against the limit "
			      "before it looks at the direction, and returns the old break, which glibc "
			      "takes for success" : "");
	}
	/* The child starts with the limit it had at first: an exec under half would fail. */
	if (setrlimit(RLIMIT_DATA, &orig) != 0)
		die("setrlimit(RLIMIT_DATA): %s", strerror(errno));
	{
		char *envp[] = { NULL };
		const char *answer = run_child("rlimit-data", envp, 0);
		int brk_refused = strstr(answer, "brk refused") != NULL;
		int mmap_allowed = strstr(answer, "mmap allowed") != NULL;

		claim("rlimit-data-zero", brk_refused && mmap_allowed ? HOLDS : DOES_NOT_HOLD,
		      "soft limit 0, hard %s: %s",
		      orig.rlim_max == RLIM_INFINITY ? "unlimited" : size_str(orig.rlim_max), answer);
		claim("rlimit-data-zero-malloc",
		      strstr(answer, "malloc(1 MiB) succeeded") ? HOLDS : DOES_NOT_HOLD,
		      "%s", answer);
	}
	return 0;
}
