#!/bin/busybox sh
# /init of the vmmount test guest (testimages/guest.go). It mounts the disk
# /dev/vda (ext4) at /mnt, starts the guest agent and an ACPI power-button
# handler, prints the ready marker on the console (ttyS0), then runs
# /mnt/autorun.sh if the disk has one, else writes a counter to /mnt/counter
# every second and prints "vmmount-guest: counter N" after each write. Lines it
# prints itself start with "vmmount-guest:".
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin

say() { echo "vmmount-guest: $*" >/dev/console; }
fail() { say "error: $*"; sync; poweroff -f; }

mount -t devtmpfs dev /dev 2>/dev/null
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs -o mode=0755 run /run
mkdir -p /dev/virtio-ports /dev/pts /mnt /tmp

# Dependency order: each module only needs those before it.
for m in @MODULES@; do
	insmod /lib/modules/$m.ko || fail "insmod $m"
done

i=0
while [ ! -b /dev/vda ]; do
	i=$((i + 1)); [ $i -gt 100 ] && fail "no /dev/vda after 10 s"
	sleep 0.1
done
mount -t ext4 /dev/vda /mnt || fail "cannot mount /dev/vda"

# The agent channel is optional (GuestOptions.NoAgent): wait briefly for it.
# udev is not running, so the /dev/virtio-ports/NAME links are made here from
# the names QEMU gave the ports.
i=0
while [ $i -lt 30 ]; do
	for p in /sys/class/virtio-ports/*; do
		[ -f "$p/name" ] && ln -sf "../${p##*/}" "/dev/virtio-ports/$(cat "$p/name")"
	done
	[ -e /dev/virtio-ports/org.qemu.guest_agent.0 ] && break
	i=$((i + 1)); sleep 0.1
done
if [ -e /dev/virtio-ports/org.qemu.guest_agent.0 ]; then
	qemu-ga -d -m virtio-serial -p /dev/virtio-ports/org.qemu.guest_agent.0 \
		-f /run/qemu-ga.pid -t /run -l /run/qemu-ga.log || fail "qemu-ga did not start"
	agent=yes
else
	agent=no
fi

# acpid finds the power button through evdev (/dev/input/event*).
i=0
while ! ls /dev/input/event* >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -gt 50 ] && fail "no input device for the power button"
	sleep 0.1
done
acpid -c /etc/acpi -l /run/acpid.log || fail "acpid did not start"

say "@MARKER@ agent=$agent"

# The worker runs in its own session so the power-button handler can stop it
# and everything it started before unmounting /mnt.
if [ -f /mnt/autorun.sh ]; then
	setsid sh /mnt/autorun.sh </dev/null >/dev/console 2>&1 &
else
	setsid sh -c 'i=0; while :; do
		i=$((i + 1)); echo $i >/mnt/counter.new && mv /mnt/counter.new /mnt/counter &&
			echo "vmmount-guest: counter $i"
		sleep 1; done' </dev/null >/dev/console 2>&1 &
fi
echo $! >/run/worker.pid

while :; do sleep 3600; done
