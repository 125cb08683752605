# SPDX-License-Identifier: GPL-2.0
#
# mmscope: build the out-of-tree Rust module against a Rust-enabled kernel and
# test it in QEMU.
#
#   make                     build build/module/rust/mmscope.ko (against the
#                            cached kernel, built on first use)
#   make KDIR=/path/to/build build against your own Rust-enabled kernel build
#   make demo                boot the guest and show what malloc really does, step by
#                            step, with plots and pages to explore (build/demo/) and
#                            the claims table
#   make trace CMD='prog args'  the same on your own program: it and every library
#                            it needs go to the guest's disk, `mmscope trace
#                            --svg --html --picture` runs it there; trace, plot and
#                            page in build/trace/ (FILES='data.txt ...' adds files)
#   make test-host           build mmscope for this host and test it there, without the
#                            module (procfs)
#   make test                check, build, boot the guest and run the selftests; open the
#                            trace pages they made in headless chromium (build/browser/)
#   make bench               the fault path and walks against the kernel's own paths
#   make test-debug          the same on the debug kernel (KASAN, lockdep, kmemleak,
#                            fault injection)
#   make test-compat         the same on the oldest supported kernel (scripts/lib.sh),
#                            and how the kernel is chosen when a suite drops one
#   make shell               boot the guest with the module loaded and a shell
#                            (FILES='prog data.txt' puts your files in /files)
#   make docs                regenerate the README's example output in the guest
#   make clean               remove the build outputs
#   make rust-analyzer       write rust-project.json for editors

LLVM ?= -19
OUT := $(CURDIR)/build

# The kernel flavour: config fragments merged over tinyconfig. `make test-debug`
# chooses the debug flavour (configs/debug.config) and keeps its module,
# initramfs and logs apart, in build/debug/ (RUN_OUT, MODULE_OUT).
KERNEL_FRAGMENTS ?= configs/base.config
RUN_OUT ?= $(OUT)
# The module's objects go out of the source tree (kbuild's MO=), one directory
# per flavour: rust/mmscope.ko in it.
MODULE_OUT ?= $(OUT)/module
KO = $(MODULE_OUT)/rust/mmscope.ko

# The kernel build directory. Unless given, the project's cached kernel of that
# flavour: fetched and built on first use (scripts/kernel.sh), evaluated once;
# the newest supported series Debian has, or KERNEL=SERIES (or oldest).
KERNEL ?=
ifeq ($(origin KDIR),undefined)
KDIR_DEFAULT := 1
KDIR = $(eval KDIR := $(shell MMSCOPE_KERNEL_FRAGMENTS="$(KERNEL_FRAGMENTS)" \
	MMSCOPE_KERNEL="$(KERNEL)" $(CURDIR)/scripts/kernel.sh))$(KDIR)
DEPS := deps
endif

KBUILD = $(MAKE) -C $(KDIR) M=$(CURDIR) MO=$(MODULE_OUT) LLVM=$(LLVM)
CHECK_KDIR = @test -n "$(KDIR)" || { echo "mmscope: no kernel build directory (see the error above)" >&2; exit 1; }

# The userspace workspace (tools/: the library and the mmscope command; selftests/), built
# for the guest with glibc linked statically: the guest has no shared libraries, and what the
# selftests exercise there is the real glibc malloc. The flag is given for the target triple
# only, on the cargo calls that name that triple with --target: then it does not reach the
# proc-macro crates (clap_derive, serde_derive), which are built for the host and cannot be
# static. (In .cargo/config.toml, or exported to every call, it would reach them whenever
# cargo runs without --target, and a plain `cargo build --release -p mmscope` on a host, as
# `make test-host` runs it, would fail.)
USER_TARGET := x86_64-unknown-linux-gnu
USER_OUT := target/$(USER_TARGET)/release
SELFTESTS_BIN := $(USER_OUT)/mmscope-selftests
MMSCOPE_BIN := $(USER_OUT)/mmscope
CARGO := cargo
CARGO_STATIC := CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static" $(CARGO)
CARGO_FLAGS := --locked --release --target $(USER_TARGET) --workspace
COMPAT32 := $(OUT)/compat32
# Example programs (demo/*.c), static, for the guest.
PROGS_DIR := $(OUT)/progs
PROGS := $(patsubst demo/%.c,$(PROGS_DIR)/%,$(wildcard demo/*.c))
PROGS += $(PROGS_DIR)/stacks-dynamic $(PROGS_DIR)/firsttouch-dynamic
# The heap scenarios (demo/heap/*.c), built once per allocator.
HEAP_DIR := $(OUT)/heap
HEAP_STAMP := $(HEAP_DIR)/.built
# Real programs from the host: GNU sort, traced by the demo; strace, which make bench
# compares the tracer with.
HOST_PROGRAMS := /usr/bin/sort /usr/bin/strace
INITRAMFS := $(RUN_OUT)/initramfs.cpio.gz
# The guest's read-only disk (scripts/disk.sh): the programs it runs, file-backed.
DISK := $(RUN_OUT)/disk.erofs
# Your files for the guest (make trace CMD=..., make shell FILES=...), checked and
# gathered by scripts/stage-files.sh; none unless one of those asks.
STAGE :=
USER_FILES := $(OUT)/user-files
GUEST = scripts/run-guest.sh $(KDIR)/arch/x86/boot/bzImage $(INITRAMFS) $(DISK)
# `mmscope trace --kernel` starts the kernel's function-graph tracer, which patches every
# traceable function; under QEMU's multi-threaded TCG that crashes the guest now and then
# (scripts/run-guest.sh), so its test runs again in a boot of its own with one TCG thread,
# and must pass there, not skip.
define KERNEL_TRACE_TEST
MMSCOPE_TCG=single MMSCOPE_TESTS=cli_trace_kernel $(GUEST) $(RUN_OUT)/guest-test-kernel.log test \
	$(RUN_OUT)/test-kernel-out
@grep -q '^1 passed, 0 failed$$' $(RUN_OUT)/guest-test-kernel.log || { \
	echo "mmscope: cli_trace_kernel did not pass in its own boot ($(RUN_OUT)/guest-test-kernel.log)" >&2; \
	exit 1; }
endef

.PHONY: all modules deps kernel check userspace selftests compat32 progs heap initramfs test-host test \
	test-debug test-compat demo bench trace trace-guest stage shell-guest \
	shell docs clean rust-analyzer

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
# and on the userspace workspace, whose unit tests run here too.
check: $(DEPS)
	$(CHECK_KDIR)
	rustfmt --check rust/mmscope_main.rs
	$(KBUILD) CLIPPY=1 KRUSTFLAGS=-Dwarnings modules
	$(CARGO) fmt --all --check
	$(CARGO_STATIC) clippy $(CARGO_FLAGS) --all-targets -- -D warnings
	$(CARGO_STATIC) test $(CARGO_FLAGS) --lib --bins
	@# Under pipefail, `cmd | grep -q` fails now and then: grep stops at its match and cmd
	@# dies of SIGPIPE. Let grep read everything (grep ... >/dev/null).
	@! grep -n '[^|]| *grep -[a-zA-Z]*q' scripts/*.sh || { \
		echo "mmscope: a script pipes into grep -q (above); under pipefail that fails at random" >&2; \
		exit 1; }

# The mmscope command and the selftests.
userspace selftests: $(DEPS)
	$(CARGO_STATIC) build $(CARGO_FLAGS)

progs: $(PROGS)

$(PROGS_DIR)/%: demo/%.c
	@mkdir -p $(PROGS_DIR)
	gcc -static -O2 -Wall -Werror $(PROG_CFLAGS) -o $@ $<

# The stack example with debug information (file and line in the frames), and linked
# dynamically too: its frames then cross into the disk's libc.
$(PROGS_DIR)/stacks: PROG_CFLAGS = -g -pthread
$(PROGS_DIR)/stacks-dynamic: demo/stacks.c
	@mkdir -p $(PROGS_DIR)
	gcc -O2 -g -pthread -Wall -Werror -o $@ $<
# The first-touch example (mmscope trace --faults), the same two ways.
$(PROGS_DIR)/firsttouch: PROG_CFLAGS = -g
$(PROGS_DIR)/firsttouch-dynamic: demo/firsttouch.c
	@mkdir -p $(PROGS_DIR)
	gcc -O2 -g -Wall -Werror -o $@ $<

heap: $(HEAP_STAMP)

$(HEAP_STAMP): $(wildcard demo/heap/*) include/uapi/mmscope.h scripts/build-heap.sh scripts/glibc.sh scripts/lib.sh | $(DEPS)
	scripts/build-heap.sh $(HEAP_DIR)
	@touch $@

# A 32-bit C user of the UAPI header, for the compat ioctl path.
compat32: $(DEPS)
	@mkdir -p $(OUT)
	gcc -m32 -static -O2 -Wall -Werror -I include/uapi -o $(COMPAT32) selftests/compat/compat32.c

# The guest: its initramfs (the harness) and its disk (the programs).
initramfs: modules userspace compat32 progs heap
	scripts/initramfs.sh $(INITRAMFS) $(KO) $(SELFTESTS_BIN) $(COMPAT32) $(MMSCOPE_BIN)
	scripts/disk.sh $(DISK) $(PROGS_DIR) $(HEAP_DIR) "$(STAGE)" $(HOST_PROGRAMS)

# Your command and files, checked before anything is built or booted. CMD and
# FILES reach the script through the environment, untouched by make's quoting.
stage:
	@scripts/stage-files.sh $(USER_FILES) "$$CMD" "$$FILES"

# The mmscope command on this host, without the module: built as a user builds it, and its
# procfs source held against procfs, a traced program's own account of its break, and the
# module's absence (tools/tests/host.rs). No guest, no kernel build.
test-host:
	$(CARGO) build --locked --release -p mmscope
	$(CARGO) test --locked --release -p mmscope --test host

# The pages of `mmscope trace --html` the guest made from real traces (cli_trace_html, and
# cli_trace_kernel's in the boot with one TCG thread), in
# headless chromium, held against their JSON traces (tools/tests/browser.rs); screenshots in
# $(RUN_OUT)/browser/.
define BROWSER_TEST
cp $(RUN_OUT)/test-kernel-out/pages/kernelpaths.* $(RUN_OUT)/test-out/pages/
MMSCOPE_PAGES=$(RUN_OUT)/test-out/pages MMSCOPE_SHOTS=$(RUN_OUT)/browser \
	$(CARGO) test --locked --release -p mmscope --test browser -- --ignored --exact --test-threads=1 \
	--nocapture heap_scenario_page sort_page many_steps_page kernel_graphs_page processes_page
endef

# The selftests; the claims table they measure must be the one the README holds;
# `make trace` on a program of yours, and on bad input.
# The README's list of tested kernels takes this run's kernel.
test: check initramfs
	$(GUEST) $(RUN_OUT)/guest-test.log test $(RUN_OUT)/test-out
	$(KERNEL_TRACE_TEST)
	$(BROWSER_TEST)
	scripts/update-readme.py --check $(RUN_OUT)/test-out claims
	scripts/test-user-program.sh
	scripts/update-readme.py --kernels $(OUT)

# The same on the debug kernel: KASAN, lockdep, DEBUG_VM, kmemleak (a leak fails
# the run), Rust's assertions and overflow checks, and the fault-injection tests.
test-debug:
	$(MAKE) test KERNEL_FRAGMENTS="configs/base.config configs/debug.config" \
		RUN_OUT=$(OUT)/debug MODULE_OUT=$(OUT)/debug/module

# The same on the oldest supported kernel, whose kernel crate differs most from the
# newest's (rust/compat.rs), after checking how scripts/kernel.sh moves on when a
# suite no longer carries a series.
test-compat:
	$(MAKE) kernel KERNEL=oldest
	scripts/test-kernel-choice.sh
	$(MAKE) test KERNEL=oldest RUN_OUT=$(OUT)/compat MODULE_OUT=$(OUT)/compat/module

# The module's fault path and walks side by side with the kernel's own, in one guest
# boot: the table goes to build/bench.md and the README. Benchmarks, not tests:
# nothing asserts a time.
bench: initramfs
	$(GUEST) $(OUT)/guest-bench.log bench $(OUT)/bench-out
	MMSCOPE_BENCH_PAGE=$(OUT)/bench-out/manysteps.html MMSCOPE_BENCH_MD=$(OUT)/bench-out/bench.md \
		$(CARGO) test --locked --release -p mmscope --test browser -- --ignored --exact page_opens
	cp $(OUT)/bench-out/bench.md $(OUT)/bench.md
	@cat $(OUT)/bench.md
	scripts/update-readme.py --only $(OUT)/bench-out bench

# The heap scenarios under the tracer, a real program, the claims table.
demo: initramfs
	$(GUEST) $(OUT)/guest-demo.log demo $(OUT)/demo
	@echo "mmscope: the plots, the claims table and a page to explore per scenario (open"
	@echo "         $(OUT)/demo/large.html, ... in a browser: no network needed) are in $(OUT)/demo/"

# Your own program under the tracer in the guest (CMD='prog args', FILES='more files').
# Checked first: this recipe names no kernel (make expands a whole recipe before it
# runs its first line), so bad input never waits for a kernel build.
trace:
	@test -n "$$CMD" || { echo "mmscope: give the program to trace: make trace CMD='path/to/prog args'" >&2; exit 1; }
	@$(MAKE) --no-print-directory stage
	$(MAKE) trace-guest

trace-guest:
	$(MAKE) initramfs STAGE=$(USER_FILES)
	$(GUEST) $(OUT)/guest-trace.log trace $(OUT)/trace
	@cat $(OUT)/trace/trace.txt
	@echo "mmscope: the trace, its plot and its page are in $(OUT)/trace/ (trace.txt, trace.svg;"
	@echo "         trace.html opens in a browser)"

# An interactive guest: the module loaded, mmscope on the PATH, your FILES in /files;
# `exit` powers it off. Your files are checked before any kernel is named (see trace).
shell:
	$(if $(FILES),@$(MAKE) --no-print-directory stage)
	$(MAKE) shell-guest

shell-guest:
	$(MAKE) initramfs $(if $(FILES),STAGE=$(USER_FILES))
	$(GUEST) $(OUT)/guest-shell.log shell

# The README's example output, from real runs in the guest (scripts/guest-docs.sh), with
# one TCG thread: it shows `mmscope trace --kernel` (KERNEL_TRACE_TEST).
docs: initramfs
	MMSCOPE_TCG=single $(GUEST) $(OUT)/guest-docs.log docs $(OUT)/docs
	scripts/update-readme.py $(OUT)/docs
	scripts/page-shot.py $(OUT)/docs/heap-large.html docs/trace-page.png
	scripts/test-user-program.sh
	scripts/update-readme.py --only $(OUT)/trace user-trace
	$(CARGO) build --locked --release -p mmscope
	@mkdir -p $(OUT)/host
	target/release/mmscope --source procfs maps | sed -n '1,/^$$/p' >$(OUT)/host/maps.txt
	scripts/update-readme.py --only $(OUT)/host host-maps

clean:
	$(eval KDIR_CLEAN := $(if $(KDIR_DEFAULT),$(shell $(CURDIR)/scripts/kernel.sh --path),$(KDIR)))
	$(if $(KDIR_CLEAN),$(MAKE) -C $(KDIR_CLEAN) M=$(CURDIR) LLVM=$(LLVM) clean)
	rm -rf $(OUT) rust-project.json
	$(CARGO) clean

rust-analyzer: $(DEPS)
	$(CHECK_KDIR)
	$(KBUILD) rust-analyzer
