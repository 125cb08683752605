#!/usr/bin/env bash
# Pack the guest initramfs: static busybox, the init script, the module, the
# selftests, the mmscope command and the 32-bit ABI check: the harness, all
# static. The programs the guest runs and traces are on its disk
# (scripts/disk.sh), so that their text is file-backed.
#   scripts/initramfs.sh OUTPUT MODULE.ko SELFTESTS COMPAT32 MMSCOPE
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ $# -eq 5 ] || {
	echo "usage: $0 OUTPUT MODULE.ko SELFTESTS COMPAT32 MMSCOPE" >&2
	exit 2
}
out=$1 ko=$2 selftests=$3 compat32=$4 mmscope=$5

step "pack initramfs $out"
busybox=/bin/busybox
[ -x "$busybox" ] || die "static busybox not found; run scripts/install-deps.sh (package busybox-static)"
for f in "$ko" "$selftests" "$compat32" "$mmscope"; do [ -f "$f" ] || die "$f is missing; build it first"; done

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# mktemp makes the directory 0700: the guest's / must let every user in.
chmod 755 "$root"
mkdir -p "$root"/{bin,dev,proc,sys,tmp,disk,files,mmscope}
cp "$busybox" "$root/bin/busybox"
cp "$TOP/scripts/guest-init.sh" "$root/init"
mkdir -p "$root/etc/udev/rules.d" && cp "$TOP/udev/60-mmscope.rules" "$root/etc/udev/rules.d/"
cp "$TOP/scripts/guest-docs.sh" "$root/mmscope/docs.sh"
cp "$TOP/scripts/guest-demo.sh" "$root/mmscope/demo.sh"
cp "$ko" "$root/mmscope/mmscope.ko"
cp "$selftests" "$root/mmscope/selftests"
cp "$compat32" "$root/mmscope/compat32"
cp "$mmscope" "$root/bin/mmscope"
chmod 755 "$root/init" "$root/bin/busybox" "$root/mmscope/selftests" "$root/mmscope/compat32" \
	"$root/bin/mmscope"
mkdir -p "$(dirname "$out")"
(cd "$root" && find . -print0 | cpio --null -o -H newc --owner=0:0 --quiet | gzip -1) >"$out.tmp" ||
	die "cpio/gzip failed"
mv "$out.tmp" "$out"
