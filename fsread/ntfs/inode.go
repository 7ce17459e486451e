package ntfs

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// fname is one $FILE_NAME of a record.
type fname struct {
	parent uint64
	name   string
	ns     uint8
}

// inode is what a base MFT record says about a file, decoded once.
type inode struct {
	ino      uint64
	isDir    bool // the record's directory flag (has an $I30 index)
	si       standardInformation
	names    []fname
	data     []*attr  // unnamed $DATA extents, nil if none
	streams  []string // named $DATA streams, in record order
	reparse  []byte   // $REPARSE_POINT value, nil if none
	i30root  *attr
	i30alloc []*attr

	// What the file is, as ntfs-3g shows it.
	mode   uint32
	size   int64
	blocks int64
	rdev   uint64
	intx   string // Interix symlink target

	targetOnce sync.Once
	target     string // reparse point symlink target
}

// inode returns the decoded base record ino.
func (f *FS) inode(ino uint64) (*inode, error) {
	if in, ok := f.inodes.Get(ino); ok {
		return in, nil
	}
	rec, err := f.readRecord(ino)
	if err != nil {
		return nil, err
	}
	in, err := f.decodeInode(rec)
	if err != nil {
		return nil, err
	}
	f.inodes.Add(ino, in)
	return in, nil
}

func (f *FS) decodeInode(rec *record) (*inode, error) {
	in := &inode{ino: rec.ino, isDir: rec.flags&recordDirectory != 0}
	si := rec.first(atStandardInformation)
	if si == nil || !si.resident || len(si.value) < standardInformationSize {
		return nil, f.corrupt(rec.ino, -1, "no valid $STANDARD_INFORMATION")
	}
	decode(si.value, &in.si)
	seen := map[string]bool{}
	for _, a := range rec.attrs {
		switch a.typ {
		case atFileName:
			if !a.resident || len(a.value) < fileNameHeaderSize {
				return nil, f.corrupt(rec.ino, a.off, "bad $FILE_NAME attribute")
			}
			var h fileNameHeader
			decode(a.value, &h)
			if fileNameHeaderSize+2*int(h.FileNameLength) > len(a.value) {
				return nil, f.corrupt(rec.ino, a.off, "$FILE_NAME name runs past the attribute")
			}
			p, _ := mftRef(h.ParentDirectory)
			in.names = append(in.names, fname{parent: p, ns: h.FileNameType,
				name: utf16le(a.value[fileNameHeaderSize : fileNameHeaderSize+2*int(h.FileNameLength)])})
		case atData:
			if a.name == "" {
				in.data = append(in.data, a)
			} else if !seen[a.name] {
				seen[a.name] = true
				in.streams = append(in.streams, a.name)
			}
		case atReparsePoint:
			if a.resident {
				in.reparse = a.value
			} else if v, err := f.readAll(rec.ino, []*attr{a}, 16<<10); err == nil {
				in.reparse = v
			} else {
				return nil, err
			}
		case atIndexRoot:
			if a.name == "$I30" {
				in.i30root = a
			}
		case atIndexAllocation:
			if a.name == "$I30" {
				in.i30alloc = append(in.i30alloc, a)
			}
		}
	}
	if err := f.classify(in); err != nil {
		return nil, err
	}
	return in, nil
}

// readAll reads a small attribute whole (at most max bytes).
func (f *FS) readAll(ino uint64, ext []*attr, max int64) ([]byte, error) {
	s, err := f.newStream(ino, ext)
	if err != nil {
		return nil, err
	}
	if s.size > max {
		return nil, f.corrupt(ino, s.off, "attribute %#x of %d bytes, more than %d", ext[0].typ, s.size, max)
	}
	b := make([]byte, s.size)
	if _, err := s.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return b, nil
}

// dataAlloc is ntfs-3g's allocated size of the unnamed $DATA: the
// compressed size for compressed or sparse streams.
func (in *inode) dataAlloc() (size, alloc int64) {
	if len(in.data) == 0 {
		return 0, 0
	}
	a := in.data[0]
	for _, e := range in.data {
		if !e.resident && e.lowVCN == 0 {
			a = e
		}
	}
	if a.resident {
		n := int64(len(a.value))
		return n, (n + 7) &^ 7
	}
	if a.flags&(attrCompressionMask|attrSparse) != 0 {
		return a.dataSize, a.compSize
	}
	return a.dataSize, a.allocSize
}

// badReparseLen is the length of ntfs-3g's "unsupported reparse tag
// 0x%08lx" target.
const badReparseLen = 34

// classify decides type, size and blocks as ntfs-3g's getattr does
// (src/ntfs-3g.c, ntfs_fuse_getattr and its internal reparse plugins).
func (f *FS) classify(in *inode) error {
	flags := in.si.FileAttributes
	size, alloc := in.dataAlloc()
	switch {
	case flags&fileAttrReparsePoint != 0:
		in.size, in.blocks = badReparseLen, (alloc+511)>>9
		in.mode = fsys.S_IFLNK | 0o777
		if len(in.reparse) >= 8 {
			switch le32(in.reparse) {
			case tagAFUnix, tagLXFIFO, tagLXChr, tagLXBlk:
				// WSL special files: valid with no reparse data and the
				// recall-on-open flag; device numbers live in $EA, not read.
				if le16(in.reparse[4:]) == 0 && flags&fileAttrRecallOnOpen != 0 {
					in.mode = map[uint32]uint32{tagAFUnix: fsys.S_IFSOCK, tagLXFIFO: fsys.S_IFIFO,
						tagLXChr: fsys.S_IFCHR, tagLXBlk: fsys.S_IFBLK}[le32(in.reparse)]
					in.size = size
				}
			}
		}
		// Symlink sizes are the target's length, known after translation
		// (Stat asks for it).
	case in.isDir:
		in.mode = fsys.S_IFDIR | 0o777
		if len(in.i30alloc) > 0 {
			a := in.i30alloc[0]
			for _, e := range in.i30alloc {
				if !e.resident && e.lowVCN == 0 {
					a = e
				}
			}
			if !a.resident {
				in.size, in.blocks = a.dataSize, a.allocSize>>9
			}
		}
	default:
		in.mode = fsys.S_IFREG | 0o777
		in.size, in.blocks = size, (alloc+511)>>9
		if flags&fileAttrSystem != 0 {
			return f.interix(in, flags)
		}
	}
	return nil
}

// interix recognizes Interix (SFU) special files: system files whose data
// is empty (FIFO), one byte (socket), or starts with an "Intx" magic.
func (f *FS) interix(in *inode, flags uint32) error {
	if in.data == nil {
		in.mode = fsys.S_IFREG // ntfs-3g's "nodata" path: no permission bits
		return nil
	}
	if flags&fileAttrHidden == 0 {
		switch in.size {
		case 0:
			in.mode = fsys.S_IFIFO | 0o777
		case 1:
			in.mode = fsys.S_IFSOCK | 0o777
		}
	}
	if in.size <= 8 || in.size > 8+2*4096 {
		return nil
	}
	b, err := f.readAll(in.ino, in.data, in.size)
	if err != nil {
		return err
	}
	switch binary.LittleEndian.Uint64(b) {
	case intxBlk, intxChr:
		if len(b) == 24 {
			in.mode = fsys.S_IFBLK | 0o777
			if binary.LittleEndian.Uint64(b) == intxChr {
				in.mode = fsys.S_IFCHR | 0o777
			}
			in.rdev = makedev(binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:]))
		}
	case intxSymlink:
		in.mode = fsys.S_IFLNK | 0o777
		in.intx = utf16le(b[8:])
		in.size = int64(len(in.intx))
	}
	return nil
}

// makedev encodes a Linux dev_t as glibc's makedev does.
func makedev(major, minor uint64) uint64 {
	major, minor = major&0xFFFFFFFF, minor&0xFFFFFFFF
	return (major&0xFFFFF000)<<32 | (major&0xFFF)<<8 | (minor&0xFFFFFF00)<<12 | minor&0xFF
}

// Stat returns an inode's metadata.
func (f *FS) Stat(ino uint64) (*fsys.Stat, error) {
	in, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	st := &fsys.Stat{
		Ino:    ino,
		Mode:   in.mode,
		Size:   in.size,
		Blocks: in.blocks,
		Rdev:   in.rdev,
		Atime:  ntfsTime(in.si.LastAccessTime),
		Mtime:  ntfsTime(in.si.LastDataChangeTime),
		Ctime:  ntfsTime(in.si.LastMFTChangeTime),
		Btime:  ntfsTime(in.si.CreationTime),
		Flags:  in.si.FileAttributes,
		Nlink:  1,
	}
	if !in.isDir || in.mode&fsys.S_IFMT != fsys.S_IFDIR {
		n := 0
		for _, nm := range in.names {
			if nm.ns != nsDOS {
				n++
			}
		}
		st.Nlink = uint32(max(n, 1))
	}
	if in.mode&fsys.S_IFMT == fsys.S_IFLNK && in.intx == "" {
		st.Size = int64(len(f.reparseTarget(in)))
	}
	return st, nil
}

// Readlink returns a symlink's target.
func (f *FS) Readlink(ino uint64) (string, error) {
	in, err := f.inode(ino)
	if err != nil {
		return "", err
	}
	if in.mode&fsys.S_IFMT != fsys.S_IFLNK {
		return "", fmt.Errorf("%s: inode %d: %w", f.name, ino, fsys.ErrNotSymlink)
	}
	if in.intx != "" {
		return in.intx, nil
	}
	return f.reparseTarget(in), nil
}

// Open returns the unnamed $DATA stream of a regular file.
func (f *FS) Open(ino uint64) (fsys.File, error) {
	in, err := f.inode(ino)
	if err != nil {
		return nil, err
	}
	switch in.mode & fsys.S_IFMT {
	case fsys.S_IFDIR:
		return nil, fmt.Errorf("%s: inode %d: %w", f.name, ino, fsys.ErrIsDir)
	case fsys.S_IFREG:
	default:
		return nil, fmt.Errorf("%s: inode %d: not a regular file: %w", f.name, ino, fsys.ErrUnsupported)
	}
	if in.data == nil {
		return &stream{f: f, ino: ino, resident: []byte{}}, nil
	}
	return f.newStream(ino, in.data)
}
