#!/bin/busybox sh
# PID 1 of the mmscope test guest. Mounts the pseudo filesystems, loads the
# module, runs what mmscope.run= on the kernel command line asks for, unloads
# the module and reports one result line for the host to judge.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null

mode=test
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	mmscope.run=*) mode=${arg#mmscope.run=} ;;
	esac
done

finish() {
	echo "MMSCOPE-GUEST-RESULT: $*"
	reboot -f
}

if [ "$mode" = probe ]; then
	finish probe=ok
fi

insmod /mmscope/mmscope.ko || finish insmod=failed
[ -c /dev/mmscope ] || finish insmod=no-device

status=0
case "$mode" in
test)
	MMSCOPE_KO=/mmscope/mmscope.ko MMSCOPE_COMPAT32=/mmscope/compat32 /mmscope/selftests
	status=$?
	;;
*)
	echo "mmscope: unknown mmscope.run=$mode"
	status=2
	;;
esac

if rmmod mmscope; then rm=ok; else rm=failed; fi
finish "insmod=ok run=$status rmmod=$rm"
