// SPDX-License-Identifier: GPL-2.0
/*
 * thread: where a second thread's malloc comes from. glibc gives each new
 * thread an arena of its own (up to 8 per CPU) instead of sharing the brk
 * heap: a 64 MiB reservation aligned to 64 MiB, mapped PROT_NONE and made
 * read-write only as far as it is used. MALLOC_ARENA_MAX=1 keeps every thread
 * on the main heap. The scenario runs itself again with that variable set, in
 * a fresh process, and reads where the thread's block went there.
 */
#include "observe.h"
#include <pthread.h>

#define ARENA (64 * MiB)

static struct snap s0, s1;

static void *worker(void *arg)
{
	*(void **)arg = malloc(1024);
	return NULL;
}

/* Runs a thread that calls malloc(1 KiB); returns the block. */
static void *thread_malloc(void)
{
	pthread_t t;
	void *p = NULL;
	int err = pthread_create(&t, NULL, worker, &p);

	if (err)
		die("pthread_create: %s", strerror(err));
	pthread_join(t, NULL);
	if (!p)
		die("malloc(1 KiB) in the thread failed");
	return p;
}

/*
 * Whether [base, base + 64 MiB) around p is one reservation: VMA boundaries
 * at both ends, no hole; the bytes in it that are read-write and PROT_NONE.
 */
static int reservation(const struct snap *s, const void *p, unsigned long long *rw,
		       unsigned long long *none)
{
	uintptr_t base = (uintptr_t)p & ~(uintptr_t)(ARENA - 1), at = base;
	unsigned int i;

	*rw = *none = 0;
	for (i = 0; i < s->count && at < base + ARENA; i++) {
		const struct mmscope_vma *v = &s->vma[i];

		if (v->end <= base)
			continue;
		if (v->start != at || v->end > base + ARENA || v->kind != MMSCOPE_KIND_ANON)
			return 0;
		if (v->flags & (MMSCOPE_VMA_READ | MMSCOPE_VMA_WRITE))
			*rw += v->end - v->start;
		else
			*none += v->end - v->start;
		at = v->end;
	}
	return at == base + ARENA;
}

/* The child: a thread's malloc with MALLOC_ARENA_MAX=1; prints where it went. */
static int child(void)
{
	void *p = thread_malloc();

	take(&s1);
	say("%s\n", source(&s1, p));
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long long rw, none;
	const char *single;
	void *main_block, *p;
	int arena;

	if (argc > 1 && strcmp(argv[1], "--child") == 0)
		return child();

	begin("thread", "malloc(1 KiB) in a second thread");
	main_block = malloc(1024);
	take(&s0);
	say("  main thread's malloc(1 KiB) = %p (%s)\n", main_block, source(&s0, main_block));
	p = thread_malloc();
	take(&s1);
	say("  second thread's malloc(1 KiB) = %p (%s)\n", p, source(&s1, p));
	show("thread start, malloc, exit", &s0, &s1);
	arena = reservation(&s1, p, &rw, &none);
	if (arena)
		say("  in a 64 MiB reservation at %#lx: %s read-write, %s PROT_NONE\n",
		    (unsigned long)((uintptr_t)p & ~(uintptr_t)(ARENA - 1)), size_str(rw), size_str(none));

	if (in_mmap(&s1, p) && arena && none > rw)
		claim("thread-arena", HOLDS, "64 MiB at a 64 MiB boundary: %s read-write, %s PROT_NONE",
		      size_str(rw), size_str(none));
	else
		claim("thread-arena", DOES_NOT_HOLD, "from %s, not an arena of its own",
		      source(&s1, p));

#ifdef GLIBC_MALLOC
	single = run_child("thread", (char *[]){ "MALLOC_ARENA_MAX=1", NULL }, 0);
	say("  with MALLOC_ARENA_MAX=1 the thread's block is from %s\n", single);
	claim("arena-max", strcmp(single, "brk") == 0 ? HOLDS : DOES_NOT_HOLD,
	      "with MALLOC_ARENA_MAX=1 the thread's malloc(1 KiB) is from %s", single);
#else
	(void)single;
	claim("arena-max", NOT_APPLICABLE, "no MALLOC_ARENA_MAX");
#endif
	return 0;
}
