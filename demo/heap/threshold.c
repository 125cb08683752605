// SPDX-License-Identifier: GPL-2.0
/*
 * threshold: mallopt(M_MMAP_THRESHOLD) moves the boundary between brk and
 * mmap, both ways. With the threshold at 64 KiB, malloc(100 KiB) gets a
 * mapping; with it at 1 MiB, malloc(512 KiB) comes from the heap.
 * The threshold only matters when the heap must grow, so the scenario first
 * takes what is free at the top of the heap.
 * mallopt() is glibc malloc's interface: other allocators have no such knob.
 */
#include "observe.h"

#ifdef GLIBC_MALLOC
static struct snap s0, s1, s2;
#endif

int main(void)
{
	begin("threshold", "mallopt(M_MMAP_THRESHOLD) down to 64 KiB, then up to 1 MiB");
#ifdef GLIBC_MALLOC
	void *down, *up;
	int moved_down, moved_up;

	if (!use_up_top())
		die("cannot take the top chunk");
	take(&s0);
	if (mallopt(M_MMAP_THRESHOLD, 64 * KiB) != 1)
		die("mallopt(M_MMAP_THRESHOLD, 64 KiB) failed");
	down = malloc(100 * KiB);
	take(&s1);
	say("  threshold 64 KiB: malloc(100 KiB) = %p (%s)\n", down, source(&s1, down));
	show("malloc(100 KiB)", &s0, &s1);
	if (mallopt(M_MMAP_THRESHOLD, 1 * MiB) != 1)
		die("mallopt(M_MMAP_THRESHOLD, 1 MiB) failed");
	up = malloc(512 * KiB);
	take(&s2);
	say("  threshold 1 MiB: malloc(512 KiB) = %p (%s)\n", up, source(&s2, up));
	show("malloc(512 KiB)", &s1, &s2);

	moved_down = in_mmap(&s1, down);
	moved_up = in_brk(&s2, up);
	if (moved_down && moved_up)
		claim("mallopt-threshold", HOLDS,
		      "at 64 KiB, 100 KiB from mmap (VM %s); at 1 MiB, 512 KiB from brk (brk %s)",
		      delta_str(vm_change(&s0, &s1)), delta_str(brk_change(&s1, &s2)));
	else
		claim("mallopt-threshold", moved_down || moved_up ? HOLDS_IF : DOES_NOT_HOLD,
		      "at 64 KiB, 100 KiB from %s; at 1 MiB, 512 KiB from %s",
		      source(&s1, down), source(&s2, up));
#else
	claim("mallopt-threshold", NOT_APPLICABLE, "no mallopt()");
#endif
	return 0;
}
