package ext

import (
	"github.com/vmmount/vmmount/fsread/ext/disklayout"
)

// Inline data (inline_data feature, inlinedata.rst): small files and
// directories keep their content in i_block (60 bytes) and continue in the
// value of the in-inode xattr "system.data".

// systemData returns the value of the in-inode system.data attribute, nil
// if there is none.
func (f *FS) systemData(n *inode) ([]byte, error) {
	xs, err := f.ibodyXattrs(n)
	if err != nil {
		return nil, err
	}
	for _, x := range xs {
		if x.index == disklayout.XattrIndexSystem && string(x.name) == "data" {
			if x.valueInum != 0 {
				return nil, f.corrupt(n.ino, -1, "inline data stored in an ea_inode")
			}
			return x.value, nil
		}
	}
	return nil, nil
}

// inlineData returns the bytes of an inline file (at most 60 plus the
// system.data value; ReadAt pads to i_size with zeros).
func (f *FS) inlineData(n *inode) ([]byte, error) {
	rest, err := f.systemData(n)
	if err != nil {
		return nil, err
	}
	ib := n.iblock()
	out := make([]byte, 0, len(ib)+len(rest))
	out = append(out, ib...)
	out = append(out, rest...)
	if int64(len(out)) > n.size {
		out = out[:n.size]
	}
	return out, nil
}

// scanInlineDir walks an inline directory: the parent inode in the first
// four bytes of i_block (no "." or ".." entries), then entries in the
// remaining 56 bytes and in system.data.
func (f *FS) scanInlineDir(d *dir, fn func(e dirent) bool) error {
	rest, err := f.systemData(d.n)
	if err != nil {
		return err
	}
	stop := false
	wrap := func(e dirent) bool {
		stop = !fn(e)
		return !stop
	}
	if err := f.parseLeaf(d, d.n.iblock()[4:], -1, wrap); err != nil || stop {
		return err
	}
	if len(rest) > 0 {
		return f.parseLeaf(d, rest, -1, wrap)
	}
	return nil
}
