#!/usr/bin/env bash
# How scripts/kernel.sh chooses its kernel when a suite no longer carries the
# series the project prefers (backports keep only their newest series): it
# says so and moves on to the next supported one; with none left it fails with
# a sentence saying what it tried; an archive it cannot reach stops it at once. Runs on the host, in a scratch cache that
# holds the oldest supported series' source (linked from the real cache, so
# nothing is downloaded but package lists) and not the newest.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

oldest=${KERNELS[-1]%%:*}
newest=${KERNELS[0]%%:*}
step "test the kernel choice: $newest gone from its suite"
[ -f "$CACHE_DIR/src-$oldest/linux-source-$oldest/.mmscope-unpacked" ] ||
	die "the source of $oldest is not in $CACHE_DIR; run make test-compat, which fetches it"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
ln -s "$CACHE_DIR/src-$oldest" "$scratch/src-$oldest"
# A suite that exists but has never carried a Rust-enabled kernel.
gone="$newest:bookworm $oldest:${KERNELS[-1]#*:}"
got=$(env -u MMSCOPE_KERNEL MMSCOPE_CACHE="$scratch" MMSCOPE_KERNELS="$gone" \
	"$TOP/scripts/kernel.sh" --which 2>"$scratch/log") ||
	die "kernel.sh failed instead of moving on to $oldest: $(tail -n 1 "$scratch/log")"
[ "$got" = "$oldest ${KERNELS[-1]#*:}" ] || die "kernel.sh chose '$got', not $oldest"
grep -q "bookworm has no linux-source-$newest" "$scratch/log" ||
	die "kernel.sh did not say that bookworm has no linux-source-$newest"
grep -q "using linux-source-$oldest" "$scratch/log" || die "kernel.sh did not say which kernel it used"
if env -u MMSCOPE_KERNEL MMSCOPE_CACHE="$scratch" MMSCOPE_KERNELS="$newest:bookworm" \
	"$TOP/scripts/kernel.sh" --which >/dev/null 2>"$scratch/log"; then
	die "kernel.sh succeeded with no kernel to be had"
fi
grep -q "no supported kernel could be fetched (tried: linux-source-$newest from bookworm" "$scratch/log" ||
	die "kernel.sh's failure does not say what it tried: $(tail -n 1 "$scratch/log")"
# An archive that cannot be read is an error, not a kernel gone: no moving on.
rm -f "$scratch/src-$oldest"
if env -u MMSCOPE_KERNEL MMSCOPE_CACHE="$scratch" MMSCOPE_DEBIAN_MIRROR=http://mirror.invalid/debian \
	"$TOP/scripts/kernel.sh" --which >/dev/null 2>"$scratch/log"; then
	die "kernel.sh succeeded with an archive it cannot reach"
fi
grep -q "apt-get update of ${KERNELS[0]#*:} from http://mirror.invalid/debian failed" "$scratch/log" ||
	die "kernel.sh took an unreachable archive for a kernel gone: $(tail -n 1 "$scratch/log")"
echo "kernel choice: with $newest gone it used $oldest; with nothing left, or the archive out of" \
	"reach, it said what it tried and stopped" >&2
