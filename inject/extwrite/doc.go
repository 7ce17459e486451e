// Package extwrite writes new files, directories and symlinks into an
// ext2/3/4 filesystem, and replaces regular files and symlinks in place, in
// user space: what `vmmount inject` uses to put a file into the disk of a VM
// that is shut off.
//
// It never writes to the volume itself. Every change is staged in memory
// (metadata blocks) or recorded as a run of blocks to fill from a source
// file (content), and handed to the caller by Changes once Finish has set
// every counter and checksum. The caller (package inject) saves the old
// bytes into an undo file and writes them; a failure before that point
// leaves the volume untouched.
//
// What it writes, as the kernel would (Documentation/filesystems/ext4):
//   - inodes from the inode bitmaps, blocks from the block bitmaps (groups
//     with uninitialized bitmaps are initialized as the kernel does), with
//     group descriptor, superblock and used-directory counters, flex_bg,
//     meta_bg, 64bit descriptors, sparse_super and sparse_super2 layouts;
//   - file content as extents (extent trees of any depth) or, without the
//     extent feature, block maps up to triple indirect blocks;
//   - directory entries in linear directories (a new block when full),
//     htree directories (leaf splits, index node splits and a new tree
//     level, as ext4_dx_add_entry does; hash versions legacy, half_md4 and
//     tea, signed and unsigned) and inline directories (inline_data: into
//     the inline area while it has room, else converted to a block
//     directory);
//   - fast and slow symlinks, mode, owner, and times with nanoseconds and
//     epoch bits where the inode has room for them;
//   - metadata_csum for every object it writes (superblock, group
//     descriptors, bitmaps, inodes, extent blocks, directory leaves and
//     htree nodes), or the older uninit_bg descriptor checksums.
//
// New files and directories are written as block (extent) files even on
// inline_data filesystems. Blocks freed by a replacement are not reused in
// the same transaction, so the old content stays intact until the new one
// is written.
//
// Open refuses (ErrRefused, with the reasons) filesystems it cannot write
// safely: a journal that needs recovery, the error flag or recorded errors,
// not cleanly unmounted, pending orphans, and features it does not maintain
// (bigalloc, quota, mmp, an external journal device, compression, dirdata,
// snapshots, shared blocks, the read-only flag, unknown ones). Operations
// refuse encrypted and casefolded target directories, and immutable,
// append-only, verity or encrypted files to replace.
//
// It is not a checker or a repairer: metadata it reads is checked only as
// far as writing needs (locations within the volume, checksums of what it
// modifies, bounded tree depths), and anything inconsistent stops the
// transaction with an error before anything is written.
package extwrite
