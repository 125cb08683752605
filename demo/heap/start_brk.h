// SPDX-License-Identifier: GPL-2.0
/*
 * start_brk, field 47 of /proc/self/stat, read with open(2) and read(2) into a
 * static buffer: no stdio, no malloc, no sscanf. For the scenarios that must
 * not put anything on the heap while they read it (edges), or must not link
 * free(), which musl's sscanf does (bump). Returns 0 if it cannot be read.
 */
#ifndef MMSCOPE_START_BRK_H
#define MMSCOPE_START_BRK_H

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline unsigned long read_start_brk(void)
{
	static char buf[4096];
	int fd = open("/proc/self/stat", O_RDONLY), field;
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	char *p;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* The fields after the command's closing parenthesis start at 3. */
	p = strrchr(buf, ')');
	for (field = 2; p && field < 47; field++)
		p = strchr(p + 1, ' ');
	return p ? strtoul(p + 1, NULL, 10) : 0;
}

#endif /* MMSCOPE_START_BRK_H */
