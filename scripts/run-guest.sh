#!/usr/bin/env bash
# Boot the guest kernel with an initramfs in QEMU, stream its console to the
# terminal and a log file, bring back the files the run left in the guest's
# /out, and judge the log: exit 0 only if the guest reported success and the
# log holds no kernel splat.
#   scripts/run-guest.sh BZIMAGE INITRD DISK LOG [MODE [OUTDIR]]
# DISK is the guest's read-only disk image (scripts/disk.sh), its first virtio
# block device. MODE is test (default), docs, demo, bench, trace or shell (interactive: the console is this
# terminal, no timeout). The guest's /out is unpacked into OUTDIR (default:
# guest-out beside LOG).
# MMSCOPE_TIMEOUT (seconds, default 600), MMSCOPE_SMP (default 2),
# MMSCOPE_MEM (default 1G), MMSCOPE_ACCEL (kvm, tcg; default: probe),
# MMSCOPE_TCG=single (TCG with one host thread for all the guest's CPUs, for
# ftrace: see below), MMSCOPE_TESTS (test mode: only the selftests whose names
# contain it).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ $# -ge 4 ] || { echo "usage: $0 BZIMAGE INITRD DISK LOG [MODE [OUTDIR]]" >&2; exit 2; }
kernel=$1 initrd=$2 disk=$3 log=$4 mode=${5:-test}
outdir=${6:-$(dirname "$log")/guest-out}
timeout_s=${MMSCOPE_TIMEOUT:-600}

command -v qemu-system-x86_64 >/dev/null ||
	die "qemu-system-x86_64 not found; run scripts/install-deps.sh (package qemu-system-x86)"
for f in "$kernel" "$initrd" "$disk"; do [ -f "$f" ] || die "$f is missing"; done
mkdir -p "$(dirname "$log")"
port=$log.out
rm -f "$port"

# tsc_early_khz/tsc=reliable: under TCG the guest cannot calibrate the TSC and
# would fall back to jiffies, with 4 ms resolution.
APPEND="console=ttyS0 panic=-1 oops=panic tsc_early_khz=2000000 tsc=reliable"
# The console on stdio (with QEMU's monitor behind Ctrl-A c), and a second
# serial port into a file: the guest sends its /out there.
# q35: on QEMU's default i440FX machine the debug kernel's first read of the
# virtio disk never completes (the guest idles after "[vda] ..." forever);
# on q35 every kernel boots.
QEMU=(qemu-system-x86_64 -machine q35 -m "${MMSCOPE_MEM:-1G}" -smp "${MMSCOPE_SMP:-2}"
	-display none -no-reboot -kernel "$kernel" -initrd "$initrd"
	-drive "file=$disk,if=virtio,format=raw,readonly=on"
	-serial mon:stdio -serial "file:$port")

# KVM only if a short probe boot reaches userspace: on some hosts /dev/kvm
# exists but a guest hangs under it with no output.
accel=${MMSCOPE_ACCEL:-}
if [ -z "$accel" ]; then
	accel=tcg
	if [ -w /dev/kvm ]; then
		step "probe KVM"
		if timeout -k 1 5 "${QEMU[@]}" -accel kvm -append "$APPEND mmscope.run=probe" </dev/null 2>/dev/null |
			tr -d '\r' | grep '^MMSCOPE-GUEST-RESULT: probe=ok' >/dev/null; then
			accel=kvm
		fi
	fi
fi
# QEMU's multi-threaded TCG (a host thread per guest CPU, the default) can run
# code the kernel has just patched in its old form on another CPU: enabling
# ftrace's function-graph tracer, which patches every traceable function, then
# ends in "Oops: int3" in a few runs. With one host thread for all CPUs it does
# not; the guest is told which it got (mmscope.accel), and `mmscope trace
# --kernel` refuses to patch under the other.
case "${MMSCOPE_TCG:-}" in
"") ;;
single) [ "$accel" != tcg ] || accel=tcg,thread=single ;;
*) die "MMSCOPE_TCG is ${MMSCOPE_TCG}; it may only be single" ;;
esac
tests=
if [ -n "${MMSCOPE_TESTS:-}" ]; then
	case "$MMSCOPE_TESTS" in
	*[!a-z0-9_]*) die "MMSCOPE_TESTS=$MMSCOPE_TESTS: a selftest name (or part of one) has only a-z, 0-9 and _" ;;
	esac
	tests=" mmscope.tests=$MMSCOPE_TESTS"
fi

# unpack_out: the guest's /out, a base64 tar, into $outdir.
unpack_out() {
	[ -s "$port" ] || return 0
	rm -rf "$outdir"
	mkdir -p "$outdir"
	tr -d '\r' <"$port" | base64 -d | tar -x -C "$outdir" ||
		die "the files the guest sent ($port) do not unpack"
	echo "mmscope: the guest's /out is in $outdir" >&2
}

if [ "$mode" = shell ]; then
	step "boot the guest ($accel, ${MMSCOPE_SMP:-2} CPUs) with a shell; Ctrl-A x quits QEMU at once"
	set +e
	"${QEMU[@]}" -accel "$accel" -append "$APPEND mmscope.run=shell mmscope.accel=$accel"
	set -e
	unpack_out
	exit 0
fi

step "boot the guest ($accel, ${MMSCOPE_SMP:-2} CPUs, timeout ${timeout_s}s), log in $log"
set +e
timeout -k 5 "$timeout_s" "${QEMU[@]}" -accel "$accel" -append "$APPEND mmscope.run=$mode mmscope.accel=$accel$tests" </dev/null 2>&1 |
	tr -d '\r' | tee "$log"
qemu_status=${PIPESTATUS[0]}
set -e

timed_out=0
if [ "$qemu_status" -eq 124 ] || [ "$qemu_status" -eq 137 ]; then
	echo "mmscope: the guest did not finish within ${timeout_s}s (MMSCOPE_TIMEOUT)" >&2
	timed_out=1
fi
unpack_out
"$TOP/scripts/judge-log.sh" "$log" && [ "$timed_out" -eq 0 ]
