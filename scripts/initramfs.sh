#!/usr/bin/env bash
# Pack the guest initramfs: static busybox, the init script, the module, the
# selftests, the mmscope command, the 32-bit ABI check, the example programs
# (every file of PROGS, a directory of static binaries), the heap scenarios
# (HEAP, one directory per allocator, from scripts/build-heap.sh), and host
# programs to trace (PROGRAM..., at the same path as on the host). The
# dynamic loader and every shared library the dynamically linked ones need
# come along from the host.
#   scripts/initramfs.sh OUTPUT MODULE.ko SELFTESTS COMPAT32 MMSCOPE PROGS HEAP [PROGRAM...]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ $# -ge 7 ] || {
	echo "usage: $0 OUTPUT MODULE.ko SELFTESTS COMPAT32 MMSCOPE PROGS HEAP [PROGRAM...]" >&2
	exit 2
}
out=$1 ko=$2 selftests=$3 compat32=$4 mmscope=$5 progs=$6 heap=$7
shift 7
programs=("$@")

step "pack initramfs $out"
busybox=/bin/busybox
[ -x "$busybox" ] || die "static busybox not found; run scripts/install-deps.sh (package busybox-static)"
for f in "$ko" "$selftests" "$compat32" "$mmscope"; do [ -f "$f" ] || die "$f is missing; build it first"; done
[ -d "$progs" ] || die "$progs is missing; build the example programs first"
[ -d "$heap" ] || die "$heap is missing; build the heap scenarios first (scripts/build-heap.sh)"
for f in "${programs[@]}"; do [ -x "$f" ] || die "$f is not an executable on this host"; done

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# mktemp makes the directory 0700: the guest's / must let every user in.
chmod 755 "$root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,mmscope/progs}
cp "$busybox" "$root/bin/busybox"
cp "$TOP/scripts/guest-init.sh" "$root/init"
mkdir -p "$root/etc/udev/rules.d" && cp "$TOP/udev/60-mmscope.rules" "$root/etc/udev/rules.d/"
cp "$TOP/scripts/guest-docs.sh" "$root/mmscope/docs.sh"
cp "$TOP/scripts/guest-demo.sh" "$root/mmscope/demo.sh"
cp "$ko" "$root/mmscope/mmscope.ko"
cp "$selftests" "$root/mmscope/selftests"
cp "$compat32" "$root/mmscope/compat32"
cp "$mmscope" "$root/bin/mmscope"
cp -r "$progs"/. "$root/mmscope/progs/"
cp -r "$heap" "$root/mmscope/heap"
for f in "${programs[@]}"; do
	mkdir -p "$root$(dirname "$f")"
	cp -L "$f" "$root$f"
done

# The loader and the libraries of every dynamically linked program, at the
# paths the loader looks in. ldd fails for static programs: nothing to copy.
step "add shared libraries to $out"
mapfile -t elves < <(find "$root/mmscope" "${programs[@]/#/$root}" -type f -perm -u+x)
for f in "${elves[@]}"; do
	ldd "$f" 2>/dev/null || true
done | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u |
	while read -r lib; do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib" || die "cannot copy $lib"
	done
chmod 755 "$root/init" "$root/bin/busybox" "$root/mmscope/selftests" "$root/mmscope/compat32" \
	"$root/bin/mmscope"
mkdir -p "$(dirname "$out")"
(cd "$root" && find . -print0 | cpio --null -o -H newc --owner=0:0 --quiet | gzip -1) >"$out.tmp" ||
	die "cpio/gzip failed"
mv "$out.tmp" "$out"
