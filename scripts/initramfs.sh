#!/usr/bin/env bash
# Pack the guest initramfs: static busybox, the init script, the module and
# the selftest binary.
#   scripts/initramfs.sh OUTPUT MODULE.ko SELFTESTS
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ $# -eq 3 ] || { echo "usage: $0 OUTPUT MODULE.ko SELFTESTS" >&2; exit 2; }
out=$1 ko=$2 selftests=$3

step "pack initramfs $out"
busybox=/bin/busybox
[ -x "$busybox" ] || die "static busybox not found; run scripts/install-deps.sh (package busybox-static)"
for f in "$ko" "$selftests"; do [ -f "$f" ] || die "$f is missing; build it first"; done

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys,tmp,mmscope}
cp "$busybox" "$root/bin/busybox"
cp "$TOP/scripts/guest-init.sh" "$root/init"
cp "$ko" "$root/mmscope/mmscope.ko"
cp "$selftests" "$root/mmscope/selftests"
chmod 755 "$root/init" "$root/bin/busybox" "$root/mmscope/selftests"
mkdir -p "$(dirname "$out")"
(cd "$root" && find . -print0 | cpio --null -o -H newc --owner=0:0 --quiet | gzip -1) >"$out.tmp" ||
	die "cpio/gzip failed"
mv "$out.tmp" "$out"
