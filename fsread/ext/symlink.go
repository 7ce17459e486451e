package ext

import (
	"github.com/vmmount/vmmount/fsread/ext/disklayout"
	"github.com/vmmount/vmmount/fsread/fsys"
)

// maxSymlink bounds a symlink target (PATH_MAX-ish; ext4 limits it to one
// block).
const maxSymlink = 64 << 10

// Readlink returns a symlink's target: stored in i_block when shorter than
// 60 bytes ("fast"), inline, or in data blocks (inodes.rst, "Symbolic
// Links").
func (f *FS) Readlink(ino uint64) (string, error) {
	n, err := f.inode(ino)
	if err != nil {
		return "", err
	}
	if n.ftype() != fsys.S_IFLNK {
		return "", &fsys.CorruptError{FS: f.label, Ino: ino, Off: -1, Msg: "readlink", Err: fsys.ErrNotSymlink}
	}
	if n.flag(disklayout.FlagEncrypt) {
		return "", f.unsupported(ino, "encrypted symlink target cannot be read")
	}
	if n.size > maxSymlink || n.size > int64(f.bs) {
		return "", f.corrupt(ino, -1, "symlink target of %d bytes", n.size)
	}
	if f.isFastSymlink(n) {
		if n.size >= disklayout.IBlockSize {
			return "", f.corrupt(ino, -1, "fast symlink of %d bytes", n.size)
		}
		return string(n.iblock()[:n.size]), nil
	}
	fl, err := f.openFile(n)
	if err != nil {
		return "", err
	}
	buf := make([]byte, n.size)
	if _, err := fl.ReadAt(buf, 0); err != nil && n.size > 0 {
		return "", err
	}
	return string(buf), nil
}

// isFastSymlink tells a target in i_block from one in data blocks as the
// kernel's ext4_inode_is_fast_symlink does: without ea_inode, a fast
// symlink has no data blocks (i_blocks counts only an xattr block, if
// any); with it, any target shorter than 60 bytes is fast.
func (f *FS) isFastSymlink(n *inode) bool {
	if n.flag(disklayout.FlagInlineData) {
		return false
	}
	if f.sb.HasIncompat(disklayout.IncompatEaInode) {
		return n.size > 0 && n.size < disklayout.IBlockSize
	}
	ea := uint64(0)
	if n.d.FileACL() != 0 {
		ea = uint64(f.bs) / 512
		if f.sb.HasRoCompat(disklayout.RoCompatBigalloc) {
			ea <<= f.sb.LogClusterSize - f.sb.LogBlockSize
		}
	}
	blocks := uint64(n.d.BlocksLo) | uint64(n.d.BlocksHigh)<<32
	return blocks <= ea
}
