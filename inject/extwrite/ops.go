package extwrite

import (
	"errors"
	"fmt"
	"time"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// RootIno is the root directory's inode.
const RootIno = 2

// Attr is the metadata of something created.
type Attr struct {
	Perm  uint16 // permission bits (07777)
	Uid   uint32
	Gid   uint32
	Atime time.Time // zero means the transaction's time
	Mtime time.Time
}

// ReplaceAttr says what a replacement changes besides the content; nil
// fields keep the inode's value.
type ReplaceAttr struct {
	Perm  *uint16
	Uid   *uint32
	Gid   *uint32
	Atime time.Time // zero: now
	Mtime time.Time
}

// Info is an inode's metadata.
type Info struct {
	Ino   uint32
	Mode  uint16 // type and permission bits
	Size  uint64
	Uid   uint32
	Gid   uint32
	Links uint16
	Flags uint32
}

func (i *Info) IsDir() bool     { return i.Mode&sIFMT == sIFDIR }
func (i *Info) IsRegular() bool { return i.Mode&sIFMT == sIFREG }
func (i *Info) IsSymlink() bool { return i.Mode&sIFMT == sIFLNK }

// Stat returns an inode's metadata as the transaction sees it.
func (f *FS) Stat(ino uint32) (*Info, error) {
	n, err := f.readInode(ino)
	if err != nil {
		return nil, err
	}
	return &Info{Ino: ino, Mode: n.d.Mode, Size: f.size(n), Uid: n.d.Uid(), Gid: n.d.Gid(),
		Links: n.d.LinksCount, Flags: n.d.Flags}, nil
}

// checkName refuses names a directory cannot hold.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("name %q: %w", name, ErrRefused)
	case len(name) > disklayout.NameMax:
		return fmt.Errorf("name %.40q...: longer than %d bytes: %w", name, disklayout.NameMax, ErrRefused)
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' || name[i] == 0 {
			return fmt.Errorf("name %q holds '/' or NUL: %w", name, ErrRefused)
		}
	}
	return nil
}

// openDir reads a directory that entries may be added to.
func (f *FS) openDir(ino uint32) (*inode, error) {
	n, err := f.readInode(ino)
	if err != nil {
		return nil, err
	}
	switch {
	case !n.isDir():
		return nil, fmt.Errorf("%s: inode %d is not a directory: %w", f.label, ino, ErrRefused)
	case n.flag(disklayout.FlagEncrypt):
		return nil, f.refuse("directory inode %d is encrypted (names and content would have to be encrypted with the user's key)", ino)
	case n.flag(disklayout.FlagCasefold) && f.sb.HasIncompat(disklayout.IncompatCasefold):
		return nil, f.refuse("directory inode %d is casefolded (case-insensitive names are not handled)", ino)
	case n.flag(disklayout.FlagImmutable):
		return nil, f.refuse("directory inode %d is immutable", ino)
	}
	return n, nil
}

// Lookup finds name in directory dir; a missing name wraps ErrNotExist.
func (f *FS) Lookup(dir uint32, name string) (uint32, error) {
	n, err := f.readInode(dir)
	if err != nil {
		return 0, err
	}
	if !n.isDir() {
		return 0, fmt.Errorf("%s: inode %d is not a directory: %w", f.label, dir, ErrRefused)
	}
	if n.flag(disklayout.FlagEncrypt) {
		return 0, f.refuse("directory inode %d is encrypted", dir)
	}
	if n.flag(disklayout.FlagCasefold) && f.sb.HasIncompat(disklayout.IncompatCasefold) {
		return 0, f.refuse("directory inode %d is casefolded (case-insensitive names are not handled)", dir)
	}
	if err := checkName(name); err != nil {
		return 0, err
	}
	ino, _, err := f.lookup(n, []byte(name))
	if err != nil {
		return 0, err
	}
	if ino == 0 {
		return 0, fmt.Errorf("%s: %q in directory inode %d: %w", f.label, name, dir, ErrNotExist)
	}
	return ino, nil
}

// prepareLink opens the directory and checks the name is free.
func (f *FS) prepareLink(dir uint32, name string) (*inode, error) {
	if f.finished {
		return nil, errors.New("extwrite: transaction already finished")
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	d, err := f.openDir(dir)
	if err != nil {
		return nil, err
	}
	ino, _, err := f.lookup(d, []byte(name))
	if err != nil {
		return nil, err
	}
	if ino != 0 {
		return nil, fmt.Errorf("%s: %q in directory inode %d: %w", f.label, name, dir, ErrExist)
	}
	return d, nil
}

// Mkdir creates directory name in dir and returns its inode.
func (f *FS) Mkdir(dir uint32, name string, a Attr) (uint32, error) {
	d, err := f.prepareLink(dir, name)
	if err != nil {
		return 0, err
	}
	n, err := f.newInode(d, sIFDIR|a.Perm&permMax, &a)
	if err != nil {
		return 0, err
	}
	_, phys, b, err := f.dirAppendBlock(n)
	if err != nil {
		return 0, err
	}
	f.initDirBlock(n, b, d.ino)
	if err := f.writeInode(n); err != nil {
		return 0, err
	}
	f.event(Event{Op: OpMkdir, Ino: n.ino, Dir: d.ino, Name: name, Mode: n.d.Mode, Blocks: []Extent{{phys, 1}}})
	if err := f.addEntry(d, []byte(name), n.ino, f.entryType(sIFDIR)); err != nil {
		return 0, err
	}
	if err := f.incLinks(d); err != nil {
		return 0, err
	}
	f.touchDir(d)
	if err := f.writeInode(d); err != nil {
		return 0, err
	}
	return n.ino, nil
}

// incLinks counts a new subdirectory in its parent: with dir_nlink a
// count that would pass 65000 becomes 1, "many" (ext4_inc_count).
func (f *FS) incLinks(d *inode) error {
	const linkMax = 65000
	switch {
	case d.d.LinksCount == 1 && f.sb.HasRoCompat(disklayout.RoCompatDirNlink):
	case d.d.LinksCount >= linkMax:
		if !f.sb.HasRoCompat(disklayout.RoCompatDirNlink) {
			return f.refuse("directory inode %d has %d links, the most without dir_nlink", d.ino, d.d.LinksCount)
		}
		d.d.LinksCount = 1
	default:
		d.d.LinksCount++
	}
	return nil
}

// touchDir sets a changed directory's mtime and ctime.
func (f *FS) touchDir(d *inode) {
	f.setMtime(d, f.now)
	f.setCtime(d, f.now)
}

// Create creates regular file name in dir holding c.
func (f *FS) Create(dir uint32, name string, a Attr, c Content) (uint32, error) {
	d, err := f.prepareLink(dir, name)
	if err != nil {
		return 0, err
	}
	n, err := f.newInode(d, sIFREG|a.Perm&permMax, &a)
	if err != nil {
		return 0, err
	}
	blocks, err := f.writeContent(n, c)
	if err != nil {
		return 0, err
	}
	if err := f.writeInode(n); err != nil {
		return 0, err
	}
	f.event(Event{Op: OpCreate, Ino: n.ino, Dir: d.ino, Name: name, Size: c.Size(), Mode: n.d.Mode, Blocks: blocks})
	if err := f.addEntry(d, []byte(name), n.ino, f.entryType(sIFREG)); err != nil {
		return 0, err
	}
	f.touchDir(d)
	if err := f.writeInode(d); err != nil {
		return 0, err
	}
	return n.ino, nil
}

// writeContent allocates blocks for c near the inode, maps them, and
// records the runs to fill; the inode holds no blocks before.
func (f *FS) writeContent(n *inode, c Content) ([]Extent, error) {
	size := c.Size()
	if size < 0 {
		return nil, fmt.Errorf("extwrite: negative content size")
	}
	if err := f.setSize(n, uint64(size)); err != nil {
		return nil, err
	}
	nb := (uint64(size) + uint64(f.bs) - 1) / uint64(f.bs)
	if !f.hasExtents() {
		if _, _, ok := f.blockMapPath(max(nb, 1) - 1); !ok {
			return nil, f.refuse("a file of %d bytes is larger than block maps address with %d-byte blocks", size, f.bs)
		}
	}
	var out []Extent
	goal := f.groupFirst(uint64(n.ino-1) / f.ipg)
	for lblk := uint64(0); lblk < nb; {
		start, got, err := f.allocRun(goal, nb-lblk)
		if err != nil {
			return nil, err
		}
		if err := f.mapAppend(n, lblk, start, got); err != nil {
			return nil, err
		}
		if err := f.addBlocks(n, int64(got)); err != nil {
			return nil, err
		}
		off := int64(lblk) * int64(f.bs)
		f.st.data = append(f.st.data, dataRun{blk: start, n: got, src: c, off: off, length: min(size-off, int64(got)*int64(f.bs))})
		out = appendExtent(out, start, got)
		lblk += got
		goal = start + got
	}
	return out, nil
}

// Symlink creates symlink name in dir pointing at target: in i_block when
// shorter than 60 bytes ("fast"), else in one block.
func (f *FS) Symlink(dir uint32, name, target string, a Attr) (uint32, error) {
	if err := f.checkTarget(target); err != nil {
		return 0, err
	}
	d, err := f.prepareLink(dir, name)
	if err != nil {
		return 0, err
	}
	n, err := f.newInode(d, sIFLNK|0o777, &a)
	if err != nil {
		return 0, err
	}
	blocks, err := f.writeLink(n, target)
	if err != nil {
		return 0, err
	}
	if err := f.writeInode(n); err != nil {
		return 0, err
	}
	f.event(Event{Op: OpSymlink, Ino: n.ino, Dir: d.ino, Name: name, Size: int64(len(target)), Mode: n.d.Mode, Blocks: blocks, Note: "-> " + target})
	if err := f.addEntry(d, []byte(name), n.ino, f.entryType(sIFLNK)); err != nil {
		return 0, err
	}
	f.touchDir(d)
	if err := f.writeInode(d); err != nil {
		return 0, err
	}
	return n.ino, nil
}

func (f *FS) checkTarget(target string) error {
	if target == "" || len(target) >= min(f.bs, 4096) {
		return fmt.Errorf("symlink target of %d bytes: %w", len(target), ErrRefused)
	}
	for i := 0; i < len(target); i++ {
		if target[i] == 0 {
			return fmt.Errorf("symlink target holds NUL: %w", ErrRefused)
		}
	}
	return nil
}

// writeLink stores a symlink target in an inode that holds nothing.
func (f *FS) writeLink(n *inode, target string) ([]Extent, error) {
	if err := f.setSize(n, uint64(len(target))); err != nil {
		return nil, err
	}
	if len(target) < disklayout.IBlockSize {
		// Fast symlinks have no extent tree (e2fsck rejects the flag).
		n.d.Flags &^= disklayout.FlagExtents
		b := make([]byte, disklayout.IBlockSize)
		copy(b, target)
		n.setIblock(b)
		return nil, nil
	}
	if f.hasExtents() {
		f.initExtents(n)
	} else {
		n.d.Flags &^= disklayout.FlagExtents
		n.d.Block = [disklayout.NBlocks]uint32{}
	}
	phys, _, err := f.allocRun(f.groupFirst(uint64(n.ino-1)/f.ipg), 1)
	if err != nil {
		return nil, err
	}
	if err := f.mapAppend(n, 0, phys, 1); err != nil {
		return nil, err
	}
	if err := f.addBlocks(n, 1); err != nil {
		return nil, err
	}
	b, err := f.st.fresh(phys)
	if err != nil {
		return nil, err
	}
	copy(b, target)
	return []Extent{{phys, 1}}, nil
}

// checkReplace refuses inodes whose content must not change.
func (f *FS) checkReplace(n *inode) error {
	switch {
	case n.flag(disklayout.FlagImmutable):
		return f.refuse("inode %d is immutable", n.ino)
	case n.flag(disklayout.FlagAppend):
		return f.refuse("inode %d is append-only", n.ino)
	case n.flag(disklayout.FlagVerity):
		return f.refuse("inode %d has fs-verity (its Merkle tree would go stale)", n.ino)
	case n.flag(disklayout.FlagEncrypt):
		return f.refuse("inode %d is encrypted", n.ino)
	case n.flag(disklayout.FlagEaInode):
		return f.refuse("inode %d holds an xattr value", n.ino)
	}
	return nil
}

// release frees everything an inode maps (data, tree and indirect blocks,
// inline data) and leaves it empty: i_blocks counts only its xattr block.
func (f *FS) release(n *inode) ([]Extent, error) {
	var runs []Extent
	add := func(start, k uint64) { runs = appendExtent(runs, start, k) }
	seen := map[uint64]bool{}
	meta := func(blk uint64) error {
		if seen[blk] {
			return f.corrupt("inode %d maps block %d twice", n.ino, blk)
		}
		seen[blk] = true
		add(blk, 1)
		return nil
	}
	switch {
	case n.flag(disklayout.FlagInlineData):
		if err := f.removeSystemData(n); err != nil {
			return nil, err
		}
		n.d.Flags &^= disklayout.FlagInlineData
	case n.ftype() == sIFLNK && f.isFastSymlink(n):
		// A fast symlink: the target is in i_block.
	case n.flag(disklayout.FlagExtents):
		err := f.extentWalk(n, func(_ uint32, start uint64, length uint32) error {
			if start < f.firstData || start >= f.blocks || f.blocks-start < uint64(length) {
				return f.corrupt("inode %d: extent at %d+%d is outside the volume", n.ino, start, length)
			}
			add(start, uint64(length))
			return nil
		}, meta)
		if err != nil {
			return nil, err
		}
	default:
		if err := f.blockMapWalk(n, func(blk uint64) error { add(blk, 1); return nil }, meta); err != nil {
			return nil, err
		}
	}
	var total uint64
	for _, r := range runs {
		total += r.Len
	}
	if want := f.sectors(n) - min(f.sectors(n), f.xattrSectors(n)); total*uint64(f.bs/512) != want {
		return nil, f.corrupt("inode %d maps %d blocks but i_blocks counts %d sectors for them", n.ino, total, want)
	}
	for _, r := range runs {
		if err := f.freeBlocks(r.Start, r.Len); err != nil {
			return nil, err
		}
	}
	n.d.Block = [disklayout.NBlocks]uint32{}
	n.d.Flags &^= disklayout.FlagExtents | disklayout.FlagHugeFile
	if err := f.setSectors(n, f.xattrSectors(n)); err != nil {
		return nil, err
	}
	return runs, nil
}

// applyReplace sets what a replacement changes besides the content.
func (f *FS) applyReplace(n *inode, a *ReplaceAttr) {
	if a.Perm != nil {
		n.d.Mode = n.d.Mode&sIFMT | *a.Perm&permMax
	}
	uid, gid := n.d.Uid(), n.d.Gid()
	if a.Uid != nil {
		uid = *a.Uid
	}
	if a.Gid != nil {
		gid = *a.Gid
	}
	setOwner(n, uid, gid)
	f.setAtime(n, orNow(a.Atime, f.now))
	f.setMtime(n, orNow(a.Mtime, f.now))
	f.setCtime(n, f.now)
}

// Replace gives regular file ino the content c, in place: the inode, its
// links, flags and xattrs stay; its old blocks are freed.
func (f *FS) Replace(ino uint32, c Content, a ReplaceAttr) error {
	n, err := f.readInode(ino)
	if err != nil {
		return err
	}
	if n.ftype() != sIFREG {
		return fmt.Errorf("%s: inode %d is not a regular file: %w", f.label, ino, ErrRefused)
	}
	if err := f.checkReplace(n); err != nil {
		return err
	}
	freed, err := f.release(n)
	if err != nil {
		return err
	}
	if f.hasExtents() {
		f.initExtents(n)
	}
	blocks, err := f.writeContent(n, c)
	if err != nil {
		return err
	}
	f.applyReplace(n, &a)
	if err := f.writeInode(n); err != nil {
		return err
	}
	f.event(Event{Op: OpReplace, Ino: ino, Size: c.Size(), Mode: n.d.Mode, Blocks: blocks, Freed: freed})
	return nil
}

// ReplaceSymlink points symlink ino at target, in place.
func (f *FS) ReplaceSymlink(ino uint32, target string, a ReplaceAttr) error {
	if err := f.checkTarget(target); err != nil {
		return err
	}
	n, err := f.readInode(ino)
	if err != nil {
		return err
	}
	if n.ftype() != sIFLNK {
		return fmt.Errorf("%s: inode %d is not a symlink: %w", f.label, ino, ErrRefused)
	}
	if err := f.checkReplace(n); err != nil {
		return err
	}
	freed, err := f.release(n)
	if err != nil {
		return err
	}
	blocks, err := f.writeLink(n, target)
	if err != nil {
		return err
	}
	a.Perm = nil
	f.applyReplace(n, &a)
	if err := f.writeInode(n); err != nil {
		return err
	}
	f.event(Event{Op: OpReplaceLink, Ino: ino, Size: int64(len(target)), Mode: n.d.Mode, Blocks: blocks, Freed: freed, Note: "-> " + target})
	return nil
}

// Finish ends the transaction: descriptor and bitmap checksums, the
// superblock counters and checksum. Nothing may be changed after it.
func (f *FS) Finish() error {
	if f.finished {
		return nil
	}
	if err := f.sealGroups(); err != nil {
		return err
	}
	sb := f.sbRaw
	fb := int64(f.sb.FreeBlocksCount()) + f.freeBlocksDelta
	fi := int64(f.sb.FreeInodesCount) + f.freeInodesDelta
	if fb < 0 || fi < 0 || uint64(fb) > f.blocks || uint64(fi) > f.inodes {
		return f.corrupt("superblock free counts go out of range (%d blocks, %d inodes)", fb, fi)
	}
	le.PutUint32(sb[sbFreeBlocksLo:], uint32(fb))
	if f.sb.HasIncompat(disklayout.Incompat64bit) {
		le.PutUint32(sb[sbFreeBlocksHi:], uint32(uint64(fb)>>32))
	}
	le.PutUint32(sb[sbFreeInodes:], uint32(fi))
	le.PutUint32(sb[sbRoCompat:], f.sb.FeatureRoCompat)
	if f.csum {
		le.PutUint32(sb[sbChecksum:], disklayout.SuperblockChecksum(sb))
	}
	blk := uint64(disklayout.SuperblockOffset / f.bs)
	b, err := f.st.modify(blk)
	if err != nil {
		return err
	}
	copy(b[disklayout.SuperblockOffset%f.bs:], sb)
	f.finished = true
	return nil
}

// Changes lists what the transaction writes, sorted by offset: metadata
// blocks with their bytes, and runs of data blocks with their source.
// Finish must have been called.
func (f *FS) Changes() ([]Change, error) {
	if !f.finished {
		return nil, errors.New("extwrite: Changes before Finish")
	}
	return f.st.changes(), nil
}

// SetAttr changes an inode's mode, owner and times (what ReplaceAttr
// says), not its content: for directories whose entries were written
// first, so they end with the times of their source.
func (f *FS) SetAttr(ino uint32, a ReplaceAttr) error {
	n, err := f.readInode(ino)
	if err != nil {
		return err
	}
	if n.flag(disklayout.FlagImmutable) {
		return f.refuse("inode %d is immutable", ino)
	}
	if n.ftype() == sIFLNK {
		a.Perm = nil
	}
	f.applyReplace(n, &a)
	return f.writeInode(n)
}

// isFastSymlink tells a target in i_block from one in a block as the
// kernel's ext4_inode_is_fast_symlink does.
func (f *FS) isFastSymlink(n *inode) bool {
	if n.flag(disklayout.FlagInlineData) {
		return false
	}
	if f.sb.HasIncompat(disklayout.IncompatEaInode) {
		return f.size(n) > 0 && f.size(n) < disklayout.IBlockSize
	}
	return f.sectors(n) <= f.xattrSectors(n)
}

// Readlink returns a symlink's target.
func (f *FS) Readlink(ino uint32) (string, error) {
	n, err := f.readInode(ino)
	if err != nil {
		return "", err
	}
	if n.ftype() != sIFLNK {
		return "", fmt.Errorf("%s: inode %d is not a symlink: %w", f.label, ino, ErrRefused)
	}
	if n.flag(disklayout.FlagEncrypt) {
		return "", f.refuse("symlink inode %d is encrypted", ino)
	}
	size := f.size(n)
	if size == 0 || size >= uint64(f.bs) {
		return "", f.corrupt("symlink inode %d has a target of %d bytes", ino, size)
	}
	switch {
	case n.flag(disklayout.FlagInlineData):
		attrs, err := f.ibodyAttrs(n)
		if err != nil {
			return "", err
		}
		b := n.iblock()
		for _, a := range attrs {
			if a.index == disklayout.XattrIndexSystem && string(a.name) == "data" {
				b = append(b, a.value...)
			}
		}
		if uint64(len(b)) < size {
			return "", f.corrupt("inline symlink inode %d is shorter than its size", ino)
		}
		return string(b[:size]), nil
	case f.isFastSymlink(n):
		if size >= disklayout.IBlockSize {
			return "", f.corrupt("fast symlink inode %d of %d bytes", ino, size)
		}
		return string(n.iblock()[:size]), nil
	}
	phys, err := f.mapBlock(n, 0)
	if err != nil {
		return "", err
	}
	if phys == 0 {
		return "", f.corrupt("symlink inode %d has no block", ino)
	}
	b, err := f.st.read(phys)
	if err != nil {
		return "", err
	}
	return string(b[:size]), nil
}
