// Package mount serves a read-only tree over FUSE (go-fuse v2): synthetic
// directories (disks, VMs, restore points), raw-byte files (whole disks and
// volumes), small text files (VM configuration, error reports), symlinks
// (latest), and guest filesystems grafted in as volumes that open on first
// access.
//
// The tree is described by the caller (Dir, Entry and the node kinds in
// tree.go); this package knows nothing of images, partitions or repositories.
// Guest filesystems are reached through fsread/fsys.FileSystem. Everything is
// immutable, so entries, attributes and page cache are kept for long.
//
// Round trips to this process are what a walk of a cold tree costs, so
// few are made: no OPEN/RELEASE/FLUSH for files and no OPENDIR/RELEASEDIR
// for directories (the kernel then caches every listing, rawfs.go); a
// directory is listed once, its subdirectories are listed ahead by a few
// workers (prefetch.go), and READDIRPLUS carries the attributes of files
// only for programs that stat what they list (plus.go).
//
// Errors: a guest object that cannot be read is EIO for that object only,
// reported once through Options.OnError with its path; a volume that fails
// to open shows a directory holding one file, VMMOUNT-ERROR.txt, with the
// reason, so the rest of the mount keeps working.
package mount
