/* SPDX-License-Identifier: GPL-2.0 */
/*
 * observe.h: what the heap scenarios use to watch their own address space.
 *
 * take() asks /dev/mmscope for the calling process's mm summary (brk,
 * start_brk, mmap_base, RSS counters, ...) and its VMA list, and checks the
 * list against /proc/self/maps on the spot: a scenario that sees a
 * disagreement stops with exit status 3. Nothing here calls malloc, so
 * observing does not move the heap that is being observed: output goes
 * through write(2) from static buffers.
 *
 * A scenario prints what it does and sees, one line per step, and ends with
 * its verdicts, one line per claim:
 *   claim: ID: VERDICT: NUMBERS
 * VERDICT is holds, holds-if (the numbers say when), does-not-hold or n/a.
 * The selftests collect these lines from every allocator's build into the
 * claims table (selftests/src/heap.rs).
 *
 * Each scenario is built once per allocator (scripts/build-heap.sh):
 * ALLOCATOR is its name; GLIBC_MALLOC is defined when the allocator is
 * glibc's own, the only one with mallopt(), malloc_trim() and
 * MALLOC_ARENA_MAX.
 */
#ifndef MMSCOPE_OBSERVE_H
#define MMSCOPE_OBSERVE_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "allocator.h"
#include "mmscope.h"


#define KiB (1024UL)
#define MiB (1024UL * KiB)
#define GiB (1024UL * MiB)
#define PAGE 4096UL
#define PAGE_ALIGN(x) (((x) + PAGE - 1) & ~(PAGE - 1))

#define MAX_VMAS 1024

/* One look at the address space. */
struct snap {
	struct mmscope_mm_summary mm;
	unsigned int count;
	struct mmscope_vma vma[MAX_VMAS];
};

static char out_buf[4096];

/* Writes all of buf, also when stdout is a pipe that takes it in parts. */
static inline void out_write(const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(1, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			_exit(4);
		buf += n;
		len -= (size_t)n;
	}
}

/* printf to stdout, without stdio's buffer (which malloc would provide). */
__attribute__((format(printf, 1, 2)))
static inline void say(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out_buf, sizeof(out_buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		_exit(4);
	if ((size_t)n >= sizeof(out_buf))
		n = sizeof(out_buf) - 1;
	out_write(out_buf, (size_t)n);
}

/* Stops the scenario: it could not do what it set out to do. */
__attribute__((format(printf, 1, 2), noreturn))
static inline void die(const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(out_buf, sizeof(out_buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		out_write(out_buf, (size_t)n < sizeof(out_buf) ? (size_t)n : sizeof(out_buf) - 1);
	out_write("\n", 1);
	_exit(3);
}

/*
 * Sizes as people write them: "132 KiB", "1 MiB", "131048 B". Each call
 * returns one of a few rotating static buffers, so that several can appear in
 * one say().
 */
static inline const char *size_str(unsigned long long bytes)
{
	static char bufs[8][32];
	static unsigned int next;
	char *b = bufs[next++ % 8];

	if (bytes != 0 && bytes % GiB == 0)
		snprintf(b, 32, "%llu GiB", bytes / GiB);
	else if (bytes != 0 && bytes % MiB == 0)
		snprintf(b, 32, "%llu MiB", bytes / MiB);
	else if (bytes != 0 && bytes % KiB == 0)
		snprintf(b, 32, "%llu KiB", bytes / KiB);
	else
		snprintf(b, 32, "%llu B", bytes);
	return b;
}

/* A signed change: "+132 KiB", "-1 MiB", "+0". */
static inline const char *delta_str(long long bytes)
{
	static char bufs[8][40];
	static unsigned int next;
	char *b = bufs[next++ % 8];

	if (bytes == 0)
		return "+0";
	snprintf(b, 40, "%c%s", bytes > 0 ? '+' : '-',
		 size_str(bytes > 0 ? (unsigned long long)bytes : (unsigned long long)-bytes));
	return b;
}

static int mmscope_fd = -1;

static inline int device(void)
{
	if (mmscope_fd < 0) {
		mmscope_fd = open("/dev/mmscope", O_RDONLY | O_CLOEXEC);
		if (mmscope_fd < 0)
			die("cannot open /dev/mmscope (%s): load the module with `insmod mmscope.ko`",
			    strerror(errno));
	}
	return mmscope_fd;
}

static char maps_buf[256 * 1024];

/* Reads a whole procfs file into maps_buf; returns its length. */
static inline size_t read_proc(const char *path)
{
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		die("cannot open %s: %s", path, strerror(errno));
	for (;;) {
		ssize_t n = read(fd, maps_buf + len, sizeof(maps_buf) - 1 - len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("cannot read %s: %s", path, strerror(errno));
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == sizeof(maps_buf) - 1)
			die("%s is larger than %zu bytes", path, sizeof(maps_buf));
	}
	close(fd);
	maps_buf[len] = '\0';
	return len;
}

/*
 * Checks a snapshot against procfs: the same VMAs as /proc/self/maps (ranges,
 * and [heap] where the module says HEAP; [vsyscall] aside), the same start_brk as field 47 of
 * /proc/self/stat. Only valid while no other thread changes the mm.
 */
static inline void cross_check(const struct snap *s)
{
	unsigned int i = 0;
	char *line, *p;

	read_proc("/proc/self/maps");
	for (line = maps_buf; *line; line = p) {
		unsigned long long start, end;
		int is_heap;

		p = strchr(line, '\n');
		if (!p)
			die("/proc/self/maps: unterminated line");
		*p++ = '\0';
		if (sscanf(line, "%llx-%llx", &start, &end) != 2)
			die("/proc/self/maps: cannot parse \"%s\"", line);
		/* The gate area is the kernel's, in no mm's VMA tree. */
		if (strstr(line, "[vsyscall]"))
			continue;
		if (i >= s->count)
			die("procfs disagrees: /proc/self/maps has more than the module's %u VMAs (\"%s\")",
			    s->count, line);
		is_heap = strstr(line, "[heap]") != NULL;
		if (s->vma[i].start != start || s->vma[i].end != end ||
		    is_heap != (s->vma[i].kind == MMSCOPE_KIND_HEAP))
			die("procfs disagrees: VMA %u is %llx-%llx kind %u, /proc/self/maps says \"%s\"",
			    i, (unsigned long long)s->vma[i].start,
			    (unsigned long long)s->vma[i].end, s->vma[i].kind, line);
		i++;
	}
	if (i != s->count)
		die("procfs disagrees: the module reports %u VMAs, /proc/self/maps %u", s->count, i);

	read_proc("/proc/self/stat");
	p = strrchr(maps_buf, ')');
	if (!p)
		die("/proc/self/stat: no ')'");
	/* Field 3 follows ") "; start_brk is field 47. */
	p += 2;
	for (i = 3; i < 47; i++) {
		p = strchr(p, ' ');
		if (!p)
			die("/proc/self/stat: fewer than 47 fields");
		p++;
	}
	if (strtoull(p, NULL, 10) != s->mm.start_brk)
		die("procfs disagrees: start_brk %#llx, /proc/self/stat field 47 %s",
		    (unsigned long long)s->mm.start_brk, p);
}

/* Takes a snapshot of the calling process's address space, checked against procfs. */
static inline void take(struct snap *s)
{
	struct mmscope_vma_list list;

	memset(&s->mm, 0, sizeof(s->mm));
	s->mm.size = sizeof(s->mm);
	if (ioctl(device(), MMSCOPE_IOC_MM_SUMMARY, &s->mm) != 0)
		die("MMSCOPE_IOC_MM_SUMMARY: %s", strerror(errno));

	s->count = 0;
	memset(&list, 0, sizeof(list));
	list.size = sizeof(list);
	list.record_size = sizeof(struct mmscope_vma);
	do {
		if (s->count == MAX_VMAS)
			die("more than %d VMAs", MAX_VMAS);
		list.records = (uintptr_t)&s->vma[s->count];
		list.capacity = MAX_VMAS - s->count;
		if (ioctl(device(), MMSCOPE_IOC_VMA_LIST, &list) != 0)
			die("MMSCOPE_IOC_VMA_LIST: %s", strerror(errno));
		s->count += list.count;
		list.start_addr = list.next_addr;
	} while (list.next_addr != 0);

	cross_check(s);
}

/* The VMA holding addr, or NULL. */
static inline const struct mmscope_vma *vma_at(const struct snap *s, const void *addr)
{
	uintptr_t a = (uintptr_t)addr;
	unsigned int i;

	for (i = 0; i < s->count; i++)
		if (s->vma[i].start <= a && a < s->vma[i].end)
			return &s->vma[i];
	return NULL;
}

/* The [heap] VMA, or NULL while the heap is empty. */
static inline const struct mmscope_vma *heap_vma(const struct snap *s)
{
	unsigned int i;

	for (i = 0; i < s->count; i++)
		if (s->vma[i].kind == MMSCOPE_KIND_HEAP)
			return &s->vma[i];
	return NULL;
}

/* Whether addr lies in the brk heap, [start_brk, brk). */
static inline int in_brk(const struct snap *s, const void *addr)
{
	uintptr_t a = (uintptr_t)addr;

	return s->mm.start_brk <= a && a < s->mm.brk;
}

/* Whether addr lies in an anonymous mapping of its own (not the brk heap). */
static inline int in_mmap(const struct snap *s, const void *addr)
{
	const struct mmscope_vma *v = vma_at(s, addr);

	return v && v->kind == MMSCOPE_KIND_ANON && !in_brk(s, addr);
}

/* Where a block came from, as a word. */
static inline const char *source(const struct snap *s, const void *addr)
{
	if (!addr)
		return "NULL";
	if (in_brk(s, addr))
		return "brk";
	if (in_mmap(s, addr))
		return "mmap";
	return "elsewhere";
}

static inline long long brk_change(const struct snap *a, const struct snap *b)
{
	return (long long)(b->mm.brk - a->mm.brk);
}

static inline long long vm_change(const struct snap *a, const struct snap *b)
{
	return ((long long)b->mm.total_vm - (long long)a->mm.total_vm) * (long long)PAGE;
}

static inline long long rss_change(const struct snap *a, const struct snap *b)
{
	return ((long long)b->mm.rss_anon - (long long)a->mm.rss_anon) * (long long)PAGE;
}

/* One line for a step: what changed between two snapshots. */
static inline void show(const char *what, const struct snap *a, const struct snap *b)
{
	say("  %-34s brk %s, VMAs %+d, VM %s, RssAnon %s\n", what, delta_str(brk_change(a, b)),
	    (int)b->count - (int)a->count, delta_str(vm_change(a, b)), delta_str(rss_change(a, b)));
}

extern char __bss_start[], end[];

/* Uses 64 KiB of stack, so that later calls find those pages already there. */
__attribute__((noinline)) static void settle_stack(void)
{
	volatile char deep[64 * KiB];
	size_t i;

	for (i = 0; i < sizeof(deep); i += PAGE)
		deep[i] = 0;
}

/*
 * The scenario's opening line. It also writes to every page of the
 * program's .bss (where the snapshots live) and to the stack the observing
 * needs, so that taking a snapshot later does not itself add to RssAnon.
 */
static inline void begin(const char *scenario, const char *what)
{
	uintptr_t p;

	for (p = (uintptr_t)__bss_start & ~(PAGE - 1); p < (uintptr_t)end; p += PAGE) {
		volatile char *c = (volatile char *)(p < (uintptr_t)__bss_start ? __bss_start : (char *)p);

		*c = *c;
	}
	settle_stack();
	say("%s (%s): %s\n", scenario, allocator(), what);
}

#ifdef GLIBC_MALLOC
#include <malloc.h>

/*
 * glibc serves any request its free top chunk can hold, also one above the
 * mmap threshold: the threshold only decides what happens when the heap must
 * grow. This takes the top chunk's free memory, so that the next request
 * shows the threshold at work. Returns the block, or NULL.
 */
static inline void *use_up_top(void)
{
	struct mallinfo2 mi;

	free(malloc(1));
	mi = mallinfo2();
	return mi.keepcost > 64 ? malloc(mi.keepcost - 64) : NULL;
}
#endif

enum verdict { HOLDS, HOLDS_IF, DOES_NOT_HOLD, NOT_APPLICABLE };

/* The verdict on one claim, with the numbers that decided it. */
__attribute__((format(printf, 3, 4)))
static inline void claim(const char *id, enum verdict v, const char *fmt, ...)
{
	static const char *const words[] = { "holds", "holds-if", "does-not-hold", "n/a" };
	char numbers[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(numbers, sizeof(numbers), fmt, ap);
	va_end(ap);
	say("claim: %s: %s: %s\n", id, words[v], numbers);
}

/* How many pages of [addr, addr + len) are resident (mincore(2)). */
static inline unsigned long resident_pages(const void *addr, size_t len)
{
	static unsigned char vec[64 * 1024];
	uintptr_t start = (uintptr_t)addr & ~(PAGE - 1);
	size_t pages = (PAGE_ALIGN((uintptr_t)addr + len) - start) / PAGE, i;
	unsigned long n = 0;

	if (pages > sizeof(vec))
		die("resident_pages: %zu pages is too many", pages);
	if (mincore((void *)start, pages * PAGE, vec) != 0)
		die("mincore: %s", strerror(errno));
	for (i = 0; i < pages; i++)
		n += vec[i] & 1;
	return n;
}

/*
 * Runs this program again in a fresh process, as `NAME --child`, with the
 * environment envp and, if persona is not 0, that personality(2); returns
 * the first line the child printed, in a static buffer. A failed child stops
 * the scenario.
 */
static inline const char *run_child(const char *name, char *const envp[], unsigned long persona)
{
	static char answer[256];
	char *const argv[] = { (char *)name, "--child", NULL };
	int fds[2], status;
	ssize_t n;
	size_t len = 0;
	pid_t pid;

	if (pipe(fds) != 0)
		die("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		if (persona && personality(persona) == -1)
			_exit(126);
		execve("/proc/self/exe", argv, envp);
		_exit(127);
	}
	close(fds[1]);
	while ((n = read(fds[0], answer + len, sizeof(answer) - 1 - len)) > 0)
		len += (size_t)n;
	close(fds[0]);
	answer[len] = '\0';
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("the child run of %s failed: %s", name, answer);
	answer[strcspn(answer, "\n")] = '\0';
	return answer;
}

/* brk(2) itself, bypassing the C library's sbrk(): returns the new brk. */
static inline uintptr_t raw_brk(uintptr_t addr)
{
	return (uintptr_t)syscall(SYS_brk, addr);
}

#endif /* MMSCOPE_OBSERVE_H */
