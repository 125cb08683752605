#!/bin/sh
# Run in the guest by `make demo`: the heap scenarios under `mmscope trace`,
# step by step with the address space as each one left it, a real program's
# heap story, and the claims table measured for every allocator. Plots, pages
# to explore (mmscope trace --html) and the table go into the directory $1,
# which comes back to the host.
out=$1
heap=/mmscope/heap
mkdir -p "$out"
cd /tmp

banner() {
	printf '\n======== %s ========\n\n' "$*"
}

# One scenario with glibc: its own account on stdout, the trace on stderr, each
# call with the stack that made it (glibc's functions named by the disk's
# libc6-dbg symbols: malloc, _int_malloc, sysmalloc, sbrk, brk).
show() {
	banner "$1 (glibc $(cat $heap/glibc/VERSION)): $2"
	mmscope trace --stacks --stack-depth 8 --picture --svg "$out/$1.svg" --html "$out/$1.html" \
		-- "$heap/glibc/$1" 2>&1 ||
		return 1
}

status=0
show small "malloc of small blocks moves brk" || status=1
show large "malloc(128 KiB): from the heap's top, then a mapping of its own" || status=1
show dynamic "the mmap threshold rises when a mapped block is freed" || status=1
show trim "free and malloc_trim: when brk goes down" || status=1
show lazy "malloc reserves, memset makes resident" || status=1
show thread "a second thread gets an arena of its own" || status=1
show brk-blocked "a mapping in brk's way" || status=1

banner "the mmap threshold's edge, to the byte (demo/heap/edges.c, one probe each side)"
# Each probe takes the heap's free top, then mallocs: its last calls that
# change something (the heap's first growth, the block's, stdout's buffer).
for n in 131048 131049; do
	echo "malloc($n) after taking the heap's free top: $(EDGES_PROBE="where $n 0" \
		"$heap/glibc/edges" --child | cut -d' ' -f1)"
	EDGES_PROBE="where $n 0" mmscope trace -- "$heap/glibc/edges" --child 2>&1 >/dev/null |
		grep -e '^#' | grep -v 'brk(NULL)' | tail -n 3
done

banner "which code made the pages resident: demo/firsttouch.c under mmscope trace --faults"
# The calls, and the pages first touched between them by each stack (the VMA and
# RSS lines left out).
mmscope trace --faults -o /tmp/firsttouch.txt -- /mmscope/progs/firsttouch || status=1
awk '/^#|^  faults:|^    [+-]|^exit|^summary|^  resident|^    at |^      /' /tmp/firsttouch.txt |
	grep -v -e '^      [-+~] ' -e '^      RSS' -e 'between the calls'

banner "a real program: $(/usr/bin/sort --version | head -1) on 200,000 numbers"
awk 'BEGIN { srand(1); for (i = 0; i < 200000; i++) printf "%d\n", int(rand() * 1000000000) }' >/tmp/numbers
mmscope trace --faults --flame "$out/sort-resident" --picture --svg "$out/sort.svg" \
	--stacks --html "$out/sort.html" \
	-o "$out/sort-trace.txt" -- /usr/bin/sort -n -o /tmp/sorted /tmp/numbers || status=1
# The calls and what they changed, the pages first touched between them, the
# summary and the picture; the RSS lines are in build/demo/sort-trace.txt.
grep -v -e '^      RSS' -e 'between the calls' "$out/sort-trace.txt"
[ "$(wc -l </tmp/sorted)" -eq 200000 ] || { echo "sort did not sort"; status=1; }
echo "sort's resident memory by the code that first touched it, as flame graphs:"
echo "build/demo/sort-resident-peak.svg and build/demo/sort-resident-exit.svg"

banner "the claims, measured for every allocator"
if MMSCOPE_OUT="$out" /mmscope/selftests heap_ >/tmp/heap.tap; then
	cat "$out/claims.md"
else
	grep -v '^# ' /tmp/heap.tap
	status=1
fi
exit $status
