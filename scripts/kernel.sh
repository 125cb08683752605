#!/usr/bin/env bash
# Fetch Debian's linux-source of a supported kernel series (scripts/lib.sh:
# KERNELS, newest first), configure it from tinyconfig plus the committed
# fragments and build bzImage and modules, in a cache outside the repository
# keyed by the exact kernel version, the fragments and the toolchain. Prints the
# build directory (the KDIR for out-of-tree modules) on stdout; all progress
# goes to stderr.
#
#   scripts/kernel.sh          fetch and build if needed, print the build dir
#   scripts/kernel.sh --path   print the build dir only if it is already built
#   scripts/kernel.sh --which  fetch the source if needed, print its series
#                              and suite, build nothing
#
# The newest series whose source is unpacked in the cache, or else can be
# fetched from its suite, is used: when a suite drops a series (backports keep
# only their newest), the next one is tried, and each miss is said.
#   MMSCOPE_KERNEL=SERIES      only that supported series (`oldest`: the last)
#   MMSCOPE_KERNELS="S:SUITE ..." instead of the supported list (to try a suite)
#   MMSCOPE_KERNEL_FRAGMENTS   the fragments (default: configs/base.config)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

read -r -a FRAGMENTS <<<"${MMSCOPE_KERNEL_FRAGMENTS:-configs/base.config}"
if [ -n "${MMSCOPE_KERNELS:-}" ]; then
	read -r -a KERNELS <<<"$MMSCOPE_KERNELS"
fi
case "${MMSCOPE_KERNEL:-}" in
"") CANDIDATES=("${KERNELS[@]}") ;;
oldest) CANDIDATES=("${KERNELS[-1]}") ;;
*)
	CANDIDATES=()
	for k in "${KERNELS[@]}"; do
		[ "${k%%:*}" = "$MMSCOPE_KERNEL" ] && CANDIDATES+=("$k")
	done
	[ ${#CANDIDATES[@]} -gt 0 ] ||
		die "kernel $MMSCOPE_KERNEL is not supported; the supported ones are ${KERNELS[*]%%:*}"
	;;
esac

# use_kernel SERIES SUITE: the kernel the steps below work on.
use_kernel() {
	KERNEL_SERIES=$1
	KERNEL_SUITE=$2
	SRC_ROOT=$CACHE_DIR/src-$KERNEL_SERIES
	SRC=$SRC_ROOT/linux-source-$KERNEL_SERIES
	KMAKE=(make -s -C "$SRC" "LLVM=-$LLVM_VERSION")
}

# fetch_source: download and unpack linux-source-$KERNEL_SERIES once. Returns
# 1, having said why, when $KERNEL_SUITE does not carry it; any other failure
# dies. (Called as an `if` condition, where `set -e` is off: each step checks.)
fetch_source() {
	[ -f "$SRC/.mmscope-unpacked" ] && return
	step "fetch linux-source-$KERNEL_SERIES from $KERNEL_SUITE"
	local apt_dir=$CACHE_DIR/apt
	if ! apt_download "$KERNEL_SUITE" "$apt_dir" "linux-source-$KERNEL_SERIES"; then
		echo "mmscope: $KERNEL_SUITE has no linux-source-$KERNEL_SERIES (any more)" >&2
		rm -rf "$apt_dir"
		return 1
	fi
	rm -rf "$SRC_ROOT"
	mkdir -p "$SRC_ROOT" || die "cannot create $SRC_ROOT"
	step "unpack linux-source-$KERNEL_SERIES"
	dpkg-deb -x "$apt_dir"/linux-source-"$KERNEL_SERIES"_*.deb "$apt_dir/deb" || die "dpkg-deb -x failed"
	tar -xf "$apt_dir/deb/usr/src/linux-source-$KERNEL_SERIES.tar.xz" -C "$SRC_ROOT" ||
		die "untar of linux-source-$KERNEL_SERIES.tar.xz failed"
	rm -rf "$apt_dir" || die "cannot remove $apt_dir"
	touch "$SRC/.mmscope-unpacked" || die "cannot mark $SRC unpacked"
}

# build_dir: the cache key, from the exact version, the fragments and the tools.
build_dir() {
	local version key
	version=$("${KMAKE[@]}" kernelversion) || die "make kernelversion failed in $SRC"
	case "$version" in
	"$KERNEL_SERIES" | "$KERNEL_SERIES".*) ;;
	*) die "unpacked kernel is $version, expected $KERNEL_SERIES.x" ;;
	esac
	key=$({
		(cd "$TOP" && cat "${FRAGMENTS[@]}")
		rustc --version
		bindgen --version
		"clang-$LLVM_VERSION" --version | head -n 1
	} | sha256sum | cut -c1-12)
	echo "$CACHE_DIR/build-$version-$key"
}

if [ "${1:-}" = --path ]; then
	for k in "${CANDIDATES[@]}"; do
		use_kernel "${k%%:*}" "${k#*:}"
		[ -f "$SRC/.mmscope-unpacked" ] || continue
		dir=$(build_dir)
		[ -f "$dir/.mmscope-built" ] && echo "$dir" && exit 0
	done
	exit 0
fi

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.lock"
flock 9
# The newest candidate whose source is here already, or can be fetched.
found=
tried=()
for k in "${CANDIDATES[@]}"; do
	use_kernel "${k%%:*}" "${k#*:}"
	if fetch_source; then
		found=1
		break
	fi
	tried+=("linux-source-$KERNEL_SERIES from $KERNEL_SUITE")
done
if [ -z "$found" ]; then
	STEP="find a kernel source"
	die "no supported kernel could be fetched (tried: ${tried[*]}; see above). Check the network and MMSCOPE_DEBIAN_MIRROR, or build against your own Rust-enabled kernel: make KDIR=/path/to/its/build"
fi
if [ ${#tried[@]} -gt 0 ]; then
	echo "mmscope: using linux-source-$KERNEL_SERIES from $KERNEL_SUITE instead of ${tried[*]}" >&2
fi
if [ "${1:-}" = --which ]; then
	echo "$KERNEL_SERIES $KERNEL_SUITE"
	exit 0
fi
BUILD=$(build_dir)
if [ -f "$BUILD/.mmscope-built" ]; then
	step "reuse cached kernel $BUILD (linux-source-$KERNEL_SERIES, $KERNEL_SUITE)"
	echo "$BUILD"
	exit 0
fi

step "check the Rust toolchain (make rustavailable)"
"${KMAKE[@]}" rustavailable >&2 || die "the kernel does not accept this Rust toolchain (see above)"

step "configure: tinyconfig + ${FRAGMENTS[*]}"
rm -rf "$BUILD"
mkdir -p "$BUILD"
"${KMAKE[@]}" O="$BUILD" tinyconfig >&2 || die "make tinyconfig failed"
frags=()
for f in "${FRAGMENTS[@]}"; do frags+=("$TOP/$f"); done
(cd "$BUILD" && "$SRC/scripts/kconfig/merge_config.sh" -m -O "$BUILD" "$BUILD/.config" "${frags[@]}") >/dev/null ||
	die "merge_config.sh failed"
"${KMAKE[@]}" O="$BUILD" olddefconfig >&2 || die "make olddefconfig failed"
# Every option a fragment asks for must survive olddefconfig: a dropped
# CONFIG_RUST (toolchain not accepted) or a renamed symbol fails here, not later.
for f in "${frags[@]}"; do
	grep -E '^(CONFIG_[A-Za-z0-9_]+=|# CONFIG_[A-Za-z0-9_]+ is not set)' "$f" | while read -r line; do
		grep -qxF -- "$line" "$BUILD/.config" ||
			die "$line from $(basename "$f") did not survive olddefconfig"
	done
done

step "build bzImage and modules (about 8 minutes on 2 cores)"
"${KMAKE[@]}" O="$BUILD" -j"$(nproc)" bzImage modules >&2 || die "kernel build failed (see above)"
touch "$BUILD/.mmscope-built"
echo "$BUILD"
