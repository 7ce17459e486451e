// Package fat reads FAT12, FAT16 and FAT32 volumes (EFI system partitions,
// boot partitions, data disks) in user space, as the Linux vfat driver
// shows them, behind the inode-level fsys.FileSystem interface.
//
// It follows the Microsoft "FAT: General Overview of On-Disk Format"
// specification (v1.03) for the boot sector, the FAT type decision by
// cluster count and the directory entry layout, and the Linux vfat driver
// (fs/fat) for what a reader shows:
//
//   - Names: VFAT long names when their checksum matches the 8.3 entry that
//     follows them, else the 8.3 name with the NT lowercase flags (byte 12,
//     bits 0x08 base and 0x10 extension) applied, as vfat's default
//     shortname=mixed does; 8.3 bytes above 0x7f are code page 437. "." and
//     ".." entries, deleted (0xE5) and free (0x00) slots and the volume
//     label are not listed. Like the kernel, a 0x00 slot does not end the
//     scan. Lookup is case-insensitive and also finds the 8.3 alias, as
//     vfat's is.
//   - Inode numbers: the root is 1 (the kernel's MSDOS_ROOT_INO); any other
//     inode is the byte offset of its 8.3 directory entry in the volume
//     divided by 32, which is stable and lets Stat decode the entry again.
//   - Times: the on-disk fields are local time without a zone; they are read
//     as UTC, which is what the kernel shows with tz=UTC. mtime has 2 s
//     precision, ctime equals mtime (the kernel does the same), atime is the
//     access date at midnight, Btime is the creation time with its 10 ms
//     field. The root directory has no entry and reads as time 0.
//   - Mode, uid, gid: synthesized like vfat mounted by root with its defaults
//     (uid=0, gid=0, fmask=dmask=umask 022): directories 0755, files 0755,
//     files with the read-only attribute 0555. nlink is 1 for files and
//     2 + subdirectories for directories, as fat_subdirs counts.
//
// FSInfo is not read: free space is counted from the FAT. Cluster chains are
// bounded by the cluster count (loops are errors), and by the file size for
// files; directories are limited to 2 MiB (65536 entries, the spec's limit).
//
// Not for: writing, exFAT, FAT volumes inside partition tables (callers pass
// the partition's bytes).
package fat
