// SPDX-License-Identifier: GPL-2.0
/*
 * fork-heap: after fork(), the child has a copy of its parent's address
 * space, [heap] included. A child that grows brk (by 256 KiB, with brk(2)
 * itself: the same for every allocator) grows its own [heap]: how many [heap]
 * lines does its /proc/self/maps show, and its parent's, before and after?
 *
 * The growth cannot merge with the inherited VMA: that one's anon_vma chain
 * also links the parent's (is_mergeable_anon_vma() in mm/vma.c wants a single
 * one), so the child's [heap] is two VMAs.
 */
#include "observe.h"

/* The [heap] lines of /proc/PID/maps (PID 0: self), and the end of the last one. */
static int heap_lines(pid_t pid, unsigned long *end)
{
	char path[64];
	size_t len;
	char *line, *next;
	int n = 0;

	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/maps");
	len = read_proc(path);
	maps_buf[len] = '\0';
	for (line = maps_buf; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (strstr(line, "[heap]")) {
			n++;
			if (end)
				*end = strtoul(strchr(line, '-') + 1, NULL, 16);
		}
	}
	return n;
}

int main(void)
{
	int fds[2], hold[2], status, parent_before, parent_after, child_lines = 0;
	unsigned long parent_end = 0, parent_end_after = 0, child_end = 0;
	uintptr_t b;
	pid_t pid;
	void *warm;

	begin("fork-heap", "fork, then the child grows brk by 256 KiB");
	warm = malloc(1);
	parent_before = heap_lines(0, &parent_end);
	if (!parent_before) {
		/* An allocator that keeps no heap: one page of it, for the child to grow. */
		b = raw_brk(0);
		if (raw_brk(PAGE_ALIGN(b) + PAGE) != PAGE_ALIGN(b) + PAGE)
			die("brk(2) refused a page");
		/* Written to, as a heap is. */
		*(volatile char *)PAGE_ALIGN(b) = 1;
		parent_before = heap_lines(0, &parent_end);
	}
	if (pipe(fds) != 0 || pipe(hold) != 0)
		die("pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		char answer[64];
		unsigned long end = 0;
		uintptr_t now = raw_brk(0);
		int n;

		close(hold[1]);
		if (raw_brk(PAGE_ALIGN(now) + 256 * KiB) != PAGE_ALIGN(now) + 256 * KiB)
			_exit(1);
		n = heap_lines(0, &end);
		snprintf(answer, sizeof(answer), "%d %lu\n", n, end);
		if (write(fds[1], answer, strlen(answer)) < 0)
			_exit(1);
		/* Held until the parent has read its own maps (the end of file). */
		if (read(hold[0], answer, 1) != 0)
			_exit(1);
		_exit(0);
	}
	{
		char answer[64] = "";

		if (read(fds[0], answer, sizeof(answer) - 1) <= 0 ||
		    sscanf(answer, "%d %lu", &child_lines, &child_end) != 2)
			die("the child did not answer");
	}
	parent_after = heap_lines(0, &parent_end_after);
	close(fds[0]);
	close(fds[1]);
	close(hold[0]);
	close(hold[1]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		die("the child failed");
	say("  parent: %d [heap] line(s) ending at %#lx; child after brk +256 KiB: %d, ending at "
	    "%#lx; parent then: %d, ending at %#lx\n",
	    parent_before, parent_end, child_lines, child_end, parent_after, parent_end_after);
	if (parent_before == 1 && child_lines == 1 && parent_after == 1 &&
	    child_end == parent_end + 256 * KiB && parent_end_after == parent_end)
		claim("fork-heap", HOLDS, "one [heap] line in each; the child's %s longer, the "
		      "parent's unchanged", delta_str((long long)child_end - (long long)parent_end));
	else if (child_lines == parent_before + 1 && parent_after == parent_before &&
		 child_end == parent_end + 256 * KiB && parent_end_after == parent_end)
		claim("fork-heap", DOES_NOT_HOLD,
		      "the child's maps show %d [heap] lines to its parent's %d, ending %s further: its "
		      "growth is a VMA of its own (the inherited one's anon_vma chain also links the "
		      "parent's); the parent's unchanged",
		      child_lines, parent_after,
		      delta_str((long long)child_end - (long long)parent_end));
	else
		die("the child's heap: %d [heap] lines ending at %#lx; the parent's %d, then %d, ending "
		    "at %#lx, then %#lx",
		    child_lines, child_end, parent_before, parent_after, parent_end, parent_end_after);
	free(warm);
	return 0;
}
