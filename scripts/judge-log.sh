#!/usr/bin/env bash
# Judge a guest console log: exit 0 only if the guest reported that the module
# loaded, the run succeeded and the module unloaded, and the log holds no
# kernel splat, whatever the tests themselves said.
#   scripts/judge-log.sh LOG
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] || { echo "usage: $0 LOG" >&2; exit 2; }
log=$1
step "judge the guest log"
[ -f "$log" ] || die "$log does not exist"

failed=0
splat='BUG:|WARNING:|Oops|Kernel panic|general protection fault|Call Trace:|KASAN|UBSAN|'
# lockdep and the atomic-sleep check (their reports; not the word, which the
# debug kernel's boot banner uses)
splat+='possible circular locking|possible recursive locking|inconsistent lock state|'
splat+='suspicious RCU usage|DEBUG_LOCKS_WARN_ON|bad unlock balance|lock held when returning|'
splat+='possible irq lock inversion|non-static key|sleeping function called from invalid context|'
splat+='refcount_t:|rust_panic|panicked at|INFO: task .* blocked|RCU stall|kernel BUG|'
# kmemleak's report (the debug kernel; scripts/guest-init.sh prints it)
splat+='unreferenced object 0x|suspected memory leak'
# A test that provokes the OOM killer on purpose brackets its report with
# MMSCOPE-EXPECTED-OOM: begin/end; there, and only there, a stack trace is
# allowed (the OOM report's own). Every other splat still counts.
if awk '/MMSCOPE-EXPECTED-OOM: begin/ { oom = 1 } /MMSCOPE-EXPECTED-OOM: end/ { oom = 0 }
	{ print (oom && /Call Trace:/) ? "(expected OOM report)" : $0 }' "$log" |
	grep -naE "$splat" >&2; then
	echo "mmscope: kernel splat in the guest log (lines above)" >&2
	failed=1
fi
result=$(grep -a '^MMSCOPE-GUEST-RESULT: ' "$log" | tail -n 1 || true)
if [ "$result" != "MMSCOPE-GUEST-RESULT: insmod=ok run=0 rmmod=ok" ]; then
	echo "mmscope: guest reported: ${result:-nothing (it never finished)}" >&2
	failed=1
fi
if [ "$failed" -ne 0 ]; then
	echo "mmscope: FAILED (guest log: $log)" >&2
	exit 1
fi
echo "mmscope: guest run passed (log: $log)" >&2
