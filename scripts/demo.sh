#!/usr/bin/env bash
# The main job on an embedded default: make a small VM disk (GPT, an EFI
# system partition and an ext4 root), back it up into a local repository
# twice (full, then incremental), list the restore points, mount the latest
# one through FUSE and browse it, then unmount.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$PWD/bin/vmmount
work=${DEMO_DIR:-/var/tmp/vmmount-demo}
repo=$work/repository
mnt=$work/mnt
if mountpoint -q "$mnt" 2>/dev/null; then "$bin" umount --lazy "$mnt" || true; fi
rm -rf "$work"; mkdir -p "$work/tree/etc" "$work/tree/home/alice" "$work/esp/EFI/BOOT" "$mnt"
echo "demo-vm" >"$work/tree/etc/hostname"
printf 'LABEL=demo-root / ext4 defaults 0 1\n' >"$work/tree/etc/fstab"
seq 1 100000 >"$work/tree/home/alice/numbers.txt"
echo "pretend bootloader" >"$work/esp/EFI/BOOT/BOOTX64.EFI"

step() { printf '\n== %s\n' "$*"; }

step "making a 512 MiB VM disk: GPT, EFI system partition (FAT32), ext4 root"
disk=$work/demo-vda.raw
truncate -s 512M "$disk"
sgdisk -n 1:1MiB:+100MiB -t 1:ef00 -c 1:ESP -n 2:0:0 -t 2:8300 -c 2:root "$disk" >/dev/null
mkfs.vfat -F 32 -s 1 -n ESP -C "$work/esp.img" $((100 * 1024)) >/dev/null
mcopy -s -i "$work/esp.img" "$work/esp/EFI" ::/
dd if="$work/esp.img" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
mkfs.ext4 -q -F -L demo-root -d "$work/tree" "$work/root.img" 410M >/dev/null
dd if="$work/root.img" of="$disk" bs=1M seek=101 conv=notrunc,sparse status=none
rm "$work/esp.img" "$work/root.img"
qemu-img convert -f raw -O qcow2 "$disk" "$work/demo-vda.qcow2"
rm "$disk"
disk=$work/demo-vda.qcow2

step "vmmount info $disk"
"$bin" info "$disk"

step "vmmount backup --repo $repo --name demo --disk vda=$disk   (full point)"
"$bin" backup --repo "$repo" --name demo --disk "vda=$disk"

step "the VM writes a file; vmmount backup again (incremental point: only changed blocks)"
# Change the guest disk offline the way a guest would: through a file.
qemu-img convert -O raw "$disk" "$work/tmp.raw"
printf 'written after the first backup\n' >"$work/note.txt"
offset=$((101 * 1024 * 1024))
loopdev=$(losetup --find --show --offset $offset "$work/tmp.raw")
mkdir -p "$work/loop"; mount "$loopdev" "$work/loop"
cp "$work/note.txt" "$work/loop/home/alice/note.txt"
umount "$work/loop"; losetup -d "$loopdev"
qemu-img convert -f raw -O qcow2 "$work/tmp.raw" "$disk"; rm "$work/tmp.raw"
sleep 1 # restore point ids have one-second resolution
"$bin" backup --repo "$repo" --name demo --disk "vda=$disk"

step "vmmount list --repo $repo"
"$bin" list --repo "$repo"

step "vmmount verify --repo $repo   (checksums, image structure, every filesystem)"
"$bin" verify --repo "$repo"

step "vmmount mount --background --repo $repo demo/latest $mnt"
"$bin" mount --background --repo "$repo" demo/latest "$mnt"
trap '"$bin" umount --lazy "$mnt" 2>/dev/null || true' EXIT

step "ls $mnt   (volumes, the domain configuration, raw bytes in .raw/)"
ls -la "$mnt"
step "ls -l $mnt/p2/home/alice"
ls -l "$mnt/p2/home/alice"
step "cat $mnt/p2/home/alice/note.txt   (from the incremental point)"
cat "$mnt/p2/home/alice/note.txt"
step "find $mnt/p1   (the EFI system partition)"
find "$mnt/p1"

step "vmmount umount $mnt"
"$bin" umount "$mnt"
trap - EXIT
echo "done: repository in $repo"
