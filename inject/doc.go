// Package inject writes files into the disk of a virtual machine that is
// shut off: `vmmount inject`. Writing into someone's filesystem is the most
// dangerous thing vmmount does, so Run is built around refusing what it
// cannot do safely and being able to put every byte back.
//
// A run, in order:
//  1. Target: a libvirt domain (its disks from its XML; it must be shut
//     off and have no managed save image) or image files of one VM.
//  2. With Options.Repo, a restore point of the VM (package backup).
//  3. QEMU's image locks on every disk (the OFD byte locks QEMU itself
//     takes, so no VM can start meanwhile and an image a running QEMU or a
//     backup holds is refused), then the domain state again, no loop device
//     on the images and, when libvirtd answers, no running domain using
//     them.
//  4. The disks are opened read-only (imagefmt, fsread); GuestDir names a
//     volume (a partition or a whole-disk filesystem) and a directory,
//     reached through symlinks as the guest would.
//  5. The filesystem writer (package extwrite for ext2/3/4, ntfswrite for
//     NTFS, both behind fsWriter) stages every change in memory: nothing is
//     written when anything is refused or fails here.
//     With DryRun, Run stops and reports the changes.
//  6. Commit. The old bytes of every range about to change go into the
//     undo file and are synced before the range is written. A raw image
//     is written in place. A qcow2 image is written through qcow2.RW
//     (refcounts kept right, new clusters appended): the undo file saves
//     the header cluster, L1 and refcount tables, refcount blocks, the L2
//     tables of the clusters written and those clusters, and the file's
//     length; after the writes, a check confirms every guest cluster
//     written is where it was or past the old end.
//  7. Verification: the filesystem is read back through vmmount's own
//     reader (fsread/ext checks every checksum; fsread/ntfs for NTFS): each
//     file written must have its type, mode, owner, size and content (the
//     source read again).
//  8. A commit record ends the undo file. Any failure in 6 or 7, Ctrl-C
//     included, writes the saved bytes back (and cuts a qcow2 image to its
//     old length): the image is as it was.
//
// Undo restores an image from its undo file byte for byte, after checking
// that every range still holds what the injection wrote: an image changed
// since (the VM ran) is refused (ErrChanged), because writing old bytes
// under later changes would corrupt it. An undo file without a commit
// record (the process died) is undone too: each range holds its old or its
// new bytes.
//
// Refused, writing nothing (ErrRefused), and why:
//   - a domain that is not shut off (its guest has the filesystem mounted),
//     or has a managed save image (its saved memory expects the disks
//     unchanged); an image another process holds QEMU's write or
//     no-share-write lock on, or a running domain uses, or that is attached
//     to a loop device on this host: writing under a running guest (or a
//     host mount) corrupts its filesystem;
//   - a filesystem whose journal needs recovery or holds transactions, with
//     the error flag or recorded errors, not cleanly unmounted, or with
//     orphans pending: the writer would build on metadata the kernel has
//     not settled; run e2fsck or boot the VM once first;
//   - ext features the writer does not maintain (extwrite's list: bigalloc,
//     quota, mmp, journal_dev, compression, dirdata, snapshot,
//     shared_blocks, read-only, unknown ones), encrypted or casefolded
//     target directories, immutable, append-only, verity or encrypted
//     files to replace: what it writes would be wrong or would break them;
//   - LVM logical volumes (a write needs the LV's mapping to the disks,
//     not done yet), filesystems other than ext2/3/4 and NTFS (whose own
//     refusals ntfswrite lists; on NTFS, --owner, --mode and symlinks),
//     image formats other than raw and qcow2, qcow2 images that are dirty, corrupt, encrypted,
//     have persistent dirty bitmaps (they would go stale), an external data
//     file or extended L2 entries;
//   - a name that exists without Overwrite, or exists as another type
//     (only regular files and symlinks are replaced, in place); device
//     nodes, FIFOs and sockets as sources;
//   - not enough free space for the undo file, or for a qcow2 image to
//     grow.
//
// It is not a general-purpose filesystem writer: it creates and replaces;
// it never deletes, renames or truncates other files. New files get no
// SELinux label or other xattrs.
package inject
