// SPDX-License-Identifier: GPL-2.0
/*
 * brk-blocked: brk cannot grow into an existing mapping. A mapping placed
 * 256 KiB above the heap's start stops brk one page below it (the kernel
 * keeps a page of gap). glibc's malloc then carries on with mmap: its main
 * arena becomes non-contiguous, in a new mapping (glibc 2.36 rounds the first
 * up to a multiple of 1 MiB). And the next times the arena runs out, with brk
 * still blocked: 100 KiB blocks until the address space has grown three more
 * times; by how much each time?
 */
#include "observe.h"

#define GAP (256 * KiB)
#define BLOCKS 32
#define BLOCK (16 * KiB)

static struct snap s0, s1, s2, sa, sb;

int main(void)
{
	uintptr_t base = raw_brk(0), wall = PAGE_ALIGN(base) + GAP, refused, allowed;
	void *blocks[BLOCKS], *w;
	int i, from_brk = 0, from_mmap = 0;

	begin("brk-blocked", "a mapping 256 KiB above the heap's start, then brk and malloc");
	take(&s0);
	w = mmap((void *)wall, 64 * KiB, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (w != (void *)wall)
		die("cannot map 64 KiB at %#lx: %s", (unsigned long)wall, strerror(errno));
	say("  brk %#lx, a mapping at %#lx\n", (unsigned long)base, (unsigned long)wall);

	/* The kernel, directly: one page short of the mapping is the limit. */
	refused = raw_brk(wall - PAGE + 1);
	allowed = raw_brk(wall - PAGE);
	say("  brk(2) to %s below the mapping: %s; to one page below it: %s\n",
	    size_str(PAGE - 1), refused == base ? "refused" : "moved",
	    allowed == wall - PAGE ? "moved" : "refused");
	if (raw_brk(base) != base)
		die("cannot move brk back to %#lx", (unsigned long)base);
	take(&s1);
	if (refused == base && allowed == wall - PAGE && s1.mm.brk == base)
		claim("brk-blocked", HOLDS,
		      "a mapping %s above start_brk: brk moves up to a page below it, not a byte more",
		      size_str(GAP));
	else
		claim("brk-blocked", DOES_NOT_HOLD, "brk(2) %s up to the mapping: %s",
		      refused == base ? "refused" : "moved", size_str(refused - base));

	/* The allocator: more than fits below the mapping. */
	for (i = 0; i < BLOCKS; i++) {
		blocks[i] = malloc(BLOCK);
		if (!blocks[i])
			die("malloc(16 KiB) number %d failed", i + 1);
	}
	take(&s2);
	show("32 x malloc(16 KiB)", &s1, &s2);
	for (i = 0; i < BLOCKS; i++) {
		from_brk += in_brk(&s2, blocks[i]);
		from_mmap += in_mmap(&s2, blocks[i]);
	}
	say("  %d blocks from brk (brk stopped at %#llx), %d from mmap\n", from_brk,
	    (unsigned long long)s2.mm.brk, from_mmap);
	if (from_brk + from_mmap != BLOCKS)
		claim("brk-blocked-fallback", DOES_NOT_HOLD, "%d of %d blocks neither from brk nor mmap",
		      BLOCKS - from_brk - from_mmap, BLOCKS);
	else if (from_brk == 0)
		claim("brk-blocked-fallback", HOLDS, "never uses brk: 32 x 16 KiB from mmap");
	else
		claim("brk-blocked-fallback", HOLDS,
		      "32 x 16 KiB: %d from brk (brk %s), %d from mmap; VM %s", from_brk,
		      delta_str(brk_change(&s1, &s2)), from_mmap, delta_str(vm_change(&s1, &s2)));

	/* Again and again: each time the address space grows, by how much. */
	{
		long long grew[3];
		char list[128] = "";
		int n, made, found = 0, small = 0;

		take(&sa);
		for (n = 0; n < 200 && found < 3; n++) {
			void *p = malloc(100 * KiB);

			if (!p)
				die("malloc(100 KiB) number %d failed", n + 1);
			take(&sb);
			if (vm_change(&sa, &sb) > 0) {
				grew[found++] = vm_change(&sa, &sb);
				small += vm_change(&sa, &sb) < (long long)MiB;
			}
			sa = sb;
		}
		made = n;
		for (n = 0; n < found; n++)
			snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", n ? ", " : "",
				 size_str((unsigned long long)grew[n]));
		say("  %d x malloc(100 KiB) more: the address space grew by %s\n", made, list);
		/*
		 * The sizes where they repeat; where they vary from run to run (jemalloc's
		 * extents), only what the claim asks of them: the trace above shows them.
		 */
		for (n = 1; n < found && grew[n] == grew[0]; n++)
			;
		if (!found)
			claim("brk-blocked-again", NOT_APPLICABLE,
			      "brk still blocked, %d x malloc(100 KiB) more never grew the address space",
			      made);
		else if (n == found)
			claim("brk-blocked-again", found == 3 && !small ? HOLDS : DOES_NOT_HOLD,
			      "brk still blocked, malloc(100 KiB) on and on: the next %d growths of the "
			      "address space: %s",
			      found, list);
		else
			claim("brk-blocked-again", found == 3 && !small ? HOLDS : DOES_NOT_HOLD,
			      "brk still blocked, malloc(100 KiB) on and on: of the next %d growths of the "
			      "address space, %d at least 1 MiB (their sizes vary from run to run)",
			      found, found - small);
	}
	return 0;
}
