// SPDX-License-Identifier: GPL-2.0
/*
 * The allocator a heap scenario is built for (ALLOCATOR, GLIBC_MALLOC: see
 * scripts/build-heap.sh), and the one that runs: a glibc build names the
 * glibc it was loaded with, which need not be the one it was linked against
 * (the second glibc's column runs the same code on another glibc). The tests
 * check that name against the column's version.
 */
#ifndef MMSCOPE_ALLOCATOR_H
#define MMSCOPE_ALLOCATOR_H

#ifndef ALLOCATOR
#error "build with -DALLOCATOR=\"name\" (see scripts/build-heap.sh)"
#endif

#ifdef GLIBC_MALLOC
#include <gnu/libc-version.h>
#include <stdio.h>
#endif

/* "glibc 2.41", "musl": for a scenario's first line. Allocates nothing. */
static inline const char *allocator(void)
{
#ifdef GLIBC_MALLOC
	static char name[64];

	snprintf(name, sizeof(name), "%s %s", ALLOCATOR, gnu_get_libc_version());
	return name;
#else
	return ALLOCATOR;
#endif
}

#endif /* MMSCOPE_ALLOCATOR_H */
