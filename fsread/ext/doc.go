// Package ext reads ext2, ext3 and ext4 filesystems from an io.ReaderAt in
// user space, read-only, for vmmount's file-level restore: it implements
// fsys.FileSystem (inode-level lookups, stat, directory listing, symlinks,
// xattrs and random-access file content), so fsys.NewFS gives io/fs over it.
//
// What it reads, and how it matches the kernel:
//   - superblock (a backup one when the primary is damaged), 32/64-bit group
//     descriptors, flex_bg, meta_bg, bigalloc, 1 KiB to 64 KiB blocks;
//   - block maps (direct to triple indirect) and extent trees, sparse files
//     and unwritten extents read as zeros, never the stale bytes on disk;
//   - linear, htree (half_md4, tea, legacy, signed and unsigned, large_dir)
//     and inline directories; casefolded directories (lookups and hashes
//     use the kernel's utf8 nfdicf folding: case, NFD, ignorables);
//   - fast, slow and inline symlinks; device nodes, FIFOs, sockets;
//   - xattrs in the inode, in a block and in ea_inodes, ACLs converted to
//     the posix_acl_xattr form getxattr returns;
//   - metadata_csum: a checksum mismatch is a *fsys.CorruptError for that
//     superblock, group, inode, extent node, directory block or xattr block
//     while the rest stays readable;
//   - a journal that needs recovery is replayed (package jbd2) into an
//     in-memory overlay, so the view is what the kernel shows after its
//     recovery; the image is never written.
//
// Encrypted files and directories are listed, but their content and
// symlink targets are refused with fsys.ErrUnsupported.
//
// Performance: metadata blocks go through a sharded LRU cache with a byte
// budget (Options.CacheBytes), linear directories get a bounded name index
// after their first lookup, and file data is read straight from the image
// into the caller's buffer, one ReadAt per physically contiguous run.
// Extent lookups are a binary search per tree level.
//
// It is not a writer, not a checker (it does not read bitmaps or verify
// free counts) and does not process the orphan list (orphans are unlinked
// inodes, invisible anyway; the kernel would also truncate orphans that
// are being shortened, which changes only their block counts). ext4 fast
// commits cannot be replayed: such a journal is reported in Warnings and
// the image read without it.
//
// Every on-disk value is treated as hostile: offsets and counts are checked
// against the volume before use, recursion is bounded (extent depth, htree
// levels, indirect levels), and caches have fixed byte budgets.
package ext
