#!/bin/busybox sh
# PID 1 of the mmscope guest. Mounts the pseudo filesystems, loads the module,
# runs what mmscope.run= on the kernel command line asks for, sends the files
# the run left in /out to the host (second serial port), unloads the module
# and reports one result line for the host to judge.
#   mmscope.run=test   the selftests (mmscope.tests=NAME: those whose names
#                      contain NAME)
#   mmscope.run=shell  an interactive shell on the console
#   mmscope.run=docs   generate the README's example output into /out
#   mmscope.run=demo   the heap scenarios, a real program and the claims table
#   mmscope.run=bench  the benchmarks (mmscope-selftests --bench) into /out
#   mmscope.run=trace  `make trace`: mmscope trace on your command (from the
#                      disk's /mmscope/trace-cmd), the trace and plot into /out
#   mmscope.run=probe  nothing: only show that the guest boots (KVM probe)
/bin/busybox --install -s /bin
export PATH=/bin:/mmscope/progs
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
chmod 1777 /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
# debugfs: kmemleak and fault injection, on the debug kernel
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
# The function-graph tracer, for mmscope trace --kernel.
mount -t tracefs tracefs /sys/kernel/tracing
mkdir -p /out

# The disk (scripts/disk.sh): every program the guest runs, on a read-only
# EROFS image, so that their text and libraries are file-backed pages, as on
# any machine. Its directories appear where the programs expect them: /usr,
# /lib, /lib64, /files (yours), /mmscope/progs and /mmscope/heap.
mount_disk() {
	mount -t erofs -o ro /dev/vda /disk || return 1
	for d in /disk/*; do
		name=${d#/disk/}
		if [ "$name" = mmscope ]; then
			for m in /disk/mmscope/*; do
				[ -d "$m" ] || continue
				mkdir -p "/mmscope/${m#/disk/mmscope/}"
				mount --bind "$m" "/mmscope/${m#/disk/mmscope/}" || return 1
			done
		else
			mkdir -p "/$name"
			mount --bind "$d" "/$name" || return 1
		fi
	done
}

mode=test
tests=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	mmscope.run=*) mode=${arg#mmscope.run=} ;;
	mmscope.tests=*) tests=${arg#mmscope.tests=} ;;
	mmscope.accel=*) export MMSCOPE_ACCEL=${arg#mmscope.accel=} ;;
	esac
done

finish() {
	echo "MMSCOPE-GUEST-RESULT: $*"
	reboot -f
}

# On the debug kernel: leaks found so far are the boot's, not ours; forget
# them before the run, and after it (module unloaded, objects old enough to
# count) print every new one for the log judge (scripts/judge-log.sh).
KMEMLEAK=/sys/kernel/debug/kmemleak
kmemleak_baseline() {
	[ -w $KMEMLEAK ] || return 0
	echo scan >$KMEMLEAK
	echo clear >$KMEMLEAK
}
kmemleak_report() {
	[ -w $KMEMLEAK ] || return 0
	sleep 6
	echo scan >$KMEMLEAK
	echo scan >$KMEMLEAK
	cat $KMEMLEAK
	echo "mmscope: kmemleak scan done"
}

# The guest has no udev: give /dev/mmscope the MODE the shipped rule sets, as
# udev does on the device's "add" event. The selftests do the same after each
# insmod of theirs (MMSCOPE_UDEV_RULE).
export MMSCOPE_UDEV_RULE=/etc/udev/rules.d/60-mmscope.rules
apply_udev_rule() {
	devmode=$(sed -n 's/^KERNEL=="mmscope",.*MODE="\([0-7]*\)".*/\1/p' $MMSCOPE_UDEV_RULE)
	[ -n "$devmode" ] || { echo "mmscope: no MODE for mmscope in $MMSCOPE_UDEV_RULE"; return 1; }
	chmod "$devmode" /dev/mmscope
}

# send_out: the files in /out, as a base64 tar on the second serial port,
# which the host writes to a file. Closing the port waits until it is sent.
send_out() {
	[ -n "$(ls /out)" ] || return 0
	[ -c /dev/ttyS1 ] || { echo "mmscope: no /dev/ttyS1 to send /out"; return 1; }
	stty -F /dev/ttyS1 raw -echo 2>/dev/null
	(cd /out && tar c . | base64) >/dev/ttyS1
}

if [ "$mode" = probe ]; then
	finish probe=ok
fi
mount_disk || finish disk=failed

kmemleak_baseline
insmod /mmscope/mmscope.ko || finish insmod=failed
[ -c /dev/mmscope ] || finish insmod=no-device
apply_udev_rule || finish udev-rule=failed

status=0
case "$mode" in
test)
	# The debug kernel (KASAN, lockdep) under TCG is several times slower.
	[ -e $KMEMLEAK ] && export MMSCOPE_TEST_TIMEOUT=600
	MMSCOPE_KO=/mmscope/mmscope.ko MMSCOPE_COMPAT32=/mmscope/compat32 \
		MMSCOPE_BIN=/bin/mmscope MMSCOPE_PROGS=/mmscope/progs MMSCOPE_HEAP=/mmscope/heap \
		MMSCOPE_OUT=/out /mmscope/selftests $tests
	status=$?
	;;
shell)
	cat <<'BANNER'

mmscope guest: the module is loaded and `mmscope` is on the PATH. Try
  mmscope maps
  mmscope trace -- malloc-touch
  mmscope lazy 1M --pattern stride:4
  mmscope-selftests maps        (the selftests whose names contain "maps")
Your files (make shell FILES='prog data.txt') are in /files, read-only like
every program here (on the guest's disk); /tmp is writable. Files in /out
come back to the host (build/guest-out/). Leave with `exit` or Ctrl-D: the
guest powers off.

BANNER
	ln -s /mmscope/selftests /bin/mmscope-selftests
	export MMSCOPE_KO=/mmscope/mmscope.ko MMSCOPE_COMPAT32=/mmscope/compat32
	export MMSCOPE_BIN=/bin/mmscope MMSCOPE_PROGS=/mmscope/progs MMSCOPE_HEAP=/mmscope/heap
	cd /tmp
	setsid cttyhack sh -l
	;;
docs)
	MMSCOPE_HEAP=/mmscope/heap MMSCOPE_BIN=/bin/mmscope sh /mmscope/docs.sh /out
	status=$?
	;;
bench)
	/mmscope/selftests --bench /out/bench.md
	status=$?
	# The page of a 10,000-call trace, which the host opens in a browser (make bench),
	# and the size of its JSON trace.
	mmscope trace --json -o /tmp/manysteps.jsonl --html /out/manysteps.html -- \
		/mmscope/progs/manysteps >/dev/null || status=1
	wc -c </tmp/manysteps.jsonl >/out/manysteps.json-bytes
	rm -f /tmp/manysteps.jsonl
	;;
trace)
	# Your command, in /files (read-only, like the rest of the disk; /tmp is
	# writable), as an ordinary program: its exit status is reported, not judged.
	cd /files
	eval "set -- $(cat /disk/mmscope/trace-cmd)"
	echo "mmscope: tracing $*"
	mmscope trace --svg /out/trace.svg --html /out/trace.html --picture -o /out/trace.txt -- "$@"
	echo "mmscope: the command ended with status $?"
	[ -s /out/trace.txt ] || status=1
	cd /
	;;
demo)
	MMSCOPE_HEAP=/mmscope/heap MMSCOPE_BIN=/bin/mmscope sh /mmscope/demo.sh /out
	status=$?
	;;
*)
	echo "mmscope: unknown mmscope.run=$mode"
	status=2
	;;
esac

send_out || status=1
if rmmod mmscope; then rm=ok; else rm=failed; fi
kmemleak_report
finish "insmod=ok run=$status rmmod=$rm"
