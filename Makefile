# SPDX-License-Identifier: GPL-2.0
#
# mmscope: build the out-of-tree Rust module against a Rust-enabled kernel and
# test it in QEMU.
#
#   make                     build rust/mmscope.ko (against the cached kernel,
#                            built on first use)
#   make KDIR=/path/to/build build against your own Rust-enabled kernel build
#   make test                check, build, boot the guest and run the selftests
#   make clean               remove the build outputs
#   make rust-analyzer       write rust-project.json for editors

LLVM ?= -19
OUT := $(CURDIR)/build

# The kernel build directory. Unless given, the project's cached kernel: it is
# fetched and built on first use (scripts/kernel.sh) and evaluated only once.
ifeq ($(origin KDIR),undefined)
KDIR_DEFAULT := 1
KDIR = $(eval KDIR := $(shell $(CURDIR)/scripts/kernel.sh))$(KDIR)
DEPS := deps
endif

KBUILD = $(MAKE) -C $(KDIR) M=$(CURDIR) LLVM=$(LLVM)
CHECK_KDIR = @test -n "$(KDIR)" || { echo "mmscope: no kernel build directory (see the error above)" >&2; exit 1; }

SELFTESTS_TARGET := x86_64-unknown-linux-gnu
SELFTESTS_BIN := selftests/target/$(SELFTESTS_TARGET)/release/mmscope-selftests
CARGO := cargo
COMPAT32 := $(OUT)/compat32

.PHONY: all modules deps kernel check selftests compat32 initramfs test clean rust-analyzer

all: modules

deps:
	@$(CURDIR)/scripts/install-deps.sh

kernel: $(DEPS)
	$(CHECK_KDIR)
	@echo "kernel: $(KDIR)"

modules: $(DEPS)
	$(CHECK_KDIR)
	$(KBUILD) modules

# Style and lint gates: rustfmt and clippy on the module (warnings are errors)
# and on the selftests.
check: $(DEPS)
	$(CHECK_KDIR)
	rustfmt --check rust/mmscope.rs
	$(KBUILD) CLIPPY=1 KRUSTFLAGS=-Dwarnings modules
	cd selftests && $(CARGO) fmt --check
	cd selftests && $(CARGO) clippy --locked --release --target $(SELFTESTS_TARGET) -- -D warnings

selftests: $(DEPS)
	cd selftests && $(CARGO) build --locked --release --target $(SELFTESTS_TARGET)

# A 32-bit C user of the UAPI header, for the compat ioctl path.
compat32: $(DEPS)
	@mkdir -p $(OUT)
	gcc -m32 -static -O2 -Wall -Werror -I include/uapi -o $(COMPAT32) selftests/compat/compat32.c

initramfs: modules selftests compat32
	scripts/initramfs.sh $(OUT)/initramfs.cpio.gz rust/mmscope.ko $(SELFTESTS_BIN) $(COMPAT32)

test: check initramfs
	scripts/run-guest.sh $(KDIR)/arch/x86/boot/bzImage $(OUT)/initramfs.cpio.gz $(OUT)/guest-test.log test

clean:
	$(eval KDIR_CLEAN := $(if $(KDIR_DEFAULT),$(shell $(CURDIR)/scripts/kernel.sh --path),$(KDIR)))
	$(if $(KDIR_CLEAN),$(MAKE) -C $(KDIR_CLEAN) M=$(CURDIR) LLVM=$(LLVM) clean)
	rm -rf $(OUT) rust-project.json
	cd selftests && $(CARGO) clean

rust-analyzer: $(DEPS)
	$(CHECK_KDIR)
	$(KBUILD) rust-analyzer
