# Shared settings and helpers for the mmscope build and test scripts.
# Sourced, not executed.

# The Rust-enabled kernels mmscope supports, newest first, as SERIES:SUITE: the
# Debian suite whose linux-source-SERIES package carries the series. The one
# place that names them: scripts/kernel.sh uses the newest it can have, `make
# test-compat` the oldest (the last line). When Debian ships the next series,
# add its line on top, and a shim in rust/compat.rs for each kernel crate API
# it changed (the module's build says which).
KERNELS=(
	7.3:trixie-backports
	7.2:sid
)
# A second glibc for the heap scenarios, as SERIES:SUITE: Debian's libc6 of that
# series, run in the guest with its own loader beside the host's glibc
# (scripts/glibc.sh, scripts/build-heap.sh). Suites keep only their newest
# revision: the series is pinned, not the revision.
SECOND_GLIBC=2.41:trixie
# Where the guest's disk has the heap scenarios (scripts/disk.sh): programs
# built for the second glibc name its loader and libraries there.
GUEST_HEAP=/mmscope/heap
# bindgen-cli version installed from crates.io (the kernel needs >= 0.71.1).
BINDGEN_VERSION=0.72.1
# LLVM suffix passed to kbuild as LLVM=-$LLVM_VERSION.
LLVM_VERSION=19

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_DIR=${MMSCOPE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmscope}
export PATH="$HOME/.cargo/bin:$PATH"

# step NAME: announce a step; `die` names it when it fails.
STEP=setup
step() {
	STEP=$1
	printf '==> %s\n' "$STEP" >&2
}

# die MESSAGE...: say which step failed and why, then exit non-zero.
die() {
	printf 'mmscope: %s failed: %s\n' "$STEP" "$*" >&2
	exit 1
}

# debian_mirror: the Debian archive URI the host already uses, so that no
# mirror is hard-coded here; MMSCOPE_DEBIAN_MIRROR overrides it.
debian_mirror() {
	if [ -n "${MMSCOPE_DEBIAN_MIRROR:-}" ]; then
		echo "$MMSCOPE_DEBIAN_MIRROR"
		return
	fi
	{
		sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | tr ' ' '\n'
		awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; break } }' \
			/etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true
	} | grep -E '/debian/?$' | head -n 1 || true
}

# apt_download SUITE DIR PACKAGE...: download the newest .deb of each PACKAGE in
# Debian's SUITE into DIR (emptied first), with an apt state of its own in DIR:
# the host's apt configuration and package lists are not touched. Dies when the
# suite cannot be read; returns 1 when it lacks a package (as an `if` condition,
# where `set -e` is off, each step checks).
apt_download() {
	local suite=$1 dir=$2 mirror
	shift 2
	mirror=$(debian_mirror)
	[ -n "$mirror" ] || die "no Debian mirror found in /etc/apt; set MMSCOPE_DEBIAN_MIRROR to one"
	rm -rf "$dir"
	mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" || die "cannot create $dir"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" \
		>"$dir/sources.list" || die "cannot write $dir/sources.list"
	local apt=(apt-get -qq -o "Dir::Etc::sourcelist=$dir/sources.list" -o Dir::Etc::sourceparts=-
		-o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache" -o APT::Sandbox::User=root)
	# A suite that cannot be read (network, mirror) is an error, not a reason to move on:
	# apt-get update alone exits 0 when it fails to fetch.
	"${apt[@]}" --error-on=any update </dev/null ||
		die "apt-get update of $suite from $mirror failed (network, or MMSCOPE_DEBIAN_MIRROR)"
	(cd "$dir" && "${apt[@]}" download "$@" </dev/null)
}
