// SPDX-License-Identifier: GPL-2.0
/*
 * brk-unaligned: the kernel keeps mm->brk exactly where the program asked,
 * to the byte, while the [heap] VMA ends at the next page boundary. sbrk(1)
 * moves brk by one byte and maps a whole page; the next 4095 bytes of sbrk
 * map nothing new. (musl's sbrk() refuses any increment other than 0, so
 * there the scenario calls brk(2) directly.)
 */
#include "observe.h"

static struct snap s0, s1, s2;

/* Grows brk by inc with the C library's sbrk(), or brk(2) where sbrk() refuses. */
static const char *grow(uintptr_t inc)
{
	uintptr_t old = raw_brk(0);

	if (sbrk((intptr_t)inc) != (void *)-1)
		return "sbrk";
	if (raw_brk(old + inc) != old + inc)
		die("brk(%#lx) failed", (unsigned long)(old + inc));
	return "brk(2), sbrk() refused";
}

int main(void)
{
	const struct mmscope_vma *h1, *h2;
	const char *how;

	begin("brk-unaligned", "grow brk by 1 byte, then by 4095 more");
	take(&s0);
	how = grow(1);
	take(&s1);
	show("sbrk(1)", &s0, &s1);
	grow(PAGE - 1);
	take(&s2);
	show("sbrk(4095)", &s1, &s2);

	h1 = heap_vma(&s1);
	h2 = heap_vma(&s2);
	say("  brk %#llx -> %#llx -> %#llx; [heap] ends at %#llx, then %#llx (%s)\n",
	    (unsigned long long)s0.mm.brk, (unsigned long long)s1.mm.brk,
	    (unsigned long long)s2.mm.brk, h1 ? (unsigned long long)h1->end : 0ULL,
	    h2 ? (unsigned long long)h2->end : 0ULL, how);
	if (brk_change(&s0, &s1) == 1 && h1 && h1->end == PAGE_ALIGN(s1.mm.brk) &&
	    (s1.mm.brk & (PAGE - 1)) != 0 && h2 && h2->end == h1->end && vm_change(&s1, &s2) == 0)
		claim("brk-exact", HOLDS, "+1 B: brk +1 B, [heap] VMA %s; +4095 B more: VM +0",
		      delta_str(vm_change(&s0, &s1)));
	else
		claim("brk-exact", DOES_NOT_HOLD, "+1 B: brk %s, VM %s; +4095 B more: VM %s",
		      delta_str(brk_change(&s0, &s1)), delta_str(vm_change(&s0, &s1)),
		      delta_str(vm_change(&s1, &s2)));
	return 0;
}
