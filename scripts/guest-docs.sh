#!/bin/sh
# Run in the guest by `make docs`: the example output the README shows, from
# real runs of the mmscope command. Writes into the directory $1.
set -e
out=$1
mkdir -p "$out"
cd /tmp
mmscope maps self >"$out/maps.txt"
mmscope trace -o "$out/trace.txt" --svg "$out/trace.svg" -- malloc-touch >"$out/trace-stdout.txt"
mmscope lazy 256K --rows 8 >"$out/lazy.txt"
mmscope lazy 256K --rows 4 --pattern random >"$out/lazy-random.txt"
# Ordinary users, by the selftests that switch to them: one right after insmod,
# then two users' allowances (it reloads the module with max_mb=1).
for t in user_traces_own_program_after_insmod one_user_cannot_starve_another; do
	MMSCOPE_KO=/mmscope/mmscope.ko /mmscope/selftests "$t" >/tmp/users.tap || { cat /tmp/users.tap; exit 1; }
	grep -e '^ok ' -e '^# [a-z]' /tmp/users.tap
done >"$out/users.txt"
# The claims table: every heap scenario, every allocator (the selftests write claims.md).
MMSCOPE_OUT=$out /mmscope/selftests heap_ >"$out/heap.tap" || { grep -v '^# ' "$out/heap.tap"; exit 1; }
rm "$out/heap.tap"
# A heap scenario as `make demo` shows it (the first calls are the dynamic
# loader's), and its plot; then a real program's heap story.
heap=/mmscope/heap/glibc
mmscope trace --picture -- "$heap/large" >"$out/heap-large.txt" 2>&1
mmscope trace --svg "$out/heap-trim.svg" -o /dev/null -- "$heap/trim" >/dev/null
# The same large scenario as a page to explore, with stacks, and its JSON: the host
# takes the README's screenshot of it (scripts/page-shot.py).
mmscope trace --stacks --json -o "$out/heap-large.jsonl" --html "$out/heap-large.html" -- \
	"$heap/large" >/dev/null
awk 'BEGIN { srand(1); for (i = 0; i < 200000; i++) printf "%d\n", int(rand() * 1000000000) }' >/tmp/numbers
mmscope trace -o /tmp/sort-trace.txt -- /usr/bin/sort -n -o /tmp/sorted /tmp/numbers
grep -v -e '^      RSS' -e 'between the calls' /tmp/sort-trace.txt >"$out/sort.txt"
# -f: a shell pipeline, every process with its pid (the lines of the processes'
# lives only: starts, execs, ends).
mmscope trace -f -o /tmp/follow.txt -- sh -c '/usr/bin/sort -n /tmp/numbers | tail -n 1' >/dev/null
grep -e '^exec' -e '^fork' -e '^vfork' -e '^clone' -e '^end' -e '^exit' -e '^summary' -e '^  [a-z]' \
	/tmp/follow.txt >"$out/follow.txt"
# -p: attach to a running process (it maps and unmaps a page every 100 ms) for a
# second, then SIGINT as Ctrl-C would send: the first two calls, then the summary.
/mmscope/selftests --helper ticker /tmp/ticker-count </dev/null >/dev/null &
ticker=$!
sleep 1
timeout -s INT 1 mmscope trace -p "$ticker" 2>/tmp/attach.txt || true
kill "$ticker"
awk '/^#3 /{skip=1} /^summary/{if (skip) print "..."; skip=0} !skip' /tmp/attach.txt >"$out/attach.txt"
# --faults: demo/firsttouch.c, static: the calls and the pages first touched
# between them, from malloc's first growth of the heap to its fork; then sort's resident
# memory by the code that first touched it: the summary and the flame graphs.
mmscope trace --faults -o /tmp/firsttouch.txt -- /mmscope/progs/firsttouch >/dev/null
awk '/^#|^  faults:|^    [+-]|^exit/' /tmp/firsttouch.txt |
	awk '/grow_heap/ && !on { on = 1; print held } /^#|^  faults:/ { held = $0 } on' |
	awk '/^fork/ { exit } { print }' >"$out/faults.txt"
mmscope trace --faults --flame "$out/sort-resident" -o /tmp/sort-faults.txt -- \
	/usr/bin/sort -n -o /tmp/sorted /tmp/numbers
sed -n '/^summary/,$p' /tmp/sort-faults.txt >"$out/sort-faults.txt"
# --kernel: demo/kernelpaths.c, static. Its calls from main on (after the
# start-up's RELRO mprotect) to its mprotect, seven levels deep; then, at the
# default depth, the page faults before each of its two madvise calls (the
# first touches of anonymous pages, then of the module's). RSS lines left out.
mmscope trace --kernel --kernel-depth 7 -o /tmp/kernel7.txt -- /mmscope/progs/kernelpaths >/dev/null
awk '/^#[0-9]+ / && relro { on = 1 }
	/^#[0-9]+ .* mprotect\(/ && !relro { relro = 1 }
	/^      kernel, [0-9]+ page fault/ && on { exit }
	on && !/^      RSS/ && !/^      between the calls/ { print }' /tmp/kernel7.txt >"$out/kernel.txt"
mmscope trace --kernel -o /tmp/kernel4.txt -- /mmscope/progs/kernelpaths >/dev/null
awk '/^      kernel, [0-9]+ page fault/ { buf = $0; keep = 1; next }
	/^#[0-9]+ / { if (keep && /madvise\(/) { if (n) print "..."; print buf; print; if (++n == 2) exit }
		keep = 0; next }
	keep && !/^      RSS/ && !/^      between the calls/ { buf = buf "\n" $0 }' \
	/tmp/kernel4.txt >"$out/kernel-faults.txt"
# --stacks: demo/stacks.c, linked dynamically; the first call each of its functions made.
mmscope trace --stacks -o /tmp/stacks.txt -- /mmscope/progs/stacks-dynamic >/dev/null
awk '/^#/ { if (block != "" && keep) print block; block = $0; keep = 0; skip = /\(NULL\) =/; next }
	/^exit|^summary/ { if (block != "" && keep) print block; block = ""; next }
	/RSS|between the calls/ { next }
	{ block = block "\n" $0
	  for (f in want) if (!skip && index($0, "> " f " ") && !(f in seen)) { keep = 1; seen[f] = 1 } }
	BEGIN { want["grow_heap"]; want["map_direct"]; want["start_thread"] }' \
	/tmp/stacks.txt >"$out/stacks.txt"
