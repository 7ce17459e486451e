package extwrite

import (
	"fmt"
	"time"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// File type bits of i_mode.
const (
	sIFMT   = 0xF000
	sIFREG  = 0x8000
	sIFDIR  = 0x4000
	sIFLNK  = 0xA000
	permMax = 0o7777
)

// Inode flags the writer reads or sets, besides disklayout's.
const (
	flagUnrm        = 0x2
	flagSync        = 0x8
	flagNodump      = 0x40
	flagNoatime     = 0x80
	flagNotail      = 0x8000
	flagDirsync     = 0x10000
	flagProjInherit = 0x20000000
	// inheritedFlags pass from a directory to what is created in it
	// (the part of the kernel's EXT4_FL_INHERITED that applies to what
	// this writer creates; DIRSYNC only to directories).
	inheritedFlags = disklayout.FlagSecrm | flagUnrm | flagSync | flagNodump | flagNoatime |
		disklayout.FlagJournalData | flagNotail | flagProjInherit
)

// inode is an inode as the transaction changes it.
type inode struct {
	ino uint32
	d   disklayout.Inode
	raw []byte // the on-disk bytes; putInode refreshes them
	blk uint64 // inode table block
	off int    // offset in that block
}

func (n *inode) ftype() uint16       { return n.d.Mode & sIFMT }
func (n *inode) isDir() bool         { return n.ftype() == sIFDIR }
func (n *inode) flag(fl uint32) bool { return n.d.Flags&fl != 0 }

// iblock returns a copy of the 60-byte i_block area.
func (n *inode) iblock() []byte {
	b := make([]byte, disklayout.IBlockSize)
	for i, v := range n.d.Block {
		le.PutUint32(b[4*i:], v)
	}
	return b
}

// setIblock sets i_block from 60 bytes.
func (n *inode) setIblock(b []byte) {
	for i := range n.d.Block {
		n.d.Block[i] = le.Uint32(b[4*i:])
	}
}

// inodeLoc finds inode ino in its group's inode table.
func (f *FS) inodeLoc(ino uint32) (*group, uint64, int, error) {
	if ino == 0 || uint64(ino) > f.inodes {
		return nil, 0, 0, f.corrupt("inode number %d out of range (1..%d)", ino, f.inodes)
	}
	g := uint64(ino-1) / f.ipg
	idx := uint64(ino-1) % f.ipg
	gr, err := f.group(g)
	if err != nil {
		return nil, 0, 0, err
	}
	byteOff := idx * uint64(f.inodeSize)
	return gr, gr.inodeTable() + byteOff/uint64(f.bs), int(byteOff % uint64(f.bs)), nil
}

// readInode reads and checks an inode that is in use.
func (f *FS) readInode(ino uint32) (*inode, error) {
	_, blk, off, err := f.inodeLoc(ino)
	if err != nil {
		return nil, err
	}
	b, err := f.st.read(blk)
	if err != nil {
		return nil, err
	}
	n := &inode{ino: ino, blk: blk, off: off, raw: append([]byte(nil), b[off:off+f.inodeSize]...)}
	n.d, _ = disklayout.DecodeInode(n.raw)
	if f.inodeSize > disklayout.InodeBaseSize {
		if x := int(n.d.ExtraIsize); disklayout.InodeBaseSize+x > f.inodeSize || x&3 != 0 {
			return nil, f.corrupt("inode %d: bad i_extra_isize %d", ino, x)
		}
	} else {
		n.d.ExtraIsize = 0
	}
	if f.csum {
		c := disklayout.InodeChecksum(f.seed, ino, n.d.Generation, n.raw)
		stored := uint32(n.d.ChecksumLo) | uint32(n.d.ChecksumHi)<<16
		if !disklayout.InodeHasCsumHi(n.raw) {
			c &= 0xFFFF
		}
		if c != stored {
			return nil, f.corrupt("inode %d checksum mismatch (stored %#x, computed %#x)", ino, stored, c)
		}
	}
	if n.d.LinksCount == 0 || n.d.Dtime != 0 && n.d.LinksCount == 0 {
		return nil, f.corrupt("inode %d is not in use", ino)
	}
	return n, nil
}

// writeInode stages the inode with its checksum.
func (f *FS) writeInode(n *inode) error {
	putInode(n.raw, &n.d)
	if f.csum {
		c := disklayout.InodeChecksum(f.seed, n.ino, n.d.Generation, n.raw)
		n.d.ChecksumLo = uint16(c)
		le.PutUint16(n.raw[0x7C:], n.d.ChecksumLo)
		if disklayout.InodeHasCsumHi(n.raw) {
			n.d.ChecksumHi = uint16(c >> 16)
			le.PutUint16(n.raw[0x82:], n.d.ChecksumHi)
		}
	}
	b, err := f.st.modify(n.blk)
	if err != nil {
		return err
	}
	copy(b[n.off:], n.raw)
	return nil
}

// seed is the inode's checksum seed for its extent, directory and htree
// blocks.
func (f *FS) inodeSeed(n *inode) uint32 {
	return disklayout.InodeSeed(f.seed, n.ino, n.d.Generation)
}

// size is i_size; the high half counts for regular files, and for
// directories with large_dir.
func (f *FS) size(n *inode) uint64 {
	s := uint64(n.d.SizeLo)
	if n.ftype() == sIFREG || f.sb.HasIncompat(disklayout.IncompatLargedir) {
		s |= uint64(n.d.SizeHigh) << 32
	}
	return s
}

func (f *FS) setSize(n *inode, s uint64) error {
	if s >= 1<<31 && n.ftype() == sIFREG && !f.sb.HasRoCompat(disklayout.RoCompatLargeFile) {
		// The kernel sets large_file when the first such file appears.
		f.sb.FeatureRoCompat |= disklayout.RoCompatLargeFile
	}
	if s >= 1<<32 && n.ftype() != sIFREG && !f.sb.HasIncompat(disklayout.IncompatLargedir) {
		return f.refuse("directory of %d bytes needs large_dir", s)
	}
	n.d.SizeLo, n.d.SizeHigh = uint32(s), uint32(s>>32)
	return nil
}

// sectors is i_blocks in 512-byte units.
func (f *FS) sectors(n *inode) uint64 {
	v := uint64(n.d.BlocksLo)
	if f.sb.HasRoCompat(disklayout.RoCompatHugeFile) {
		v |= uint64(n.d.BlocksHigh) << 32
		if n.flag(disklayout.FlagHugeFile) {
			v *= uint64(f.bs / 512)
		}
	}
	return v
}

// setSectors sets i_blocks from 512-byte units, in the form the kernel
// uses for the value (ext4_inode_blocks_set).
func (f *FS) setSectors(n *inode, v uint64) error {
	n.d.Flags &^= disklayout.FlagHugeFile
	switch {
	case v < 1<<32:
		n.d.BlocksLo, n.d.BlocksHigh = uint32(v), 0
	case !f.sb.HasRoCompat(disklayout.RoCompatHugeFile):
		return f.refuse("inode %d would take %d sectors, which needs huge_file", n.ino, v)
	case v < 1<<48:
		n.d.BlocksLo, n.d.BlocksHigh = uint32(v), uint16(v>>32)
	default:
		v /= uint64(f.bs / 512)
		if v >= 1<<48 {
			return f.refuse("inode %d is too large", n.ino)
		}
		n.d.Flags |= disklayout.FlagHugeFile
		n.d.BlocksLo, n.d.BlocksHigh = uint32(v), uint16(v>>32)
	}
	return nil
}

// addBlocks adds k filesystem blocks to i_blocks.
func (f *FS) addBlocks(n *inode, k int64) error {
	v := int64(f.sectors(n)) + k*int64(f.bs/512)
	if v < 0 {
		return f.corrupt("inode %d block count goes negative", n.ino)
	}
	return f.setSectors(n, uint64(v))
}

// xattrSectors is what an inode's xattr block adds to i_blocks.
func (f *FS) xattrSectors(n *inode) uint64 {
	if n.d.FileACL() == 0 {
		return 0
	}
	return uint64(f.bs / 512)
}

// hasExtra says whether the inode has the _extra timestamp field ending
// at end.
func hasExtra(n *inode, end int) bool {
	return len(n.raw) > disklayout.InodeBaseSize && n.d.Has(end)
}

func (f *FS) setAtime(n *inode, t time.Time) {
	n.d.Atime, n.d.AtimeExtra = encodeTime(t, hasExtra(n, disklayout.EndAtimeExtra))
}
func (f *FS) setMtime(n *inode, t time.Time) {
	n.d.Mtime, n.d.MtimeExtra = encodeTime(t, hasExtra(n, disklayout.EndMtimeExtra))
}
func (f *FS) setCtime(n *inode, t time.Time) {
	n.d.Ctime, n.d.CtimeExtra = encodeTime(t, hasExtra(n, disklayout.EndCtimeExtra))
}
func (f *FS) setCrtime(n *inode, t time.Time) {
	if hasExtra(n, disklayout.EndCrtime) {
		n.d.Crtime, n.d.CrtimeExtra = encodeTime(t, hasExtra(n, disklayout.EndCrtimeExtra))
	}
}

func setOwner(n *inode, uid, gid uint32) {
	n.d.UidLo, n.d.UidHigh = uint16(uid), uint16(uid>>16)
	n.d.GidLo, n.d.GidHigh = uint16(gid), uint16(gid>>16)
}

// newInode allocates an inode near its parent and fills it as the kernel's
// __ext4_new_inode does: mode, owner, times, a new generation, the extra
// size, flags inherited from the parent, and an empty extent tree for
// files and directories when the filesystem has extents.
func (f *FS) newInode(parent *inode, mode uint16, a *Attr) (*inode, error) {
	dir := mode&sIFMT == sIFDIR
	ino, err := f.allocInode(uint64(parent.ino-1)/f.ipg, dir)
	if err != nil {
		return nil, err
	}
	_, blk, off, err := f.inodeLoc(ino)
	if err != nil {
		return nil, err
	}
	n := &inode{ino: ino, blk: blk, off: off, raw: make([]byte, f.inodeSize)}
	n.d.Mode = mode
	n.d.LinksCount = 1
	if dir {
		n.d.LinksCount = 2
	}
	n.d.Generation = randomU32()
	n.d.ExtraIsize = uint16(f.extraIsize())
	fl := parent.d.Flags & inheritedFlags
	if dir {
		fl |= parent.d.Flags & flagDirsync
	}
	if parent.flag(flagProjInherit) {
		n.d.Projid = parent.d.Projid
	}
	n.d.Flags = fl
	setOwner(n, a.Uid, a.Gid)
	f.setAtime(n, orNow(a.Atime, f.now))
	f.setMtime(n, orNow(a.Mtime, f.now))
	f.setCtime(n, f.now)
	f.setCrtime(n, f.now)
	if f.hasExtents() && mode&sIFMT != sIFLNK {
		f.initExtents(n)
	}
	return n, nil
}

func orNow(t, now time.Time) time.Time {
	if t.IsZero() {
		return now
	}
	return t
}

// mapBlock returns the physical block of logical block lblk of a file or
// directory, 0 for a hole.
func (f *FS) mapBlock(n *inode, lblk uint64) (uint64, error) {
	switch {
	case n.flag(disklayout.FlagInlineData):
		return 0, fmt.Errorf("extwrite: inode %d has inline data", n.ino)
	case n.flag(disklayout.FlagExtents):
		return f.extentMap(n, lblk)
	}
	return f.blockMapMap(n, lblk)
}
