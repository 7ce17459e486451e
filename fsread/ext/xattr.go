package ext

import (
	"fmt"

	"github.com/vmmount/vmmount/fsread/ext/disklayout"
	"github.com/vmmount/vmmount/fsread/fsys"
)

// xattr is one parsed attribute. value is nil for an ea_inode value (read
// on demand from inode valueInum).
type xattr struct {
	index     uint8
	name      []byte
	value     []byte
	valueInum uint32
	valueSize uint32
}

// prefixes maps name indexes to the names the kernel shows (fs/ext4/xattr.c
// handler map). Indexes not listed (system.data of inline data, richacl,
// lustre, encryption context) are internal and neither listed nor gettable.
var prefixes = map[uint8]string{
	disklayout.XattrIndexUser:      "user.",
	disklayout.XattrIndexACLAccess: "system.posix_acl_access",
	disklayout.XattrIndexACLDflt:   "system.posix_acl_default",
	disklayout.XattrIndexTrusted:   "trusted.",
	disklayout.XattrIndexSecurity:  "security.",
	disklayout.XattrIndexHurd:      "gnu.",
}

func (x *xattr) fullName() (string, bool) {
	p, ok := prefixes[x.index]
	if !ok {
		return "", false
	}
	if x.index == disklayout.XattrIndexACLAccess || x.index == disklayout.XattrIndexACLDflt {
		return p, len(x.name) == 0
	}
	return p + string(x.name), true
}

// parseXattrs walks entries in area starting at first; value offsets count
// from base (the first entry for the in-inode form, the block start for
// the block form). off is the area's volume offset for errors.
func (f *FS) parseXattrs(ino uint64, area []byte, first, base int, off int64, what string) ([]xattr, error) {
	var out []xattr
	bad := func(p int, format string, args ...any) error {
		o := int64(-1)
		if off >= 0 {
			o = off + int64(p)
		}
		return f.corrupt(ino, o, "%s: %s", what, fmt.Sprintf(format, args...))
	}
	for p := first; ; {
		if len(area)-p < 4 {
			return nil, bad(p, "attribute list not terminated")
		}
		if le.Uint32(area[p:]) == 0 {
			return out, nil
		}
		e, err := disklayout.DecodeXattrEntry(area[p:])
		if err != nil {
			return nil, bad(p, "truncated entry")
		}
		el := disklayout.XattrEntryLen(int(e.NameLen))
		if el > len(area)-p {
			return nil, bad(p, "entry name runs past the end")
		}
		x := xattr{index: e.NameIndex, name: area[p+disklayout.XattrEntrySize : p+disklayout.XattrEntrySize+int(e.NameLen)], valueInum: e.ValueInum, valueSize: e.ValueSize}
		if e.ValueSize > maxXattrValue {
			return nil, bad(p, "value of %d bytes is larger than the kernel allows", e.ValueSize)
		}
		if e.ValueInum == 0 && e.ValueSize > 0 {
			// An empty value may have any offset (the kernel writes 0).
			vo := base + int(e.ValueOffs)
			if int(e.ValueSize) > len(area)-vo || vo < first {
				return nil, bad(p, "value (%d bytes at %d) runs past the end", e.ValueSize, e.ValueOffs)
			}
			x.value = area[vo : vo+int(e.ValueSize)]
		} else if e.ValueInum == 0 {
			x.value = []byte{}
		}
		if e.ValueInum != 0 && !f.sb.HasIncompat(disklayout.IncompatEaInode) {
			return nil, bad(p, "value in inode %d without the ea_inode feature", e.ValueInum)
		}
		out = append(out, x)
		p += el
	}
}

// ibodyXattrs parses the attributes stored in the inode after
// i_extra_isize.
func (f *FS) ibodyXattrs(n *inode) ([]xattr, error) {
	body := n.ibody()
	if body == nil || le.Uint32(body) != disklayout.XattrMagic {
		return nil, nil
	}
	area := body[disklayout.XattrIbodyHdrSize:]
	return f.parseXattrs(n.ino, area, 0, 0, -1, "in-inode xattrs")
}

// blockXattrs parses the attribute block named by i_file_acl.
func (f *FS) blockXattrs(n *inode) ([]xattr, error) {
	blk := n.d.FileACL()
	if blk == 0 {
		return nil, nil
	}
	if blk < f.firstData || blk >= f.blocks {
		return nil, f.corrupt(n.ino, -1, "xattr block %d is outside the volume", blk)
	}
	cb, err := f.block(blk)
	if err != nil {
		return nil, f.corrupt(n.ino, f.blockOff(blk), "reading xattr block: %v", err)
	}
	h, _ := disklayout.DecodeXattrHeader(cb.data)
	if h.Magic != disklayout.XattrMagic || h.Blocks != 1 {
		return nil, f.corrupt(n.ino, f.blockOff(blk), "xattr block: bad header (magic %#x, %d blocks)", h.Magic, h.Blocks)
	}
	if f.csum && cb.verified.Load()&verifyXattr == 0 {
		if c := disklayout.XattrBlockChecksum(f.seed, blk, cb.data); c != h.Checksum {
			return nil, f.corrupt(n.ino, f.blockOff(blk), "xattr block checksum mismatch (stored %#x, computed %#x)", h.Checksum, c)
		}
		cb.verified.Or(verifyXattr)
	}
	return f.parseXattrs(n.ino, cb.data, disklayout.XattrHeaderSize, 0, f.blockOff(blk), "xattr block")
}

// allXattrs returns in-inode attributes, then block ones (listxattr order).
func (f *FS) allXattrs(n *inode) ([]xattr, error) {
	a, err := f.ibodyXattrs(n)
	if err != nil {
		return nil, err
	}
	b, err := f.blockXattrs(n)
	if err != nil {
		return nil, err
	}
	return append(a, b...), nil
}

// Xattrs lists an inode's attributes by full name.
func (f *FS) Xattrs(ino uint64) ([]string, error) {
	n, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	xs, err := f.allXattrs(n)
	if err != nil {
		return nil, err
	}
	var out []string
	for i := range xs {
		if name, ok := xs[i].fullName(); ok {
			out = append(out, name)
		}
	}
	return out, nil
}

// Xattr returns one attribute's value as getxattr(2) on a kernel mount
// returns it (ACLs converted to the posix_acl_xattr form).
func (f *FS) Xattr(ino uint64, name string) ([]byte, error) {
	n, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	xs, err := f.allXattrs(n)
	if err != nil {
		return nil, err
	}
	for i := range xs {
		x := &xs[i]
		if full, ok := x.fullName(); !ok || full != name {
			continue
		}
		v, err := f.xattrValue(n, x)
		if err != nil {
			return nil, err
		}
		if x.index == disklayout.XattrIndexACLAccess || x.index == disklayout.XattrIndexACLDflt {
			acl, ok := disklayout.ConvertACL(v)
			if !ok {
				return nil, f.corrupt(ino, -1, "malformed ACL in %s", name)
			}
			return acl, nil
		}
		return append([]byte(nil), v...), nil
	}
	return nil, fmt.Errorf("%s: inode %d: xattr %q: %w", f.label, ino, name, fsys.ErrNoXattr)
}

// xattrValue returns a value, reading it from its ea_inode when it has one.
func (f *FS) xattrValue(n *inode, x *xattr) ([]byte, error) {
	if x.valueInum == 0 {
		return x.value, nil
	}
	ea, err := f.inode(uint64(x.valueInum))
	if err != nil {
		return nil, err
	}
	if !ea.flag(disklayout.FlagEaInode) || ea.size != int64(x.valueSize) {
		return nil, f.corrupt(n.ino, -1, "xattr value inode %d is not an ea_inode of %d bytes", x.valueInum, x.valueSize)
	}
	fl, err := f.openFile(ea)
	if err != nil {
		return nil, err
	}
	v := make([]byte, x.valueSize)
	if _, err := fl.ReadAt(v, 0); err != nil && len(v) > 0 {
		return nil, err
	}
	return v, nil
}
