#!/usr/bin/env bash
# Stops the libvirtd and virtlogd that scripts/libvirt-up.sh started (by the
# PIDs it recorded under /run/vmmount-libvirt/), after destroying and
# undefining the test domains (vmmount-test-*) still there, so no QEMU is
# left running without its daemon. Daemons started some other way are not
# touched. Idempotent.
set -euo pipefail

state=/run/vmmount-libvirt
prefix=vmmount-test-

log() { echo "libvirt-down: $*" >&2; }

running() { # PIDFILE COMM, as in libvirt-up.sh
	local pid
	pid=$(cat "$1" 2>/dev/null) || return 1
	[ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
	[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
	[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

[ -d "$state" ] || exit 0
exec 9>"$state/lock"
flock 9

if running "$state/libvirtd.pid" libvirtd; then
	for dom in $(timeout 30 virsh -q -c qemu:///system list --all --name 2>/dev/null | grep "^$prefix" || true); do
		virsh -q -c qemu:///system destroy "$dom" >/dev/null 2>&1 || true
		virsh -q -c qemu:///system undefine --nvram --checkpoints-metadata --snapshots-metadata "$dom" >/dev/null 2>&1 || true
		log "removed test domain $dom"
	done
fi

stop() { # PIDFILE COMM
	local pid i
	if running "$1" "$2"; then
		pid=$(cat "$1")
		kill "$pid" 2>/dev/null || true
		for i in $(seq 100); do running "$1" "$2" || break; sleep 0.1; done
		if running "$1" "$2"; then
			log "$2 ($pid) ignored SIGTERM for 10 s; killing it"
			kill -9 "$pid" 2>/dev/null || true
		fi
		log "stopped $2 ($pid)"
	fi
	rm -f "$1"
}
stop "$state/libvirtd.pid" libvirtd
stop "$state/virtlogd.pid" virtlogd
