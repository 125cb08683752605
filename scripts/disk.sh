#!/usr/bin/env bash
# Build the guest's disk: a read-only EROFS image, attached as a virtio block
# device, with every program the guest runs and traces: the example programs
# (PROGS, a directory of static binaries), the heap scenarios (HEAP, one
# directory per allocator), host programs (PROGRAM..., at the same path as on
# the host), your own files (STAGE, from scripts/stage-files.sh), and the
# dynamic loader and every shared library the dynamically linked ones need, at
# the paths the loader looks in. Programs run from it have file-backed text, as
# on any machine (from the initramfs, a tmpfs, it would count as shmem).
# Made by mkfs.erofs as an ordinary user: no root, no loop device.
#   scripts/disk.sh OUTPUT PROGS HEAP STAGE [PROGRAM...]
# STAGE may be an empty string: no files of yours.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ $# -ge 4 ] || {
	echo "usage: $0 OUTPUT PROGS HEAP STAGE [PROGRAM...]" >&2
	exit 2
}
out=$1 progs=$2 heap=$3 stage=$4
shift 4
programs=("$@")

step "build the guest's disk $out"
command -v mkfs.erofs >/dev/null ||
	die "mkfs.erofs not found; run scripts/install-deps.sh (package erofs-utils)"
[ -d "$progs" ] || die "$progs is missing; build the example programs first"
[ -d "$heap" ] || die "$heap is missing; build the heap scenarios first (scripts/build-heap.sh)"
for f in "${programs[@]}"; do [ -x "$f" ] || die "$f is not an executable on this host"; done
[ -z "$stage" ] || [ -d "$stage" ] || die "$stage is missing; stage your files first (scripts/stage-files.sh)"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 755 "$root"
mkdir -p "$root/mmscope/progs" "$root$(dirname "$GUEST_HEAP")"
cp -r "$progs"/. "$root/mmscope/progs/"
cp -r "$heap" "$root$GUEST_HEAP"
for f in "${programs[@]}"; do
	mkdir -p "$root$(dirname "$f")"
	cp -L "$f" "$root$f"
done
if [ -n "$stage" ]; then
	cp -a "$stage"/. "$root/"
	# The command `make trace` runs, read by the guest's init.
	mv "$root/.cmd" "$root/mmscope/trace-cmd"
fi

# The loader and the libraries of every dynamically linked program. ldd fails
# for static programs and other files: nothing to copy.
mapfile -t elves < <(find "$root" -type f -perm -u+x)
for f in "${elves[@]}"; do
	ldd "$f" 2>/dev/null || true
done | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
	while read -r lib; do
		[ -e "$root$lib" ] && continue
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib" || die "cannot copy $lib"
		# Its detached debug symbols, where this machine has them (libc6-dbg): found by
		# build id, as `mmscope trace --stacks` and gdb look for them, they name the
		# library's internal functions (sysmalloc, _int_malloc) in stacks.
		id=$(readelf -n "$lib" 2>/dev/null | awk '/Build ID:/ { print $3 }')
		debug=/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug
		if [ -n "$id" ] && [ -f "$debug" ]; then
			mkdir -p "$root$(dirname "$debug")"
			cp -L "$debug" "$root$debug" || die "cannot copy $debug"
		fi
	done

mkdir -p "$(dirname "$out")"
# Every file root's, timestamps fixed: the same inputs give the same image.
mkfs.erofs --quiet --all-root -T0 "$out.tmp" "$root" || die "mkfs.erofs failed"
mv "$out.tmp" "$out"
