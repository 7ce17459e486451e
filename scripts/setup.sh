#!/usr/bin/env bash
# Installs what vmmount's build, tests, benchmarks and demo need on a Debian
# machine (run as root). Idempotent: packages already present are not
# reinstalled, so it is cheap to call before every `make test`.
set -euo pipefail

PACKAGES=(
	qemu-utils          # qemu-img: the oracle and fixture maker for image formats
	libvhdi-utils       # vhdimount: independent reader of differencing VHD/VHDX, 4 KiB-sector VHDX
	e2fsprogs           # mkfs.ext*, debugfs, e2fsck
	fuse2fs             # oracle for ext images the kernel cannot mount (64 KiB blocks, casefold)
	ntfs-3g             # mkntfs, ntfs-3g: NTFS fixtures and oracle
	dosfstools mtools   # mkfs.vfat, mcopy: FAT fixtures
	gdisk fdisk         # sgdisk, sfdisk: partition tables
	lvm2                # pvcreate/vgcreate/lvcreate for LVM fixtures
	fuse3               # fusermount3 for non-root mounts
	util-linux          # losetup, mount
	xxd
	libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
	qemu-system-x86 qemu-guest-agent busybox-static
)
strip() { sed 's/#.*//' <<<"$1"; }

missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
if ((${#missing[@]})); then
	if [ "$(id -u)" != 0 ]; then
		echo "setup: missing packages ${missing[*]}; run as root or install them" >&2
		exit 1
	fi
	echo "setup: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Go modules, so tests do not race to download them.
go mod download

# Debian's udev gives /dev/fuse mode 0666 so that users can mount through
# fusermount3; containers often create the node 0600, which only root can use.
if [ "$(id -u)" = 0 ] && [ -c /dev/fuse ] && [ "$(stat -c %a /dev/fuse)" != 666 ]; then
	chmod 0666 /dev/fuse
fi
