#!/usr/bin/env bash
# Build every heap scenario (demo/heap/*.c) once per allocator, for the guest:
#   OUTDIR/ALLOCATOR/SCENARIO   the program
#   OUTDIR/ALLOCATOR/VERSION    the allocator's Debian package version
# glibc, and the allocators that replace its malloc (jemalloc, mimalloc), are
# linked dynamically, as real programs are; musl statically with musl-gcc.
# glibc is built a second time for the second glibc (scripts/lib.sh:
# SECOND_GLIBC, fetched by scripts/glibc.sh): the same sources and flags,
# linked against this host's glibc as the first column's are, but naming that
# glibc's own loader (PT_INTERP) and library directory (RUNPATH) where the
# guest's disk has them, OUTDIR/glibc-SERIES/lib: the guest runs them on it,
# beside its own glibc, and a program that executes itself again stays on it.
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

# The second glibc.
series=${SECOND_GLIBC%%:*}
step "build the heap scenarios with glibc $series"
glibc=$("$TOP/scripts/glibc.sh") || die "scripts/glibc.sh could not fetch glibc $series"
from=$glibc/usr/lib/x86_64-linux-gnu
name=glibc-$series
lib=$GUEST_HEAP/$name/lib
# One second glibc: a build for an earlier SECOND_GLIBC goes.
rm -rf "$out"/glibc-*
mkdir -p "$out/$name/lib"
progs=()
for src in "$TOP"/demo/heap/*.c; do
	prog=$(basename "$src" .c)
	# DT_RPATH, not DT_RUNPATH: LD_LIBRARY_PATH cannot move it back to the host's glibc.
	gcc "${CFLAGS[@]}" -DALLOCATOR='"glibc"' -DGLIBC_MALLOC -o "$out/$name/$prog" "$src" \
		-Wl,--dynamic-linker="$lib/ld-linux-x86-64.so.2" -Wl,-rpath,"$lib" -Wl,--disable-new-dtags ||
		die "gcc could not build demo/heap/$prog.c for glibc $series"
	progs+=("$out/$name/$prog")
done
# Statically: that glibc's own start files and libc.a (-B finds crt1.o there).
gcc -static -B "$from/" -L "$from" "${CFLAGS[@]}" -DALLOCATOR='"glibc"' -DGLIBC_MALLOC \
	-o "$out/$name/heap-before-main-static" "$TOP/demo/heap/heap-before-main.c" ||
	die "gcc could not build demo/heap/heap-before-main.c statically against glibc $series"
# Its loader and the libraries the programs need.
needed=$(readelf -d "${progs[@]}" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u) ||
	die "readelf could not read the programs built for glibc $series"
for so in ld-linux-x86-64.so.2 $needed; do
	cp -L "$from/$so" "$out/$name/lib/" || die "glibc $series has no $so"
done
cp "$glibc/VERSION" "$out/$name/VERSION"
