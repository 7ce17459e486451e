#!/usr/bin/env bash
# The main job on an embedded default: make a small VM disk, describe it.
# It grows as vmmount grows (backup into a local repository, mount, list).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/bin/vmmount
work=${DEMO_DIR:-/var/tmp/vmmount-demo}
rm -rf "$work"; mkdir -p "$work/tree/etc" "$work/tree/home/alice"
echo "demo-vm" >"$work/tree/etc/hostname"
printf 'UUID=demo / ext4 defaults 0 1\n' >"$work/tree/etc/fstab"
seq 1 100000 >"$work/tree/home/alice/numbers.txt"

echo "== making a 256 MiB VM disk with an ext4 filesystem (mkfs.ext4 -d, qemu-img)"
mkfs.ext4 -q -F -L demo-root -d "$work/tree" "$work/disk.raw" 256M
qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$work/disk.qcow2"
rm "$work/disk.raw"

echo "== vmmount info $work/disk.qcow2"
"$bin" info "$work/disk.qcow2"
