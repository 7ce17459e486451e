// Package jbd2 reads the jbd2 journal of ext3/ext4 (and the ext3 jbd
// journal, the same format) to find what a recovery would write: for each
// filesystem block, which journal block holds its newest committed copy.
// The caller turns that into an overlay over the volume, so nothing is
// written anywhere.
//
// It follows the kernel's three-pass recovery (fs/jbd2/recovery.c,
// Documentation/filesystems/ext4/journal.rst): scan for the end of the log
// (a block with the wrong magic or sequence, or a descriptor or commit
// block whose checksum fails), collect revoke records of committed
// transactions, then replay the tagged blocks of each committed transaction
// in order, skipping revoked ones and (with checksums v2/v3) data blocks
// whose checksum fails. Supported: v1 and v2 superblocks, 32- and 64-bit
// block numbers, checksums v2 and v3 (v1 checksums are not verified).
// ext4 fast commits cannot be replayed: a journal with pending fast-commit
// blocks is refused with fsys.ErrUnsupported.
//
// It is not a journal writer or checker.
package jbd2
