// Package restore gets data out of restore points and disk images: guest
// files and directories into a host directory or a PAX tar stream, single
// disks flattened into a standalone image or onto a block device, the VM
// configuration, and whole VMs (disaster recovery under the same identity,
// or a copy under a new one).
//
// Everything read from a guest is hostile input. Files are written only
// below the destination directory: it is opened once, and every file,
// directory, link and special file is created relative to a directory file
// descriptor held from there down, with *at() calls that never follow a
// symlink (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW, openat2 RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS). A guest name that is not one plain path component
// (empty, ".", "..", containing "/" or NUL) is refused and reported with
// its guest path; names with other bytes (control characters, invalid
// UTF-8) are legal on Linux and restored as they are, and always quoted in
// messages. Directories are created mode 0700 and get their own mode,
// owner and times only after their content, so nobody else can enter them
// while they are being filled.
//
// Restore points are checked before anything is written (manifests, the
// chain, image files and sizes, backing files staying inside the point's
// chain, the per-block checksum lists), and every block read from a point
// is checked against its SHA-256 from the backup.
//
// The package never prints: progress goes through internal/progress and
// per-file errors through a callback; summaries come back as values. It
// does not capture backups (package backup) or serve mounts (package
// mount).
package restore
