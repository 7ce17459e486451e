package ntfswrite

import (
	"errors"
	"fmt"
	"time"
)

// validAttrFlags are the attribute flags ntfs-3g copies from a file into
// its index entries (layout.h FILE_ATTR_VALID_FLAGS).
const validAttrFlags = 0x00007FB7

// touchDir records a change of directory x's content: its last data and
// MFT change times, in its record and its index entries.
func (f *FS) touchDir(x *index) error {
	si, err := f.stdInfo(x.dir)
	if err != nil {
		return err
	}
	le.PutUint64(si.value[siDataChange:], uint64(f.nowNT))
	le.PutUint64(si.value[siMFTChange:], uint64(f.nowNT))
	si.changed()
	if err := f.syncNames(x.dir); err != nil {
		return err
	}
	if ok, err := x.rootFits(false); err != nil {
		return err
	} else if !ok {
		return f.noSpace("directory %d: its record has no room left (it would need an attribute list)", x.dir.num)
	}
	// $INDEX_ALLOCATION and $BITMAP may live in an extension record.
	for _, a := range []*rattr{x.allocAttr(), x.bitmapAttr()} {
		if a == nil {
			continue
		}
		if used, err := a.home.used(); err != nil {
			return err
		} else if used > int(f.recSize) {
			return f.noSpace("directory %d: MFT record %d has no room left for its index (it would need another extension record)", x.dir.num, a.home.num)
		}
	}
	return nil
}

// syncNames copies a file's times, attributes and sizes into the index
// entries of its names, as ntfs-3g does when it syncs an inode (inode.c
// ntfs_inode_sync_file_name); a name whose directory the writer does not
// open (an attribute list, say) keeps its older copy, as Windows leaves
// them until it next touches the file.
func (f *FS) syncNames(r *mrec) error {
	si, err := f.stdInfo(r)
	if err != nil {
		return err
	}
	flags := le.Uint32(si.value[siAttributes:])
	var size, alloc int64
	if r.flags&recordDirectory == 0 {
		if d := r.find(atData, nil); d != nil {
			size, alloc = d.valueSize(), allocOf(d)
		}
	}
	for _, a := range r.findAll(atFileName) {
		if !a.resident || len(a.value) < fnName || len(a.value) < fnName+2*int(a.value[fnNameLen]) {
			return f.corrupt("MFT record %d has a bad $FILE_NAME", r.num)
		}
		parent, _ := splitRef(le.Uint64(a.value[fnParent:]))
		x, err := f.openDir(parent)
		if errors.Is(err, ErrRefused) {
			continue
		}
		if err != nil {
			return err
		}
		if r.flags&recordDirectory == 0 {
			le.PutUint64(a.value[fnAllocSize:], uint64(alloc))
			a.changed()
		}
		name := unitsOf(a.value[fnName : fnName+2*int(a.value[fnNameLen])])
		if parent == r.num {
			// The root's entry for itself ("."), which not every volume has.
			if e, _, err := x.lookup(name); err != nil || e == nil {
				continue
			}
		}
		err = x.updateEntry(name, r.num, func(k []byte) {
			le.PutUint32(k[fnAttributes:], le.Uint32(k[fnAttributes:])&^validAttrFlags|flags&validAttrFlags)
			le.PutUint64(k[fnAllocSize:], uint64(alloc))
			le.PutUint64(k[fnDataSize:], uint64(size))
			copy(k[fnCreation:fnCreation+32], si.value[siCreation:siCreation+32])
			// $STANDARD_INFORMATION orders the times creation, data
			// change, MFT change, access, as $FILE_NAME does.
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// checkFile refuses files whose content the writer does not rewrite.
func (f *FS) checkFile(r *mrec) error {
	si, err := f.stdInfo(r)
	if err != nil {
		return err
	}
	flags := le.Uint32(si.value[siAttributes:])
	d := r.find(atData, nil)
	if r.num < firstUser {
		return f.refuse("MFT record %d is a system file", r.num)
	}
	for _, a := range r.findAll(atFileName) {
		if len(a.value) >= 8 {
			if p, _ := splitRef(le.Uint64(a.value[fnParent:])); p == recExtend {
				return f.refuse("file %d is a system file in $Extend", r.num)
			}
		}
	}
	switch {
	case r.flags&recordDirectory != 0:
		return fmt.Errorf("%s: MFT record %d is a directory: %w", f.label, r.num, ErrRefused)
	case r.list != nil:
		return f.refuse("file %d has an attribute list (its attributes span several MFT records)", r.num)
	case flags&FileAttrReparsePoint != 0 || r.find(atReparsePoint, nil) != nil:
		return f.refuse("file %d is a reparse point (a symlink, a WOF/CompactOS-compressed or deduplicated file, or a cloud placeholder): its content is not its $DATA", r.num)
	case flags&FileAttrEncrypted != 0:
		return f.refuse("file %d is encrypted with EFS", r.num)
	case d == nil:
		return f.refuse("file %d has no unnamed $DATA (not a regular file)", r.num)
	case d.flags&attrCompressionMask != 0 || flags&FileAttrCompressed != 0:
		return f.refuse("file %d is compressed", r.num)
	case d.flags&attrSparse != 0 || flags&FileAttrSparse != 0:
		return f.refuse("file %d is sparse", r.num)
	case d.flags&attrEncrypted != 0:
		return f.refuse("file %d is encrypted", r.num)
	}
	return nil
}

// Replace gives file num the content c, in place: the record, its names,
// named streams and security stay; its old clusters are freed (and not
// reused by the same transaction).
func (f *FS) Replace(num uint64, c Content, a ReplaceAttr) error {
	return f.op(func() error { return f.replace(num, c, a) })
}

func (f *FS) replace(num uint64, c Content, a ReplaceAttr) error {
	if c == nil {
		return errors.New("ntfswrite: Replace without content")
	}
	r, err := f.record(num)
	if err != nil {
		return err
	}
	if err := f.checkFile(r); err != nil {
		return err
	}
	if a.Attributes != nil {
		if err := checkAttributes(*a.Attributes); err != nil {
			return err
		}
	}
	old := r.find(atData, nil)
	if !old.resident {
		for _, x := range old.runs {
			if x.LCN < 0 {
				return f.refuse("file %d has holes", num)
			}
		}
		if err := f.checkOwned(num, old.runs); err != nil {
			return err
		}
	}
	// The attribute is rebuilt in its place, with its instance number.
	f.begin()
	inst := old.instance
	r.remove(old)
	d, err := f.writeData(r, c)
	if err != nil {
		return err
	}
	r.nextInstance--
	d.instance = inst
	if !old.resident {
		f.freeClusters(old.runs)
	}
	if err := f.setTimes(r, a.Attributes, a.Mtime, a.Atime); err != nil {
		return err
	}
	if err := f.syncNames(r); err != nil {
		return err
	}
	if used, err := r.used(); err != nil {
		return err
	} else if used > int(f.recSize) {
		return f.noSpace("record %d needs %d bytes, records have %d", num, used, f.recSize)
	}
	f.event(Event{Op: OpReplace, Rec: num, Size: c.Size(), Resident: d.resident, Clusters: extentsOf(d.runs), Freed: extentsOf(old.runs)})
	return nil
}

// setTimes sets a file's last data change and access times (zero: now),
// its MFT change time to now, and its attributes when given.
func (f *FS) setTimes(r *mrec, attrs *uint32, mtime, atime time.Time) error {
	si, err := f.stdInfo(r)
	if err != nil {
		return err
	}
	m, a := f.nowNT, f.nowNT
	if !mtime.IsZero() {
		if m, err = ntfsTime(mtime); err != nil {
			return err
		}
	}
	if !atime.IsZero() {
		if a, err = ntfsTime(atime); err != nil {
			return err
		}
	}
	le.PutUint64(si.value[siDataChange:], uint64(m))
	le.PutUint64(si.value[siAccess:], uint64(a))
	le.PutUint64(si.value[siMFTChange:], uint64(f.nowNT))
	if attrs != nil {
		keep := le.Uint32(si.value[siAttributes:]) &^ SettableAttrs
		le.PutUint32(si.value[siAttributes:], keep|*attrs&^FileAttrNormal)
	}
	si.changed()
	return nil
}

// SetAttr sets a file's (or directory's) times and Windows attributes
// without changing its content: what a does, as for Replace.
func (f *FS) SetAttr(num uint64, a ReplaceAttr) error {
	return f.op(func() error {
		r, err := f.record(num)
		if err != nil {
			return err
		}
		if num < firstUser {
			return f.refuse("MFT record %d is a system file", num)
		}
		if a.Attributes != nil {
			if err := checkAttributes(*a.Attributes); err != nil {
				return err
			}
		}
		if _, err := f.stdInfo(r); err != nil {
			return err
		}
		f.begin()
		if err := f.setTimes(r, a.Attributes, a.Mtime, a.Atime); err != nil {
			return err
		}
		if err := f.syncNames(r); err != nil {
			return err
		}
		f.event(Event{Op: OpSetAttr, Rec: num})
		return nil
	})
}
