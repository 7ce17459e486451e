// Package testimages builds the disk images vmmount is tested and measured
// on, with real tools (qemu-img, mkfs.*, sgdisk, ntfs-3g, lvm2), together
// with the oracle an independent reader gives for each (qemu-img convert -O
// raw, a kernel loop mount, ntfs-3g). Images are built once and cached under
// $VMMOUNT_TESTIMAGES (default /var/tmp/vmmount-testimages), keyed by name and
// recipe version, so reruns are fast and concurrent test binaries share them.
//
// The pieces:
//   - RichTree writes the test tree (big and deep directories, every kind of
//     link, sparse and preallocated files, xattrs, odd names and times,
//     special files) into any directory; TreeOptions profiles (ExtTree,
//     NTFSTree, FATTree) leave out what a filesystem cannot hold.
//   - A Manifest is what a reader shows of a tree: ScanDir makes one from a
//     host directory (the oracle's mount), ScanFS from a vmmount reader
//     (fsys.FileSystem), Compare lists their differences, WriteJSON and
//     ReadJSON cache an oracle next to its image. HostFS is an
//     fsys.FileSystem over a host directory.
//   - Recipes build images with their oracles, cached: ExtVariants with
//     BuildExt/GetExt (ext2/3/4 feature variants; kernel loop mount, or
//     fuse2fs+debugfs where this kernel cannot mount), NTFSVariants with
//     BuildNTFS/GetNTFS (ntfs-3g), FATVariants with BuildFAT/GetFAT (the
//     source tree), and DiskVariants with BuildDisk/GetDisk: GPT (512 B and
//     4 KiB sectors, hybrid, damaged primary), MBR with logical
//     partitions, no table, and an LVM volume group over two disks, each
//     with its expected Volume list (name, offset, size, fs, label, uuid,
//     oracle manifest).
//   - A real VM for backup, restore and inject tests: LibvirtConn connects to
//     the libvirtd that scripts/libvirt-up.sh starts (`make test` runs it);
//     NewGuestDisk makes an ext4 guest disk (GuestFiles, optional
//     /autorun.sh); StartGuest boots the test guest (GetGuestAssets: Debian
//     cloud kernel + busybox initramfs with qemu-ga and acpid) under TCG and
//     waits for GuestReadyMarker; Guest.WaitConsole, Shutdown (ACPI) and the
//     test cleanup that destroys and undefines it. Package guestcheck proves
//     it end to end.
//
// Nothing here is used by the product; tests, benchmarks and `make demo` use
// it.
package testimages
