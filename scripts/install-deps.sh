#!/usr/bin/env bash
# Install every host tool mmscope needs: the LLVM toolchain the kernel is built
# with, the kernel build dependencies, QEMU and busybox for the guest, the
# allocators the heap scenarios compare (musl, jemalloc, mimalloc), headless
# chromium and its WebDriver for the trace pages' tests, rust-src
# and bindgen for Rust-for-Linux. Idempotent and non-interactive; run as root.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

APT_PACKAGES=(
	"clang-$LLVM_VERSION" "lld-$LLVM_VERSION" "llvm-$LLVM_VERSION" "libclang-$LLVM_VERSION-dev"
	bc flex bison libelf-dev libssl-dev cpio xz-utils make
	qemu-system-x86 busybox-static erofs-utils
	gcc-multilib
	musl-tools libjemalloc-dev libmimalloc-dev coreutils strace
	libc6-dbg
	chromium chromium-driver fonts-dejavu-core
)

step "install Debian packages"
missing=()
for p in "${APT_PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'ok installed' >/dev/null || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" -eq 0 ] || die "packages missing (${missing[*]}); run this script as root"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq </dev/null || die "apt-get update could not refresh the package lists"
	apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null ||
		die "apt-get install ${missing[*]} failed"
fi

step "install rust-src"
command -v rustup >/dev/null || die "rustup not found; install a Rust toolchain with rustup first"
if ! rustup component list --installed 2>/dev/null | grep '^rust-src' >/dev/null; then
	rustup component add rust-src || die "rustup component add rust-src failed"
fi

step "install bindgen-cli $BINDGEN_VERSION"
if ! bindgen --version 2>/dev/null | grep -x "bindgen $BINDGEN_VERSION" >/dev/null; then
	cargo install --locked --quiet bindgen-cli --version "=$BINDGEN_VERSION" </dev/null ||
		die "cargo install bindgen-cli $BINDGEN_VERSION failed"
fi
