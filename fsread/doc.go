// Package fsread finds and opens what is on a VM's disks: partition tables
// (package part), LVM2 volume groups (package lvm) and the guest filesystems
// on the volumes they define (ext, ntfs, fat), in user space and read-only.
//
// OpenSet takes the disks of one VM (any imagefmt.Image) and returns a Set:
// every volume named into one namespace that `vmmount ls`, `info --json`,
// the FUSE mount and restore all use:
//
//	one disk:       /p1/etc/fstab   /fs/...   /vg0-root/...
//	several disks:  /vda/p1/...     /vdb/fs/...   /vg0-root/... (LVs at the top)
//
// Partitions are "p<N>" as Linux numbers them (logical MBR partitions from
// 5), a filesystem written on a disk without partition table is "fs", an LV
// is "<vg>-<lv>" with "-" doubled inside each name as /dev/mapper writes it.
// With several disks each disk is a directory named after it (DiskSource.Name:
// the guest device or the image's base name).
//
// Opening a Set is cheap: it reads partition tables, LVM labels and
// metadata, and the superblock magics that give each volume's type, label
// and UUID (probe.go; blkid's type names). A filesystem is opened on first
// use of Volume.FS and cached, with its error, for every later caller.
// Types vmmount detects but does not read (xfs, btrfs, exfat, swap, luks,
// md RAID members, LVM PVs, unknown content) are listed with a reason that
// wraps fsys.ErrUnsupported. Damage stays local: a broken partition table
// makes one disk's volumes unavailable (Disk.Err), broken LVM metadata one
// VG (Set.Errors), a missing disk only the LVs that need its PVs.
//
// Filesystem readers plug in through the openers table in registry.go, one
// line each.
//
// It is not for writing, not for FUSE (package mount serves a Set), and it
// does not assemble md RAID arrays or decrypt LUKS.
package fsread
