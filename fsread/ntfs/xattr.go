package ntfs

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// Extended attribute names of ntfs-3g's xattr interface
// (libntfs-3g/xattrs.c, nf_ns_xattr_names; streams_interface=xattr).
const (
	xattrUser      = "user."
	xattrAttrib    = "system.ntfs_attrib"
	xattrAttribBE  = "system.ntfs_attrib_be"
	xattrReparse   = "system.ntfs_reparse_data"
	xattrTimes     = "system.ntfs_times"
	xattrTimesBE   = "system.ntfs_times_be"
	xattrCrtime    = "system.ntfs_crtime"
	xattrCrtimeBE  = "system.ntfs_crtime_be"
	fileAttrNormal = 0x80
)

// maxXattrStream bounds the named stream read whole as an xattr value.
const maxXattrStream = 64 << 20

// Xattrs lists an inode's named streams as user.<stream> and its Windows
// attribute flags as system.ntfs_attrib_be (and its reparse data, when it
// has some). The other system.ntfs_* names can be read but are not
// listed, as with ntfs-3g.
func (f *FS) Xattrs(ino uint64) ([]string, error) {
	in, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range in.streams {
		out = append(out, xattrUser+s)
	}
	out = append(out, xattrAttribBE)
	if in.reparse != nil {
		out = append(out, xattrReparse)
	}
	return out, nil
}

// Xattr returns one extended attribute.
func (f *FS) Xattr(ino uint64, name string) ([]byte, error) {
	in, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	switch name {
	case xattrAttrib, xattrAttribBE:
		// ntfs_get_ntfs_attrib: the directory bit follows the record,
		// and no flags at all reads as FILE_ATTRIBUTE_NORMAL.
		a := in.si.FileAttributes
		if in.isDir {
			a |= fileAttrDirectory
		} else {
			a &^= fileAttrDirectory
		}
		if a == 0 {
			a = fileAttrNormal
		}
		if name == xattrAttribBE {
			return binary.BigEndian.AppendUint32(nil, a), nil
		}
		return binary.LittleEndian.AppendUint32(nil, a), nil
	case xattrTimes, xattrTimesBE, xattrCrtime, xattrCrtimeBE:
		// ntfs_inode_get_times: creation, data change, access, MFT change.
		t := []int64{in.si.CreationTime, in.si.LastDataChangeTime, in.si.LastAccessTime, in.si.LastMFTChangeTime}
		if name == xattrCrtime || name == xattrCrtimeBE {
			t = t[:1]
		}
		var b []byte
		for _, v := range t {
			if strings.HasSuffix(name, "_be") {
				b = binary.BigEndian.AppendUint64(b, uint64(v))
			} else {
				b = binary.LittleEndian.AppendUint64(b, uint64(v))
			}
		}
		return b, nil
	case xattrReparse:
		if in.reparse == nil {
			break
		}
		return append([]byte(nil), in.reparse...), nil
	}
	if s, ok := strings.CutPrefix(name, xattrUser); ok {
		for _, st := range in.streams {
			if st == s {
				return f.readStream(in, s)
			}
		}
	}
	return nil, fmt.Errorf("%s: inode %d: %s: %w", f.name, ino, name, fsys.ErrNoXattr)
}

// readStream reads a named $DATA stream whole.
func (f *FS) readStream(in *inode, name string) ([]byte, error) {
	rec, err := f.readRecord(in.ino)
	if err != nil {
		return nil, err
	}
	s, err := f.newStream(in.ino, rec.find(atData, name))
	if err != nil {
		return nil, err
	}
	if s.size > maxXattrStream {
		return nil, fmt.Errorf("%s: inode %d: stream %q of %d bytes is too large for an xattr: %w", f.name, in.ino, name, s.size, fsys.ErrUnsupported)
	}
	b := make([]byte, s.size)
	if _, err := s.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return b, nil
}
