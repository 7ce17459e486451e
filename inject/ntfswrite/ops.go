package ntfswrite

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Attr is the metadata of something created.
type Attr struct {
	// Attributes are Windows attribute flags among SettableAttrs; 0 means
	// what Windows gives new files (archive) and directories (none).
	Attributes uint32
	// Times; zero means the transaction's time.
	Btime time.Time // creation
	Mtime time.Time // last data change
	Atime time.Time // last access
}

// ReplaceAttr says what a replacement changes besides the content; a nil
// Attributes keeps the file's, zero times mean the transaction's time.
type ReplaceAttr struct {
	Attributes *uint32
	Mtime      time.Time
	Atime      time.Time
}

// Info is a file's metadata as the transaction sees it.
type Info struct {
	Rec        uint64
	Seq        uint16
	Dir        bool
	Size       int64
	Resident   bool
	Attributes uint32
	Links      uint16
	Btime      time.Time
	Mtime      time.Time
	Atime      time.Time
	Ctime      time.Time
}

// Stat returns a file's metadata.
func (f *FS) Stat(num uint64) (*Info, error) {
	r, err := f.record(num)
	if err != nil {
		return nil, err
	}
	si, err := f.stdInfo(r)
	if err != nil {
		return nil, err
	}
	t := func(o int) time.Time { return timeOf(int64(le.Uint64(si.value[o:]))) }
	in := &Info{Rec: num, Seq: r.seq, Dir: r.flags&recordDirectory != 0, Attributes: le.Uint32(si.value[siAttributes:]),
		Links: r.linkCount, Btime: t(siCreation), Mtime: t(siDataChange), Atime: t(siAccess), Ctime: t(siMFTChange)}
	if d := r.find(atData, nil); d != nil {
		in.Size, in.Resident = d.valueSize(), d.resident
	}
	return in, nil
}

func timeOf(t int64) time.Time {
	u := t - ntfsEpochDelta
	sec, rem := u/10_000_000, u%10_000_000
	if rem < 0 {
		sec, rem = sec-1, rem+10_000_000
	}
	return time.Unix(sec, rem*100).UTC()
}

// Lookup finds name in directory dir, case-sensitively as ntfs-3g (and the
// mount) does, DOS (8.3) names excepted; a missing name wraps ErrNotExist.
func (f *FS) Lookup(dir uint64, name string) (uint64, error) {
	x, err := f.openDir(dir)
	if err != nil {
		return 0, err
	}
	if name == "" || len(name) > 4*maxNameUnits || strings.ContainsAny(name, "/\x00") {
		return 0, fmt.Errorf("%s: %q in directory %d: %w", f.label, name, dir, ErrNotExist)
	}
	e, _, err := x.lookup(utf16Units(name))
	if err != nil {
		return 0, err
	}
	if e == nil || e.ns() == nsDOS {
		return 0, fmt.Errorf("%s: %q in directory %d: %w", f.label, name, dir, ErrNotExist)
	}
	num, _ := splitRef(e.ref())
	return num, nil
}

// targetDir opens a directory new names go into, refusing what the
// writer does not handle.
func (f *FS) targetDir(dir uint64) (*index, error) {
	x, err := f.openDir(dir)
	if err != nil {
		return nil, err
	}
	si, err := f.stdInfo(x.dir)
	if err != nil {
		return nil, err
	}
	flags := le.Uint32(si.value[siAttributes:])
	switch {
	case flags&FileAttrCompressed != 0:
		return nil, f.refuse("directory %d is compressed (Windows would compress new files; the writer writes only plain files)", dir)
	case flags&FileAttrEncrypted != 0:
		return nil, f.refuse("directory %d is encrypted with EFS (new files would have to be encrypted with the user's key)", dir)
	case flags&FileAttrReparsePoint != 0 || x.dir.find(atReparsePoint, nil) != nil:
		return nil, f.refuse("directory %d is a reparse point (a junction, symlink or mount point, not a plain directory)", dir)
	case dir == recExtend || dir < firstUser && dir != recRoot:
		return nil, f.refuse("directory %d is a system directory", dir)
	}
	return x, nil
}

// prepareName checks that name can be added to x: valid for Windows, not
// there, and not a name Windows sees as the same (case differences, or an
// existing 8.3 name).
func (f *FS) prepareName(x *index, name string) ([]uint16, error) {
	u, err := checkName(name)
	if err != nil {
		return nil, err
	}
	e, _, err := x.lookup(u)
	if err != nil {
		return nil, err
	}
	if e != nil && e.ns() != nsDOS {
		return nil, fmt.Errorf("%s: %q in directory %d: %w", f.label, name, x.dir.num, ErrExist)
	}
	if e, err = x.lookupIgnoreCase(u); err != nil {
		return nil, err
	}
	if e != nil {
		return nil, f.refuse("%q in directory %d is the same name for Windows as the existing %q (names differ only in case, or match an 8.3 name)", name, x.dir.num, utf16String(e.name()))
	}
	return u, nil
}

// times are a new file's four times.
type times struct{ btime, mtime, atime, ctime int64 }

func (f *FS) timesOf(a *Attr) (times, error) {
	t := times{f.nowNT, f.nowNT, f.nowNT, f.nowNT}
	for _, c := range []struct {
		src time.Time
		dst *int64
	}{{a.Btime, &t.btime}, {a.Mtime, &t.mtime}, {a.Atime, &t.atime}} {
		if !c.src.IsZero() {
			v, err := ntfsTime(c.src)
			if err != nil {
				return t, err
			}
			*c.dst = v
		}
	}
	return t, nil
}

func checkAttributes(v uint32) error {
	if v&^SettableAttrs != 0 {
		return fmt.Errorf("Windows attributes %#x: only read-only, hidden, system, archive, normal, temporary, offline and not-content-indexed can be set: %w", v, ErrRefused)
	}
	return nil
}

// Mkdir creates directory name in dir and returns its MFT record.
func (f *FS) Mkdir(dir uint64, name string, a Attr) (uint64, error) {
	var num uint64
	err := f.op(func() (err error) { num, err = f.create(dir, name, a, nil, true); return err })
	return num, err
}

// Create creates file name in dir holding c and returns its MFT record.
func (f *FS) Create(dir uint64, name string, a Attr, c Content) (uint64, error) {
	if c == nil {
		return 0, errors.New("ntfswrite: Create without content")
	}
	var num uint64
	err := f.op(func() (err error) { num, err = f.create(dir, name, a, c, false); return err })
	return num, err
}

func (f *FS) create(dir uint64, name string, a Attr, c Content, isDir bool) (uint64, error) {
	x, err := f.targetDir(dir)
	if err != nil {
		return 0, err
	}
	u, err := f.prepareName(x, name)
	if err != nil {
		return 0, err
	}
	if err := checkAttributes(a.Attributes); err != nil {
		return 0, err
	}
	t, err := f.timesOf(&a)
	if err != nil {
		return 0, err
	}
	attrs := a.Attributes &^ FileAttrNormal
	if a.Attributes == 0 && !isDir {
		attrs = FileAttrArchive
	}
	secID, sd, err := f.security(x.dir)
	if err != nil {
		return 0, err
	}
	f.begin()
	r, err := f.allocRecord()
	if err != nil {
		return 0, err
	}
	r.linkCount = 1
	r.add(&rattr{typ: atStandardInformation, resident: true, value: newSI(t, attrs, secID)})
	fnAttrs := attrs
	if isDir {
		r.flags |= recordDirectory
		fnAttrs |= fileAttrI30IndexPresent
	}
	fn := newFileName(mref(x.dir.num, x.dir.seq), t, fnAttrs, u, namespaceFor(name))
	fnAttr := &rattr{typ: atFileName, resident: true, rflags: residentIndexed, value: fn}
	r.add(fnAttr)
	if sd != nil {
		r.add(&rattr{typ: atSecurityDescriptor, resident: true, value: sd})
	}
	ev := Event{Op: OpCreate, Rec: r.num, Dir: x.dir.num, Name: name}
	if isDir {
		ev.Op = OpMkdir
		r.add(&rattr{typ: atIndexRoot, name: nameI30, resident: true, value: newIndexRoot(f.ixSize, f.clusterSize)})
	} else {
		d, err := f.writeData(r, c)
		if err != nil {
			return 0, err
		}
		ev.Size, ev.Resident, ev.Clusters = d.valueSize(), d.resident, extentsOf(d.runs)
		alloc := allocOf(d)
		le.PutUint64(fn[fnAllocSize:], uint64(alloc))
		le.PutUint64(fn[fnDataSize:], uint64(d.valueSize()))
		fnAttr.changed()
	}
	if used, err := r.used(); err != nil {
		return 0, err
	} else if used > int(f.recSize) {
		return 0, f.noSpace("the new record needs %d bytes, records have %d", used, f.recSize)
	}
	if err := x.insert(newEntry(mref(r.num, r.seq), fn)); err != nil {
		return 0, err
	}
	if err := f.touchDir(x); err != nil {
		return 0, err
	}
	f.event(ev)
	return r.num, nil
}

// allocOf is the allocated size a $FILE_NAME gives for a data attribute
// (ntfs-3g: the value rounded to 8 bytes when resident).
func allocOf(d *rattr) int64 {
	if d.resident {
		return int64(align8(len(d.value)))
	}
	return d.alloc
}

// writeData adds the unnamed $DATA of record r holding c: resident when
// it fits in the record, else in clusters allocated outside the MFT zone.
func (f *FS) writeData(r *mrec, c Content) (*rattr, error) {
	size := c.Size()
	if size < 0 {
		return nil, errors.New("ntfswrite: negative content size")
	}
	used, err := r.used()
	if err != nil {
		return nil, err
	}
	d := &rattr{typ: atData}
	if size < f.recSize && int64(used+align8(24+int(size))) <= f.recSize {
		b := make([]byte, size)
		if n, err := c.ReadAt(b, 0); n < len(b) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("reading the content: %w", err)
		}
		d.resident, d.value = true, b
		r.add(d)
		return d, nil
	}
	cs := f.clusterSize
	n := (size + cs - 1) / cs
	if n > f.clusters {
		return nil, f.noSpace("%d bytes need %d clusters, the volume has %d", size, n, f.clusters)
	}
	got, err := f.allocClusters(n, f.cursor, dataZone)
	if err != nil {
		return nil, err
	}
	for _, g := range got {
		vcn := runsClusters(d.runs)
		d.runs = appendRun(d.runs, g.LCN, g.N)
		off := vcn * cs
		f.st.data = append(f.st.data, dataRun{lcn: g.LCN, n: g.N, src: c, off: off, length: min(size-off, g.N*cs)})
	}
	d.alloc, d.size, d.init, d.highVCN = n*cs, size, size, n-1
	r.add(d)
	return d, nil
}

// newSI builds a $STANDARD_INFORMATION: NTFS 3.x with a security_id, else
// the NTFS 1.2 form ntfs-3g writes.
func newSI(t times, attrs, secID uint32) []byte {
	n := siSizeV1
	if secID != 0 {
		n = siSizeV3
	}
	v := make([]byte, n)
	le.PutUint64(v[siCreation:], uint64(t.btime))
	le.PutUint64(v[siDataChange:], uint64(t.mtime))
	le.PutUint64(v[siMFTChange:], uint64(t.ctime))
	le.PutUint64(v[siAccess:], uint64(t.atime))
	le.PutUint32(v[siAttributes:], attrs)
	if secID != 0 {
		le.PutUint32(v[siSecurityID:], secID)
	}
	return v
}

// newFileName builds a $FILE_NAME value (the index key too).
func newFileName(parent uint64, t times, attrs uint32, name []uint16, ns uint8) []byte {
	v := make([]byte, fnName+2*len(name))
	le.PutUint64(v[fnParent:], parent)
	le.PutUint64(v[fnCreation:], uint64(t.btime))
	le.PutUint64(v[fnDataChange:], uint64(t.mtime))
	le.PutUint64(v[fnMFTChange:], uint64(t.ctime))
	le.PutUint64(v[fnAccess:], uint64(t.atime))
	le.PutUint32(v[fnAttributes:], attrs)
	v[fnNameLen] = byte(len(name))
	v[fnNameType] = ns
	copy(v[fnName:], utf16Bytes(name))
	return v
}

// newIndexRoot is an empty $I30 index root (ntfs-3g dir.c __ntfs_create).
func newIndexRoot(blockSize, clusterSize int64) []byte {
	v := make([]byte, irHeaderSize+ihSize+ieHeaderSize)
	le.PutUint32(v[0:], atFileName)
	le.PutUint32(v[4:], collationFName)
	le.PutUint32(v[8:], uint32(blockSize))
	if clusterSize <= blockSize {
		v[12] = byte(blockSize / clusterSize)
	} else {
		v[12] = byte(blockSize / ntfsBlock)
	}
	h := v[irHeaderSize:]
	le.PutUint32(h[ihEntriesOff:], ihSize)
	le.PutUint32(h[ihIndexLength:], ihSize+ieHeaderSize)
	le.PutUint32(h[ihAllocSize:], ihSize+ieHeaderSize)
	e := h[ihSize:]
	le.PutUint16(e[8:], ieHeaderSize)
	le.PutUint16(e[12:], ieFlagEnd)
	return v
}
