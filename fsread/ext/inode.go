package ext

import (
	"io/fs"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
	"github.com/vmmount/vmmount/fsread/fsys"
)

// inode is a decoded inode with the raw bytes the rest of the reader needs
// (i_block for extent roots, fast symlinks and inline data; the space after
// i_extra_isize for in-inode xattrs).
type inode struct {
	ino  uint64
	d    disklayout.Inode
	raw  []byte // a private copy of the on-disk inode
	size int64
}

func (n *inode) mode() uint32       { return uint32(n.d.Mode) }
func (n *inode) ftype() uint32      { return uint32(n.d.Mode) & fsys.S_IFMT }
func (n *inode) isDir() bool        { return n.ftype() == fsys.S_IFDIR }
func (n *inode) flag(f uint32) bool { return n.d.Flags&f != 0 }

// iblock is the 60-byte i_block area.
func (n *inode) iblock() []byte { return n.raw[0x28 : 0x28+disklayout.IBlockSize] }

// ibody is the in-inode xattr area (after i_extra_isize), nil if none.
func (n *inode) ibody() []byte {
	start := disklayout.InodeBaseSize + int(n.d.ExtraIsize)
	if len(n.raw) <= disklayout.InodeBaseSize || start+disklayout.XattrIbodyHdrSize > len(n.raw) {
		return nil
	}
	return n.raw[start:]
}

// seed is the inode's checksum seed for its extent, directory and xattr
// blocks.
func (f *FS) inodeSeed(n *inode) uint32 {
	return disklayout.InodeSeed(f.seed, uint32(n.ino), n.d.Generation)
}

// inode reads and checks inode ino.
func (f *FS) inode(ino uint64) (*inode, error) {
	if ino == 0 || ino > f.inodes {
		return nil, f.corrupt(ino, -1, "inode number out of range (1..%d)", f.inodes)
	}
	g := (ino - 1) / uint64(f.ipg)
	idx := (ino - 1) % uint64(f.ipg)
	gr, err := f.group(g)
	if err != nil {
		return nil, f.corrupt(ino, -1, "%v", err)
	}
	byteOff := idx * uint64(f.inodeSize)
	blk := gr.inodeTable + byteOff/uint64(f.bs)
	in := int(byteOff % uint64(f.bs))
	tableEnd := gr.inodeTable + (uint64(f.ipg)*uint64(f.inodeSize)+uint64(f.bs)-1)/uint64(f.bs)
	cb, err := f.blockAhead(blk, tableEnd)
	if err != nil {
		return nil, f.corrupt(ino, f.blockOff(blk), "reading inode table: %v", err)
	}
	raw := make([]byte, f.inodeSize)
	copy(raw, cb.data[in:in+f.inodeSize])
	off := int64(blk)*int64(f.bs) + int64(in)
	n := &inode{ino: ino, raw: raw}
	n.d, _ = disklayout.DecodeInode(raw)
	if f.inodeSize > disklayout.InodeBaseSize {
		if x := int(n.d.ExtraIsize); disklayout.InodeBaseSize+x > f.inodeSize || x&3 != 0 {
			return nil, f.corrupt(ino, off, "bad i_extra_isize %d", x)
		}
	} else {
		n.d.ExtraIsize = 0
	}
	if f.csumInodes && !allZero(raw) {
		c := disklayout.InodeChecksum(f.seed, uint32(ino), n.d.Generation, raw)
		stored := uint32(n.d.ChecksumLo) | uint32(n.d.ChecksumHi)<<16
		if !disklayout.InodeHasCsumHi(raw) {
			c &= 0xFFFF
		}
		if c != stored {
			return nil, f.corrupt(ino, off, "inode checksum mismatch (stored %#x, computed %#x)", stored, c)
		}
	}
	if n.d.LinksCount == 0 && n.d.Mode == 0 {
		return nil, f.corrupt(ino, off, "unused inode (deleted)")
	}
	n.size = int64(n.d.SizeLo)
	if n.ftype() == fsys.S_IFREG || f.sb.HasIncompat(disklayout.IncompatLargedir) {
		n.size |= int64(n.d.SizeHigh) << 32
	}
	if n.size < 0 {
		return nil, f.corrupt(ino, off, "negative size")
	}
	return n, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Stat returns an inode's metadata as stat(2) on a kernel mount shows it.
func (f *FS) Stat(ino uint64) (*fsys.Stat, error) {
	n, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	return f.stat(n), nil
}

func (f *FS) stat(n *inode) *fsys.Stat {
	d := &n.d
	st := &fsys.Stat{
		Ino:   n.ino,
		Mode:  n.mode(),
		Uid:   d.Uid(),
		Gid:   d.Gid(),
		Size:  n.size,
		Nlink: uint32(d.LinksCount),
		Atime: disklayout.DecodeTime(d.Atime, d.AtimeExtra, d.Has(disklayout.EndAtimeExtra)),
		Mtime: disklayout.DecodeTime(d.Mtime, d.MtimeExtra, d.Has(disklayout.EndMtimeExtra)),
		Ctime: disklayout.DecodeTime(d.Ctime, d.CtimeExtra, d.Has(disklayout.EndCtimeExtra)),
		Flags: d.Flags,
	}
	if d.Has(disklayout.EndCrtime) {
		st.Btime = disklayout.DecodeTime(d.Crtime, d.CrtimeExtra, d.Has(disklayout.EndCrtimeExtra))
	}
	blocks := int64(d.BlocksLo)
	if f.sb.HasRoCompat(disklayout.RoCompatHugeFile) {
		blocks |= int64(d.BlocksHigh) << 32
		if n.flag(disklayout.FlagHugeFile) {
			blocks *= int64(f.bs / 512)
		}
	}
	if n.flag(disklayout.FlagInlineData) && n.ftype() == fsys.S_IFREG {
		// ext4_file_getattr reports inline data as sectors, so tools do
		// not take the file for entirely sparse (regular files only).
		blocks += (n.size + 511) >> 9
	}
	st.Blocks = blocks
	switch n.ftype() {
	case fsys.S_IFCHR, fsys.S_IFBLK:
		st.Rdev = uint64(rdev(n))
	}
	return st
}

// rdev decodes a device number from i_block: the old 16-bit form in
// i_block[0], else the new 32-bit one in i_block[1] (Linux new_encode_dev,
// which is the dev_t layout fsys.Stat documents).
func rdev(n *inode) uint32 {
	if n.d.Block[0] != 0 {
		v := n.d.Block[0]
		major, minor := (v>>8)&0xff, v&0xff
		return major<<8 | minor
	}
	return n.d.Block[1]
}

// dtype converts a directory entry file type to fs.FileMode type bits; ok
// is false for unknown (0 or out of range).
func dtype(ft uint8) (fs.FileMode, bool) {
	switch ft {
	case disklayout.FtRegFile:
		return 0, true
	case disklayout.FtDir:
		return fs.ModeDir, true
	case disklayout.FtChrdev:
		return fs.ModeDevice | fs.ModeCharDevice, true
	case disklayout.FtBlkdev:
		return fs.ModeDevice, true
	case disklayout.FtFifo:
		return fs.ModeNamedPipe, true
	case disklayout.FtSock:
		return fs.ModeSocket, true
	case disklayout.FtSymlink:
		return fs.ModeSymlink, true
	}
	return 0, false
}

// inodeReadahead is how many inode table bytes a cache miss reads at once.
// Walks stat inodes in directory order, which is mostly inode order, so
// reading ahead turns thousands of small cold reads into a few large ones,
// as the kernel's inode_readahead_blks does (32 blocks by default).
const inodeReadahead = 128 << 10

// blockAhead is block for a block of a contiguous metadata area ending
// before end (an inode table): a miss reads up to inodeReadahead bytes of
// the area in one read and caches every block of it.
func (f *FS) blockAhead(blk, end uint64) (*cblock, error) {
	if cb := f.cache.get(blk); cb != nil {
		return cb, nil
	}
	n := min(uint64(inodeReadahead/f.bs), end-min(blk, end), f.blocks-min(blk, f.blocks))
	if n <= 1 {
		return f.block(blk)
	}
	buf := make([]byte, n*uint64(f.bs))
	if err := f.dev.readAt(buf, int64(blk)*int64(f.bs)); err != nil {
		return f.block(blk) // read what can be read; the error names that block
	}
	var first *cblock
	for i := uint64(0); i < n; i++ {
		cb := f.cache.add(&cblock{blk: blk + i, data: buf[i*uint64(f.bs) : (i+1)*uint64(f.bs) : (i+1)*uint64(f.bs)]})
		if i == 0 {
			first = cb
		}
	}
	return first, nil
}

// block returns metadata block blk through the cache.
func (f *FS) block(blk uint64) (*cblock, error) {
	if cb := f.cache.get(blk); cb != nil {
		return cb, nil
	}
	if blk >= f.blocks {
		return nil, errOutsideBlocks(blk, f.blocks)
	}
	data := make([]byte, f.bs)
	if err := f.dev.readAt(data, int64(blk)*int64(f.bs)); err != nil {
		return nil, err
	}
	return f.cache.add(&cblock{blk: blk, data: data}), nil
}
