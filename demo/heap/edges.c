// SPDX-License-Identifier: GPL-2.0
/*
 * edges: glibc's thresholds, found to the byte by bisection instead of taken
 * from the articles. Each probe runs in a fresh process (this program again,
 * as `edges --child`, told what to do by EDGES_PROBE), which first takes the
 * free memory of the heap's top chunk, so that its request must grow the heap
 * or get a mapping; it answers with what the kernel's brk (brk(2) itself) and
 * the block's address say.
 *
 *  - the mmap threshold: the largest request that still grows brk and the
 *    smallest that is mapped, at the default threshold and after
 *    mallopt(M_MMAP_THRESHOLD) to 1 MiB and to 64 MiB (above the 32 MiB the
 *    dynamic threshold stops at: is there a ceiling?);
 *  - the dynamic threshold: after freeing a mapped block of 200,000 bytes,
 *    the largest request that comes from brk (is the new threshold the
 *    request, or the chunk, the mapping's size?), and the largest freed block
 *    that still moves it;
 *  - trimming: the smallest top chunk that makes free() lower brk, and how
 *    much brk gives back; what freeing 1,000 small blocks gives back;
 *  - the heap's first growth in a fresh process, and the next ones.
 *
 * A request of n bytes needs a chunk of n + 8 (the size field) rounded up to
 * 16 (at least 32). Only glibc has these knobs: other allocators answer n/a.
 */
#include "observe.h"
#include "start_brk.h"

/* The kernel's brk now. */
static uintptr_t cur_brk(void)
{
	return raw_brk(0);
}

/*
 * start_brk, read once (start_brk.h: without stdio, which would put its buffer
 * on the heap, between a block and the top).
 */
static uintptr_t start_brk(void)
{
	static uintptr_t known;

	if (!known)
		known = read_start_brk();
	if (!known)
		die("no start_brk in /proc/self/stat");
	return known;
}

#ifdef GLIBC_MALLOC
/* Whether p is in the heap [start_brk, brk). */
static int from_brk(const void *p)
{
	return (uintptr_t)p >= start_brk() && (uintptr_t)p < cur_brk();
}

/* A request's chunk: n + 8, rounded up to 16, at least 32. */
static size_t chunk_of(size_t n)
{
	size_t c = (n + 8 + 15) & ~(size_t)15;

	return c < 32 ? 32 : c;
}

#endif

/*
 * The probes, run in the child. Each prints one line. Only the last two are not
 * glibc's own.
 *   where N T       mallopt(M_MMAP_THRESHOLD, T) if T, take the top, malloc(N):
 *                   "brk|mmap MALLOPT_RESULT"
 *   after F N       malloc(F) and free it (a mapped block), take the top, malloc(N):
 *                   "brk|mmap MAPPING_SIZE_OF_F"
 *   trim S          mallopt(M_MMAP_THRESHOLD, 64 MiB) (any block from brk), take the
 *                   top, malloc(S), free it: "TOP_AT_FREE BRK_DELTA TOP_AFTER"
 *   steps N K       malloc(N) K times in a fresh heap: the brk steps
 *   smallfree       1,000 x malloc(1 KiB), free all: "BRK_GROWTH BRK_DELTA"
 */
static int child(const char *probe)
{
	unsigned long long a = 0, b = 0;
	char kind[16];
#ifdef GLIBC_MALLOC
	void *p, *q;
#endif

	if (!probe || sscanf(probe, "%15s %llu %llu", kind, &a, &b) < 1)
		die("EDGES_PROBE is not set");
	start_brk();
	if (0) {
#ifdef GLIBC_MALLOC
	} else if (!strcmp(kind, "where")) {
		int ok = b ? mallopt(M_MMAP_THRESHOLD, (int)b) : 1;

		use_up_top();
		p = malloc(a);
		if (!p)
			die("malloc(%llu) failed", a);
		printf("%s %d\n", from_brk(p) ? "brk" : "mmap", ok);
	} else if (!strcmp(kind, "after")) {
		struct mallinfo2 before, mapped;

		before = mallinfo2();
		q = malloc(a);
		if (!q)
			die("malloc(%llu) failed", a);
		mapped = mallinfo2();
		free(q);
		use_up_top();
		p = malloc(b);
		if (!p)
			die("malloc(%llu) failed", b);
		printf("%s %zu\n", from_brk(p) ? "brk" : "mmap", mapped.hblkhd - before.hblkhd);
	} else if (!strcmp(kind, "trim")) {
		uintptr_t brk0;
		size_t top;

		/* Blocks of any size from brk; the trim threshold stays the default. */
		if (!mallopt(M_MMAP_THRESHOLD, 64 * MiB))
			die("mallopt(M_MMAP_THRESHOLD) refused 64 MiB");
		use_up_top();
		p = malloc(a);
		if (!p || !from_brk(p))
			die("malloc(%llu) did not come from brk", a);
		top = mallinfo2().keepcost + chunk_of(a);
		brk0 = cur_brk();
		free(p);
		printf("%zu %lld %zu\n", top, (long long)cur_brk() - (long long)brk0,
		       mallinfo2().keepcost);
	} else if (!strcmp(kind, "trim2")) {
		/* After the dynamic threshold moved: two blocks at the top, freed. */
		uintptr_t brk0;
		size_t top;

		free(malloc(a));
		use_up_top();
		/*
		 * 100 KiB, then b: each grows the heap (b is more than the top the first
		 * growth left), so the top when both are freed moves with b in pages.
		 */
		q = malloc(100 * KiB);
		p = malloc(b);
		if (!p || !q || !from_brk(p) || !from_brk(q))
			die("trim2: the blocks did not come from brk");
		top = mallinfo2().keepcost + chunk_of(100 * KiB) + chunk_of(b);
		brk0 = cur_brk();
		free(p);
		free(q);
		printf("%zu %lld\n", top, (long long)cur_brk() - (long long)brk0);
#endif
	} else if (!strcmp(kind, "steps")) {
		static long long step[16];
		uintptr_t prev = cur_brk();
		unsigned long long i;

		/* Printed at the end: stdio's buffer would come from the heap. */
		for (i = 0; i < b && i < 16; i++) {
			if (!malloc(a))
				die("malloc(%llu) failed", a);
			step[i] = (long long)cur_brk() - (long long)prev;
			prev = cur_brk();
		}
		for (i = 0; i < b && i < 16; i++)
			printf("%s%lld", i ? " " : "", step[i]);
		printf("\n");
	} else if (!strcmp(kind, "smallfree")) {
		static void *blocks[1000];
		uintptr_t brk0 = cur_brk(), brk1;
		int i;

		for (i = 0; i < 1000; i++)
			if (!(blocks[i] = malloc(KiB)))
				die("malloc(1 KiB) failed");
		brk1 = cur_brk();
		for (i = 0; i < 1000; i++)
			free(blocks[i]);
		printf("%lld %lld\n", (long long)brk1 - (long long)brk0,
		       (long long)cur_brk() - (long long)brk1);
	} else {
		die("unknown probe %s", probe);
	}
	return 0;
}

/* Runs one probe in a fresh process; returns its line. */
static const char *ask(const char *fmt, ...)
{
	static char env[128];
	char *envp[] = { env, NULL };
	va_list ap;

	strcpy(env, "EDGES_PROBE=");
	va_start(ap, fmt);
	vsnprintf(env + strlen(env), sizeof(env) - strlen(env), fmt, ap);
	va_end(ap);
	return run_child("edges", envp, 0);
}

static unsigned long long probes;

#ifdef GLIBC_MALLOC

/* Whether malloc(n), after mallopt(M_MMAP_THRESHOLD, t) if t, grows brk. */
static int grows_brk(size_t n, size_t t)
{
	probes++;
	return !strncmp(ask("where %zu %zu", n, t), "brk ", 4);
}

/* Whether malloc(n) grows brk after a mapped block of f bytes was freed. */
static int grows_brk_after(size_t n, size_t f)
{
	probes++;
	return !strncmp(ask("after %zu %zu", f, n), "brk ", 4);
}

/* The largest n in [lo, hi) with ok(n, arg), given ok(lo, arg) and not ok(hi, arg). */
static size_t bisect(int (*ok)(size_t, size_t), size_t arg, size_t lo, size_t hi)
{
	if (!ok(lo, arg) || ok(hi, arg))
		return 0;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (ok(mid, arg))
			lo = mid;
		else
			hi = mid;
	}
	return lo;
}

/* Whether freeing a block of s bytes at the top leaves brk where it was. */
static int keeps(size_t s, size_t unused)
{
	long long top, delta;

	(void)unused;
	probes++;
	if (sscanf(ask("trim %zu", s), "%lld %lld", &top, &delta) != 2)
		die("trim %zu: no answer", s);
	return delta == 0;
}

/*
 * Whether freeing two blocks at the top, 100 KiB and s bytes, after a mapped block of f bytes
 * was freed, leaves brk where it was.
 */
static int keeps_after(size_t s, size_t f)
{
	long long top, delta;

	probes++;
	if (sscanf(ask("trim2 %zu %zu", f, s), "%lld %lld", &top, &delta) != 2)
		die("trim2 %zu %zu: no answer", f, s);
	return delta == 0;
}

/* The mmap threshold's edge after mallopt to t (0: the default): the claim's numbers. */
static void edge(const char *id, size_t t, size_t want)
{
	size_t last = bisect(grows_brk, t, 1, t ? 2 * t : 64 * MiB);
	int set = t ? atoi(ask("where 1 %zu", t) + 4) : 1;

	if (!last) {
		claim(id, DOES_NOT_HOLD, "no request up to 64 MiB is mapped (mallopt %s)",
		      set ? "accepted" : "refused");
		return;
	}
	claim(id, chunk_of(last) < want && chunk_of(last + 1) >= want && set ? HOLDS : DOES_NOT_HOLD,
	      "largest request from brk %zu B (chunk %zu B), smallest mapped %zu B (chunk %zu B)%s",
	      last, chunk_of(last), last + 1, chunk_of(last + 1),
	      t ? (set ? "; mallopt accepted" : "; mallopt refused it") : "");
}

/* glibc's thresholds. */
static void thresholds(void)
{
	const size_t freed = 200000;
	size_t last, mapping, moved, top_edge;
	long long top, delta;

	edge("edge-default", 0, 128 * KiB);
	edge("edge-mallopt", 1 * MiB, 1 * MiB);
	edge("edge-mallopt-above-max", 64 * MiB, 64 * MiB);

	/* The dynamic threshold: the chunk of the freed block, or the request? */
	mapping = strtoull(ask("after %zu 1", freed) + 4, NULL, 10);
	last = bisect(grows_brk_after, freed, 1, 64 * MiB);
	claim("dyn-threshold-chunk",
	      last && chunk_of(last) < mapping && chunk_of(last + 1) >= mapping ? HOLDS :
										  DOES_NOT_HOLD,
	      "after free of a mapped %zu B block (its mapping %zu B), the largest request from "
	      "brk is %zu B (chunk %zu B), the smallest mapped %zu B",
	      freed, mapping, last, chunk_of(last), last + 1);

	/* The trim threshold after it: two blocks at the top, each from brk, freed. */
	{
		size_t kept = bisect(keeps_after, freed, 136 * KiB, mapping - 24);
		long long top0 = 0, top1 = 0, d0 = 0, d1 = 0;

		if (kept &&
		    (sscanf(ask("trim2 %zu %zu", freed, kept), "%lld %lld", &top0, &d0) != 2 ||
		     sscanf(ask("trim2 %zu %zu", freed, kept + 1), "%lld %lld", &top1, &d1) != 2))
			die("trim2: no answer");
		/* Tops a page apart at most: the threshold is pinned to a page. */
		claim("dyn-trim-threshold",
		      kept && top0 < 2 * (long long)mapping && top1 >= 2 * (long long)mapping &&
				      top1 - top0 <= (long long)PAGE + 16 ?
			      HOLDS : DOES_NOT_HOLD,
		      "then free lowers brk once the top chunk reaches %lld B (%lld B does not): "
		      "twice the %zu B mapping is %zu B",
		      top1, top0, mapping, 2 * mapping);
	}

	/* The largest freed block that still moves the threshold: 136 KiB from brk after it. */
	moved = 0;
	{
		size_t lo = 256 * KiB, hi = 64 * MiB;

		if (grows_brk_after(136 * KiB, lo) && !grows_brk_after(136 * KiB, hi)) {
			while (hi - lo > 1) {
				size_t mid = lo + (hi - lo) / 2;

				if (grows_brk_after(136 * KiB, mid))
					lo = mid;
				else
					hi = mid;
			}
			moved = lo;
		} else {
			die("a freed 256 KiB mapping did not move the threshold, or a 64 MiB one did");
		}
	}
	{
		size_t m0 = moved ? strtoull(ask("after %zu 1", moved) + 4, NULL, 10) : 0;
		size_t m1 = moved ? strtoull(ask("after %zu 1", moved + 1) + 4, NULL, 10) : 0;

		claim("dyn-threshold-max", moved && m0 <= 32 * MiB && m1 > 32 * MiB ? HOLDS : DOES_NOT_HOLD,
		      "the largest freed block that moves it: %zu B (a %zu B mapping); %zu B (a %zu B "
		      "mapping) does not%s",
		      moved, m0, moved + 1, m1,
		      m1 == 32 * MiB ? " (glibc compares the size field, IS_MMAPPED bit and all: "
				       "32 MiB + 2 > 32 MiB)" : "");
	}

	/* Trimming: the smallest top chunk that free() gives back, and how much. */
	top_edge = bisect(keeps, 0, 1, 4 * MiB);
	{
		long long top0, delta0, left, left0;

		if (sscanf(ask("trim %zu", top_edge + 1), "%lld %lld %lld", &top, &delta, &left) != 3 ||
		    sscanf(ask("trim %zu", top_edge), "%lld %lld %lld", &top0, &delta0, &left0) != 3)
			die("trim: no answer");
		/*
		 * It gives back whole pages above M_TOP_PAD, from the smallest block the
		 * thread cache does not keep: 64 chunk sizes of 16 B from 32 B, requests up to
		 * 1,032 B.
		 */
		claim("trim-edge",
		      top_edge == 1032 && delta < 0 && left >= 128 * (long long)KiB &&
				      left < 128 * (long long)KiB + (long long)PAGE + 64 ?
			      HOLDS : DOES_NOT_HOLD,
		      "free of a %zu B block at the top (top chunk %lld B) lowers brk by %lld B and "
		      "keeps a %lld B top; of a %zu B block, the largest the thread cache keeps, by "
		      "nothing",
		      top_edge + 1, top, -delta, left, top_edge);
	}

}
#endif

int main(int argc, char **argv)
{
	char steps[128];
	long long grown, back, first;

	if (argc > 1 && !strcmp(argv[1], "--child"))
		return child(getenv("EDGES_PROBE"));
	begin("edges", "thresholds by bisection, each probe a fresh process");
#ifdef GLIBC_MALLOC
	thresholds();
#else
	{
		static const char *const ids[] = { "edge-default", "edge-mallopt",
						   "edge-mallopt-above-max", "dyn-threshold-chunk",
						   "dyn-trim-threshold", "dyn-threshold-max",
						   "trim-edge" };
		size_t i;

		for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
			claim(ids[i], NOT_APPLICABLE, "glibc's thresholds: %s has no such knobs",
			      ALLOCATOR);
	}
#endif

	/* Many small blocks freed, without malloc_trim. */
	if (sscanf(ask("smallfree"), "%lld %lld", &grown, &back) != 2)
		die("smallfree: no answer");
	/* Blocks on brk: it grew by at least their 1,000 KiB. */
	claim("small-frees",
	      grown < 1000 * (long long)KiB ? NOT_APPLICABLE : back < 0 ? HOLDS : DOES_NOT_HOLD,
	      "1,000 malloc(1 KiB) grew brk by %lld B; freeing them all: brk %+lld B", grown, back);

	/* The heap's growth, step by step. */
	snprintf(steps, sizeof(steps), "%s", ask("steps %lu 6", 100 * KiB));
	first = strtoll(ask("steps 1 1"), NULL, 10);
	claim("first-growth",
	      !first ? NOT_APPLICABLE : first == 132 * (long long)KiB ? HOLDS : DOES_NOT_HOLD,
	      "malloc(1) in a fresh process: brk %+lld B; six malloc(100 KiB): brk steps %s B", first,
	      steps);
	if (probes)
		say("  %llu probes, each a fresh process\n", probes);
	return 0;
}
