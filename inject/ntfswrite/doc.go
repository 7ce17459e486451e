// Package ntfswrite writes new files and directories into an NTFS volume,
// replaces files' content in place and sets their times and Windows
// attributes, in user space: what `vmmount inject` uses to put a file (a
// driver, a configuration) into the disk of a Windows VM that is shut off.
// On-disk structures are the ones fsread/ntfs reads (names as in ntfs-3g's
// layout.h); ntfs-3g's sources were read for what it does, not copied.
//
// It never writes to the volume itself. Every change is staged in memory
// (MFT records, index blocks, bitmaps, in units of the smallest of the
// cluster, record and index block sizes) or recorded as runs of clusters
// to fill from a source, and handed to the caller by Changes once Finish
// has encoded everything. The caller (package inject) saves the old bytes
// into an undo file and writes them; a failure before leaves the volume
// untouched. An error after an operation began changing the transaction
// fails it: Finish refuses and nothing may be written.
//
// What it writes:
//   - MFT records taken from $MFT's bitmap (from record 64 on, as
//     ntfs-3g), with the sequence number the record had when freed;
//     $MFT grows by 16 records (or a cluster) in the MFT zone when it has
//     no free record, its run list kept in record 0. Update sequence
//     fixups on every record and index block; the records $MFTMirr holds
//     are written there too.
//   - Clusters from $Bitmap, one run when a long enough one is free,
//     data outside the MFT zone (12.5% of the volume after the MFT) until
//     the rest is full, as ntfs-3g places them. Clusters a replacement
//     frees are released at Finish and not reused by the same transaction,
//     so the old content stays until the new one is written.
//   - Files: $STANDARD_INFORMATION, $FILE_NAME and $DATA, resident when it
//     fits in the record, else non-resident with its run list. Directories:
//     an empty $INDEX_ROOT $I30 (index blocks of the boot sector's size).
//   - Names: a name that is a valid 8.3 name as it is (upper case,
//     "CONFIG.SYS") is stored once in the Win32 & DOS namespace, as
//     Windows stores it; any other name in the POSIX namespace, as ntfs-3g
//     creates every name. No separate 8.3 short name is generated: Windows
//     needs none (it creates none when 8.3 generation is off, the default
//     on data volumes since Windows 8), and a correct one depends on every
//     short name of the directory.
//   - Security: a new file gets its directory's security_id when the
//     directory has one (Windows volumes), so it is accessible exactly as
//     its directory; Windows would compute an inherited descriptor and
//     register it in $Secure, which is not done (see security.go).
//     Without one (mkntfs, ntfs-3g), a copy of the directory's own small
//     descriptor, or ntfs-3g's everyone-full-access one.
//   - $I30 index entries in collation order (the volume's $UpCase, then
//     the exact units: ntfs-3g's COLLATION_FILE_NAME): into the leaf
//     where a name belongs, in the root or in INDX blocks; a full block is
//     split at its median, which goes up into the parent; a root that no
//     longer fits in its record moves into a new block, the tree growing
//     a level (ntfs-3g index.c ntfs_ie_add, ntfs_ib_split,
//     ntfs_ir_reparent). $INDEX_ALLOCATION and $BITMAP $I30 are created
//     or grown as needed. The directory's times and the copies of a
//     file's sizes, times and attributes in its index entries are kept up
//     to date (ntfs_inode_sync_file_name).
//   - Directories and files whose attributes span several records
//     (attribute lists, common for big directories ntfs-3g made) are
//     changed in place: each attribute stays in its record and none is
//     added, so the list never changes.
//   - A careful writer's exit: $LogFile emptied (all 0xFF, the state
//     Windows' format leaves a new log in), as ntfsfix, ntfs-3g's
//     recovery and the Linux kernel driver's read-write mounts do, so
//     Windows starts a new log and nothing in the old one can be replayed
//     over what was written (a log already empty is not rewritten); the
//     dirty flag left clear (a dirty volume is refused); $MFTMirr written
//     with the records it mirrors.
//     $Volume's record is written by every transaction that changes
//     anything (its update sequence number advances), so an undo file of
//     an earlier injection no longer matches once a later one ran.
//
// Open refuses (ErrRefused, with every reason), writing nothing:
//   - a volume marked dirty, or with chkdsk interrupted, or to be
//     upgraded: Windows did not finish with it;
//   - a $LogFile with transactions not checkpointed (unclean shutdown,
//     fast startup on a non-system volume), or with no valid restart
//     page, as ntfs-3g refuses to mount such a volume read-write: writing
//     under the log would be undone or corrupted by its replay;
//   - a hibernated Windows: hiberfil.sys in the root says "hibr" or "HIBR"
//     (hibernation, fast startup) or "rstr" (a resume in progress), or is
//     shorter than its header, as ntfs-3g checks. Windows resuming from
//     its memory image would overwrite or corrupt what was written. "wake"
//     (an image already resumed from, which Windows does not resume from
//     again) and zeros are fine, as for ntfs-3g;
//   - $MFTMirr not matching $MFT: one copy is damaged (run chkdsk);
//   - NTFS versions other than 3.1 (Windows 2000's 3.0 has another
//     record layout); a truncated volume; an $MFT with an attribute list.
//
// Operations refuse: names Windows cannot use (control characters,
// " * / : < > ? \ |, a trailing space or dot, the DOS device names
// CON, PRN, AUX, NUL, COM1-9, LPT1-9, longer than 255 UTF-16 units) and
// names Windows sees as an existing one (equal ignoring case, or an
// existing 8.3 name); compressed target directories (Windows would
// compress new files), EFS-encrypted ones, reparse points (junctions)
// and system directories; replacing system files, directories, files
// with an attribute list, reparse points (symlinks, WOF/CompactOS
// compression, deduplication, cloud placeholders), EFS-encrypted,
// compressed and sparse files; a directory with an attribute list but no
// index blocks (adding them would change the list); index attributes
// split over several records; a record that would overflow (it would
// need an attribute list).
//
// Not maintained: the USN change journal ($Extend\$UsnJrnl) does not
// record the changes, and new files get USN 0; quota charges are not
// updated; no 8.3 short names, no inherited security descriptors. It is
// not a checker or a repairer: metadata it reads is checked as far as
// writing needs (fixups, bounds, run lists, index order and loops), and
// anything inconsistent stops the transaction before anything is
// written. A replaced file's clusters are freed only if $Bitmap has them
// in use and no system file maps them.
package ntfswrite
