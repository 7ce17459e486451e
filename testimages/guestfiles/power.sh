#!/bin/sh
# Power-button handler of the vmmount test guest (busybox acpid runs
# /etc/acpi/PWRF/00000080 on the power key): stop the worker, unmount the
# disk cleanly so it needs no journal recovery, power off.
echo "vmmount-guest: power button: shutting down" >/dev/console
if [ -f /run/worker.pid ]; then
	kill -TERM -"$(cat /run/worker.pid)" 2>/dev/null
	sleep 0.2
	kill -KILL -"$(cat /run/worker.pid)" 2>/dev/null
fi
sync
if ! umount /mnt; then
	echo "vmmount-guest: error: umount /mnt failed; remounting read-only" >/dev/console
	mount -o remount,ro /mnt
fi
sync
echo "vmmount-guest: powering off" >/dev/console
poweroff -f
