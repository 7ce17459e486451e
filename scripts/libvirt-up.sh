#!/usr/bin/env bash
# Starts virtlogd and libvirtd (QEMU driver) for vmmount's backup, restore and
# inject tests, on machines without systemd (CI, containers). Run as root.
#
# Idempotent and cheap when the daemons already run: `make test` calls it
# before every run, and testimages.LibvirtConn calls it when the socket is
# missing. The daemons keep running afterwards; scripts/libvirt-down.sh stops
# them. Their PIDs are recorded under /run/vmmount-libvirt/, their logs go to
# /var/log/libvirt/vmmount-{virtlogd,libvirtd}.log.
#
# Why each step (measured on Debian 12 with libvirt 9.0, see the project's
# LIBVIRT-CI notes):
#  - the qemu driver looks up its built-in user libvirt-qemu before it reads
#    qemu.conf, so that user must exist even though QEMU runs as root;
#  - virtlogd dies without /var/log/libvirt, and libvirtd running as root does
#    not start virtlogd itself;
#  - with dynamic_ownership/remember_owner/the security driver on, every domain
#    start took ~56 s and pull-mode NBD sockets failed with EACCES;
#  - both daemons run in the background without -d: daemonized copies were
#    left as zombies where PID 1 does not reap;
#  - the first qemu:///system connection probes QEMU's capabilities (~8 s,
#    cached under /var/cache/libvirt/qemu), so it is done once here.
set -euo pipefail

state=/run/vmmount-libvirt
sock=/run/libvirt/libvirt-sock
logsock=/run/libvirt/virtlogd-sock
conf=/etc/libvirt/qemu.conf
prefix=vmmount-test-   # domains made by testimages; stale ones are removed

log() { echo "libvirt-up: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
	log "needs root; libvirt tests will skip (or fail under CI=true)"
	[ "${CI:-}" = true ] && exit 1
	exit 0
fi
for tool in libvirtd virtlogd virsh qemu-system-x86_64; do
	if ! command -v "$tool" >/dev/null; then
		log "$tool is missing; run scripts/setup.sh"
		exit 1
	fi
done

# running PIDFILE COMM: the recorded process is alive (not a zombie) and is
# still the program we started, not a reused PID.
running() {
	local pid
	pid=$(cat "$1" 2>/dev/null) || return 1
	[ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
	[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] || return 1
	# Field 3 of /proc/PID/stat is the state; comm (field 2) has no spaces here.
	[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

pid_alive() { [ -r "/proc/$1/stat" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

mkdir -p "$state"
exec 9>"$state/lock"
flock 9 # concurrent callers (parallel test packages) start one daemon

# The settings block we own in qemu.conf. Other lines are left alone; our keys
# are removed from them so the file has one value each.
want_conf() {
	cat <<-'EOF'
	# vmmount tests (scripts/libvirt-up.sh): QEMU as root, no relabelling.
	user = "root"
	group = "root"
	dynamic_ownership = 0
	remember_owner = 0
	security_driver = "none"
	EOF
}
conf_ok() { [ -f "$conf" ] && grep -qxF '# vmmount tests (scripts/libvirt-up.sh): QEMU as root, no relabelling.' "$conf"; }

if running "$state/libvirtd.pid" libvirtd && running "$state/virtlogd.pid" virtlogd && [ -S "$sock" ] && conf_ok; then
	exit 0
fi
# A daemon started some other way (systemd on a workstation) is used as is.
if [ ! -f "$state/libvirtd.pid" ] && [ -S "$sock" ] && timeout 60 virsh -q -c qemu:///system version >/dev/null 2>&1; then
	log "using the libvirtd already listening on $sock"
	exit 0
fi

getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
id libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
mkdir -p /etc/libvirt /var/log/libvirt /var/lib/libvirt/qemu /var/cache/libvirt /run/libvirt
if ! conf_ok; then
	if [ -f "$conf" ]; then
		sed -i -E '/^[[:space:]]*(user|group|dynamic_ownership|remember_owner|security_driver)[[:space:]]*=/d' "$conf"
	fi
	want_conf >>"$conf"
fi

stop() { # PIDFILE COMM
	local pid i
	if running "$1" "$2"; then
		pid=$(cat "$1")
		kill "$pid" 2>/dev/null || true
		for i in $(seq 100); do running "$1" "$2" || break; sleep 0.1; done
		running "$1" "$2" && kill -9 "$pid" 2>/dev/null || true
	fi
	rm -f "$1"
}

# Half-started or config changed: restart both from scratch.
stop "$state/libvirtd.pid" libvirtd
stop "$state/virtlogd.pid" virtlogd
rm -f "$sock" "$logsock" "$sock-ro" "$sock-admin"

wait_socket() { # PATH SECONDS PIDFILE COMM LOG
	local i
	for i in $(seq $(($2 * 20))); do
		[ -S "$1" ] && return 0
		# Not `running`: until setsid has exec'd, comm is still "setsid".
		if ! pid_alive "$(cat "$3")"; then
			log "$4 exited; last lines of $5:"
			tail -n 20 "$5" >&2 || true
			exit 1
		fi
		sleep 0.05
	done
	log "$1 did not appear within $2 s"
	exit 1
}

# setsid: the daemons leave make's process group, so Ctrl-C of a test run does
# not take them down. The shell is not a process-group leader here, so setsid
# execs in place and $! is the daemon's own PID.
setsid virtlogd 9>&- </dev/null >>/var/log/libvirt/vmmount-virtlogd.log 2>&1 &
echo $! >"$state/virtlogd.pid"
wait_socket "$logsock" 10 "$state/virtlogd.pid" virtlogd /var/log/libvirt/vmmount-virtlogd.log

setsid libvirtd 9>&- </dev/null >>/var/log/libvirt/vmmount-libvirtd.log 2>&1 &
echo $! >"$state/libvirtd.pid"
wait_socket "$sock" 30 "$state/libvirtd.pid" libvirtd /var/log/libvirt/vmmount-libvirtd.log

start=$(date +%s%N)
if ! timeout 120 virsh -q -c qemu:///system capabilities >/dev/null; then
	log "qemu:///system does not answer; see /var/log/libvirt/vmmount-libvirtd.log"
	exit 1
fi

# Test domains left by a killed test run (persistent ones survive restarts).
for dom in $(virsh -q -c qemu:///system list --all --name | grep "^$prefix" || true); do
	virsh -q -c qemu:///system destroy "$dom" >/dev/null 2>&1 || true
	virsh -q -c qemu:///system undefine --nvram --checkpoints-metadata --snapshots-metadata "$dom" >/dev/null 2>&1 || true
	log "removed stale test domain $dom"
done
log "libvirtd $(cat "$state/libvirtd.pid") up on $sock (qemu:///system warmed in $((($(date +%s%N) - start) / 1000000)) ms)"
