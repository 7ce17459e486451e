// Package ntfs reads NTFS volumes in user space behind the inode-level
// fsys.FileSystem interface, showing what ntfs-3g shows when root mounts
// the volume with its default options, so that scripts written against an
// ntfs-3g mount keep working.
//
// What it shows:
//
//   - Inodes are MFT record numbers (hardlinks share one; the root is 5).
//     Names come from the $I30 directory index, walked as the B+ tree it is
//     from $INDEX_ROOT through $INDEX_ALLOCATION blocks, so each hardlink
//     appears under its own name; DOS-only (8.3) names are skipped, and so
//     are the metafiles (records below 16: $MFT, $LogFile, ..., $Extend) and
//     the root's entry for itself. Lookups are case-sensitive, as ntfs-3g's.
//   - nlink counts the names that are not DOS-only (ntfs-3g's posix_nlink
//     view for files); directories have nlink 1 as ntfs-3g shows them by
//     default (so find(1) does not rely on it).
//   - Mode, uid, gid: ntfs-3g's defaults without a user mapping: uid 0,
//     gid 0, permissions 0777 for everything (umask=0).
//   - Times: $STANDARD_INFORMATION's, in 100 ns units: atime = last access,
//     mtime = last data change, ctime = last MFT change, Btime = creation.
//   - Content: resident, non-resident, sparse, compressed (LZNT1, per
//     compression unit) and fragmented $DATA, extents gathered through
//     $ATTRIBUTE_LIST. Bytes past the initialized size read as zeros.
//   - Special files: reparse points IO_REPARSE_TAG_SYMLINK and MOUNT_POINT
//     (junctions) are symlinks whose targets are translated as ntfs-3g's
//     ntfs_make_symlink does: relative targets are kept (with "/"), absolute
//     ones on this volume become Options.MountPoint + "/" + the path with
//     the case the directories have, other drives and volumes point into
//     MountPoint + "/.NTFS-3G/". WSL symlinks (LX_SYMLINK) and Interix
//     symlinks, FIFOs, sockets and devices (system files "IntxLNK", ...)
//     are decoded; other reparse points show as ntfs-3g shows them: a
//     symlink to "unsupported reparse tag 0x........".
//   - Extended attributes, by ntfs-3g's names: each named $DATA stream is
//     "user.<stream>"; "system.ntfs_attrib_be" (the Windows attribute flags,
//     4 bytes big-endian) is listed for every inode; "system.ntfs_attrib",
//     "system.ntfs_times", "system.ntfs_times_be", "system.ntfs_crtime",
//     "system.ntfs_crtime_be", "system.ntfs_reparse_data" and
//     "system.ntfs_object_id" can be read by name as with ntfs-3g.
//   - A volume whose $Volume dirty flag is set or whose $LogFile is not
//     clean is read as it is on disk (no log replay), with a warning.
//
// Damage is reported for the object it touches: a bad MFT record, fixup,
// attribute, runlist or index block is a *fsys.CorruptError naming the
// volume, the record and the byte offset, while the rest stays readable.
//
// The LZNT1 decompressor is go-ntfs's (www.velocidex.com/golang/go-ntfs),
// called under recover. Its stream reader is not used: it maps compressed
// files wrongly when a compression unit's sparse tail is merged with the
// following sparse units (the common case for files with zeros in them),
// returning short reads without an error, and looks runs up linearly.
//
// Not for: writing, $EA-based WSL device numbers, encrypted ($EFS) file
// content (refused with fsys.ErrUnsupported), WOF/system-compressed files
// (shown as ntfs-3g without plugins shows them), $LogFile replay.
package ntfs
