#!/usr/bin/env bash
# Boot the guest kernel with an initramfs in QEMU under a hard timeout, stream
# its console to the terminal and a log file, and judge the log:
# exit 0 only if the guest reported success and the log holds no kernel splat.
#   scripts/run-guest.sh BZIMAGE INITRD LOG [MODE]
# MMSCOPE_TIMEOUT (seconds, default 600), MMSCOPE_SMP (default 2),
# MMSCOPE_MEM (default 1G), MMSCOPE_ACCEL (kvm, tcg; default: probe).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ $# -ge 3 ] || { echo "usage: $0 BZIMAGE INITRD LOG [MODE]" >&2; exit 2; }
kernel=$1 initrd=$2 log=$3 mode=${4:-test}
timeout_s=${MMSCOPE_TIMEOUT:-600}

command -v qemu-system-x86_64 >/dev/null ||
	die "qemu-system-x86_64 not found; run scripts/install-deps.sh (package qemu-system-x86)"
for f in "$kernel" "$initrd"; do [ -f "$f" ] || die "$f is missing"; done

# tsc_early_khz/tsc=reliable: under TCG the guest cannot calibrate the TSC and
# would fall back to jiffies, with 4 ms resolution.
APPEND="console=ttyS0 panic=-1 oops=panic tsc_early_khz=2000000 tsc=reliable"
QEMU=(qemu-system-x86_64 -m "${MMSCOPE_MEM:-1G}" -smp "${MMSCOPE_SMP:-2}"
	-nographic -no-reboot -kernel "$kernel" -initrd "$initrd")

# KVM only if a short probe boot reaches userspace: on some hosts /dev/kvm
# exists but a guest hangs under it with no output.
accel=${MMSCOPE_ACCEL:-}
if [ -z "$accel" ]; then
	accel=tcg
	if [ -w /dev/kvm ]; then
		step "probe KVM"
		if timeout -k 1 5 "${QEMU[@]}" -accel kvm -append "$APPEND mmscope.run=probe" </dev/null 2>/dev/null |
			tr -d '\r' | grep -q '^MMSCOPE-GUEST-RESULT: probe=ok'; then
			accel=kvm
		fi
	fi
fi

step "boot the guest ($accel, ${MMSCOPE_SMP:-2} CPUs, timeout ${timeout_s}s), log in $log"
mkdir -p "$(dirname "$log")"
set +e
timeout -k 5 "$timeout_s" "${QEMU[@]}" -accel "$accel" -append "$APPEND mmscope.run=$mode" </dev/null 2>&1 |
	tr -d '\r' | tee "$log"
qemu_status=${PIPESTATUS[0]}
set -e

timed_out=0
if [ "$qemu_status" -eq 124 ] || [ "$qemu_status" -eq 137 ]; then
	echo "mmscope: the guest did not finish within ${timeout_s}s (MMSCOPE_TIMEOUT)" >&2
	timed_out=1
fi
"$TOP/scripts/judge-log.sh" "$log" && [ "$timed_out" -eq 0 ]
