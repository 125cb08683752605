#!/usr/bin/env bash
# Build every heap scenario (demo/heap/*.c) once per allocator, for the guest:
#   OUTDIR/ALLOCATOR/SCENARIO   the program
#   OUTDIR/ALLOCATOR/VERSION    the allocator's Debian package version
# glibc, and the allocators that replace its malloc (jemalloc, mimalloc), are
# linked dynamically, as real programs are; musl statically with musl-gcc.
#   scripts/build-heap.sh OUTDIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
out=$1

# ALLOCATOR  compiler  Debian package (for the version)  extra flags
ALLOCATORS=(
	"glibc gcc libc6 -DGLIBC_MALLOC"
	"musl musl-gcc musl -static -idirafter /usr/include -idirafter /usr/include/x86_64-linux-gnu"
	"jemalloc gcc libjemalloc2 -ljemalloc"
	"mimalloc gcc libmimalloc2.0 -lmimalloc"
)
CFLAGS=(-O1 -fno-builtin -Wall -Wextra -Werror -pthread -I "$TOP/include/uapi")

for spec in "${ALLOCATORS[@]}"; do
	read -r name cc package flags <<<"$spec"
	step "build the heap scenarios with $name"
	command -v "$cc" >/dev/null || die "$cc not found; run scripts/install-deps.sh"
	version=$(dpkg-query -W -f='${Version}' "$package" 2>/dev/null) ||
		die "package $package is not installed; run scripts/install-deps.sh"
	mkdir -p "$out/$name"
	for src in "$TOP"/demo/heap/*.c; do
		prog=$(basename "$src" .c)
		# shellcheck disable=SC2086 # flags holds several words
		"$cc" "${CFLAGS[@]}" -DALLOCATOR="\"$name\"" -o "$out/$name/$prog" "$src" $flags ||
			die "$cc could not build demo/heap/$prog.c"
	done
	echo "$version" >"$out/$name/VERSION"
done
# heap-before-main compares glibc's dynamic build with a static one beside it.
gcc -static "${CFLAGS[@]}" -DALLOCATOR='"glibc"' -DGLIBC_MALLOC \
	-o "$out/glibc/heap-before-main-static" "$TOP/demo/heap/heap-before-main.c" ||
	die "gcc could not build demo/heap/heap-before-main.c statically"
