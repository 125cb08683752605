# Shared settings and helpers for the mmscope build and test scripts.
# Sourced, not executed.

# The kernel series the project builds against: bump this one line to move.
KERNEL_SERIES=7.3
# The Debian suite that carries linux-source-$KERNEL_SERIES.
KERNEL_SUITE=trixie-backports
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
