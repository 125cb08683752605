#!/usr/bin/env bash
# `make trace` as a person uses it, run by `make test`: bad input stops before
# anything is built or booted, with one sentence each; then a program this
# project has never seen (written and built here, dynamically linked, in a
# temporary directory) is traced in the guest with a data file of its own, and
# the trace, the plot and the picture come back, with the program's text
# counted as file-backed memory.
#   scripts/test-user-program.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"

cd "$TOP"
MAKE=${MAKE:-make}
OUT=$TOP/build
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

# not_ok WHAT: one failed check.
not_ok() {
	printf 'not ok - %s\n' "$*"
	failed=1
}

# bad CMD NEEDLE [FILES]: make trace refuses CMD in one sentence holding NEEDLE,
# before building or booting anything.
bad() {
	local cmd=$1 needle=$2 files=${3:-} out status=0
	out=$("$MAKE" -s --no-print-directory trace CMD="$cmd" FILES="$files" 2>&1) || status=$?
	if [ "$status" -eq 0 ]; then
		not_ok "make trace CMD='$cmd' was accepted"
	elif ! grep -qF -- "$needle" <<<"$out"; then
		not_ok "make trace CMD='$cmd' says '$needle': $out"
	elif [ "$(grep -c '^mmscope: ' <<<"$out")" -ne 1 ] || grep -q -e '^==>' -e 'boot the guest' <<<"$out"; then
		not_ok "make trace CMD='$cmd' says one sentence and builds nothing: $out"
	else
		printf 'ok - make trace CMD=%q: %s\n' "$cmd" "$(grep '^mmscope: ' <<<"$out")"
	fi
}

step "make trace refuses bad input"
mkdir "$tmp/dir"
printf '#!/usr/bin/python3\nprint("hello")\n' >"$tmp/hello.py"
chmod +x "$tmp/hello.py"
printf 'int main(void) { return 0; }\n' >"$tmp/tiny.c"
gcc -m32 -o "$tmp/tiny32" "$tmp/tiny.c" || die "gcc -m32 cannot build the 32-bit sample"
# A foreign binary: the same ELF with e_machine set to AArch64 (183).
cp "$tmp/tiny32" "$tmp/foreign"
printf '\002\001\001' | dd of="$tmp/foreign" bs=1 seek=4 conv=notrunc status=none
printf '\267\000' | dd of="$tmp/foreign" bs=1 seek=18 conv=notrunc status=none
echo "not a program" >"$tmp/notes.txt"
chmod +x "$tmp/notes.txt"
bad "$tmp/missing" "no such file"
bad "no-such-program-anywhere" "no such program on your PATH"
bad "$tmp/dir" "is a directory"
bad "$tmp/hello.py" "a script for /usr/bin/python3"
bad "$tmp/tiny32" "32-bit x86 program"
bad "$tmp/foreign" "another architecture (AArch64)"
bad "$tmp/notes.txt" "neither a program"
bad "/bin/true" "no such file" "$tmp/no-data.txt"
bad "/bin/true 'unclosed" "check its quotes"
bad "   " "give the program to trace"
out=$("$MAKE" -s --no-print-directory trace 2>&1) && not_ok "make trace without CMD was accepted" ||
	grep -q "give the program to trace" <<<"$out" || not_ok "make trace without CMD: $out"

step "make trace on a program of yours"
# Dynamically linked, built here: the project has never seen it. It reads its
# data file, makes a 3 MiB mapping of its own and grows the heap.
cat >"$tmp/yours.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
	char line[64] = "";
	FILE *f = argc > 1 ? fopen(argv[1], "r") : NULL;

	if (!f || !fgets(line, sizeof(line), f))
		return 3;
	char *map = mmap(NULL, 3 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *heap = malloc(64 << 10);
	if (map == MAP_FAILED || !heap)
		return 4;
	memset(map, 1, 1 << 20);
	memset(heap, 2, 64 << 10);
	printf("yours: read %s", line);
	return 0;
}
EOF
gcc -O2 -o "$tmp/yours" "$tmp/yours.c" || die "gcc cannot build the sample program"
# grep reads all of ldd's output: with -q it would stop at the match, and under
# pipefail ldd's SIGPIPE would fail the test now and then.
ldd "$tmp/yours" | grep libc.so.6 >/dev/null || die "the sample program is not dynamically linked"
# A data file whose name has a space: the command and FILES quote it as a shell
# would, and the guest's program gets it as one word.
echo "data-for-mmscope" >"$tmp/in put.txt"
rm -rf "$OUT/trace"
if ! "$MAKE" --no-print-directory trace CMD="$tmp/yours '$tmp/in put.txt'" FILES="'$tmp/in put.txt'" \
	>"$tmp/make.log" 2>&1; then
	tail -30 "$tmp/make.log"
	die "make trace on the sample program failed (log above)"
fi
trace=$OUT/trace/trace.txt
log=$OUT/guest-trace.log
if [ -s "$trace" ]; then printf 'ok - the trace came back (%s lines)\n' "$(wc -l <"$trace")"; else not_ok "no trace in $trace"; fi
grep -q '^<svg' "$OUT/trace/trace.svg" 2>/dev/null && echo "ok - the plot came back" ||
	not_ok "no SVG plot in $OUT/trace/trace.svg"
grep -q '<title>mmscope trace: ' "$OUT/trace/trace.html" 2>/dev/null && echo "ok - the page came back" ||
	not_ok "no page in $OUT/trace/trace.html"
grep -q 'yours: read data-for-mmscope' "$log" && echo "ok - the program read its data file in the guest" ||
	not_ok "the program's output is not in $log"
grep -q 'the command ended with status 0' "$log" && echo "ok - the program exited 0" ||
	not_ok "the program did not exit 0 (see $log)"
grep -q 'mmap(NULL, 3145728, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS' "$trace" &&
	echo "ok - the trace shows the program's own 3 MiB mapping" ||
	not_ok "the program's 3 MiB mmap is not in the trace"
grep -q 'libc.so.6' "$trace" && echo "ok - the trace shows libc mapped" || not_ok "libc.so.6 is not in the trace"
grep -q '/files/yours' "$trace" && echo "ok - the picture names the program" ||
	not_ok "the program's mappings are not named in the trace"
# Its text and libc's are file-backed on the guest's disk: RssFile, no RssShmem.
rss=$(grep -A1 '^exit pid' "$trace" | grep 'RSS anon' | tail -1)
if [[ "$rss" =~ file\ ([0-9.]+)\ ([KMG]iB|B).*shmem\ 0\ B ]] && [ "${BASH_REMATCH[1]}" != 0 ]; then
	echo "ok - at exit its text counts as file RSS:$rss"
else
	not_ok "at exit the RSS line shows file memory and no shmem: '$rss'"
fi
[ "$failed" -eq 0 ] || die "make trace does not work as documented (see above)"
# For the README (`make docs`): the exec, the program's own calls (from its
# second brk(NULL), after the loader's work), the summary and the picture.
{
	sed -n '1,2p' "$trace"
	echo "...                      (the loader maps libc: see build/trace/trace.txt)"
	awk '/ brk\(NULL\) = / { n++ } n >= 2' "$trace"
} >"$OUT/trace/readme.txt"
echo "mmscope: make trace works on a program of yours"
