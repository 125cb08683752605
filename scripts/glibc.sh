#!/usr/bin/env bash
# Fetch the second glibc the heap scenarios run on (scripts/lib.sh:
# SECOND_GLIBC), once: Debian's libc6 and libc6-dev of that series, unpacked
# into a cache outside the repository. Nothing is installed over the host's
# glibc. Prints the directory (usr/lib/x86_64-linux-gnu inside it holds the
# loader, the shared libraries and, for static builds, libc.a and crt1.o; the
# file VERSION the package's version) on stdout; progress goes to stderr.
#   scripts/glibc.sh
set -euo pipefail
. "$(dirname "$0")/lib.sh"

series=${SECOND_GLIBC%%:*} suite=${SECOND_GLIBC#*:}
dir=$CACHE_DIR/glibc-$series
if [ ! -f "$dir/VERSION" ]; then
	step "fetch glibc $series (libc6, libc6-dev) from $suite"
	apt_dir=$CACHE_DIR/apt-glibc
	# Its output to stderr: stdout is the directory, for the caller.
	apt_download "$suite" "$apt_dir" libc6 libc6-dev >&2 ||
		die "$suite has no libc6 or libc6-dev package; update SECOND_GLIBC in scripts/lib.sh"
	version=$(dpkg-deb -f "$apt_dir"/libc6_*.deb Version) || die "cannot read the libc6 package's version"
	case "$version" in
	"$series"-*) ;;
	*) die "$suite's libc6 is $version now, not glibc $series; update SECOND_GLIBC in scripts/lib.sh" ;;
	esac
	step "unpack glibc $version"
	rm -rf "$dir"
	for deb in "$apt_dir"/libc6_*.deb "$apt_dir"/libc6-dev_*.deb; do
		dpkg-deb -x "$deb" "$dir" || die "dpkg-deb -x $deb failed"
	done
	[ -x "$dir/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" ] ||
		die "libc6 $version has no usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
	rm -rf "$apt_dir" || die "cannot remove $apt_dir"
	echo "$version" >"$dir/VERSION" || die "cannot write $dir/VERSION"
fi
echo "$dir"
