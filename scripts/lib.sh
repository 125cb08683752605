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
