package ntfs

import (
	"errors"
	"fmt"
	"io"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// attr is one decoded attribute of an MFT record.
type attr struct {
	typ      uint32
	name     string
	flags    uint16
	instance uint16
	rec      uint64 // record it is stored in
	off      int64  // byte offset of that record in the volume, -1 if unknown

	resident bool
	value    []byte // resident value

	// Non-resident.
	lowVCN, highVCN int64
	allocSize       int64
	dataSize        int64
	initSize        int64
	compSize        int64
	cuShift         uint8
	pairs           []byte // mapping pairs, up to the end of the attribute
}

// record is an MFT record with its attributes, those of its extension
// records (through $ATTRIBUTE_LIST) included.
type record struct {
	ino       uint64
	seq       uint16
	flags     uint16
	linkCount uint16
	base      uint64
	attrs     []*attr
}

// applyFixups checks and undoes the update sequence array of a multi-sector
// protected record (NTFS "fixups": the last two bytes of every 512-byte
// stride hold the update sequence number, the real bytes are in the array).
func applyFixups(b []byte, usaOfs, usaCount uint16) error {
	if usaCount == 0 {
		return errors.New("no update sequence array")
	}
	strides := len(b) / 512
	if int(usaCount)-1 != strides {
		return fmt.Errorf("update sequence array has %d entries for %d sectors", usaCount-1, strides)
	}
	end := int(usaOfs) + 2*int(usaCount)
	if usaOfs&1 != 0 || end > len(b) || usaOfs < 8 {
		return fmt.Errorf("update sequence array at %d+%d is outside the %d-byte record", usaOfs, 2*usaCount, len(b))
	}
	usn := b[usaOfs : usaOfs+2]
	for i := 0; i < strides; i++ {
		p := (i+1)*512 - 2
		if b[p] != usn[0] || b[p+1] != usn[1] {
			return fmt.Errorf("fixup mismatch in sector %d (torn write)", i)
		}
	}
	for i := 0; i < strides; i++ {
		p := (i+1)*512 - 2
		s := int(usaOfs) + 2 + 2*i
		b[p], b[p+1] = b[s], b[s+1]
	}
	return nil
}

// readRecordAt reads the record of number ino from r at byte off (an
// offset in r, which is the $MFT stream or, to bootstrap, the volume),
// checks it and decodes its own attributes (not following an attribute
// list). volOff is the volume offset for errors.
func (f *FS) readRecordAt(r io.ReaderAt, ino uint64, off, volOff int64) (*record, error) {
	b := make([]byte, f.recSize)
	if n, err := r.ReadAt(b, off); n < len(b) {
		if err == nil || errors.Is(err, io.EOF) {
			return nil, f.corrupt(ino, volOff, "MFT record past the end of the MFT")
		}
		if errors.Is(err, fsys.ErrCorrupt) {
			return nil, err
		}
		return nil, fmt.Errorf("%s: inode %d: reading MFT record: %w", f.name, ino, err)
	}
	var h recordHeader
	decode(b, &h)
	switch string(h.Magic[:]) {
	case "FILE":
	case "BAAD":
		return nil, f.corrupt(ino, volOff, "MFT record marked bad (BAAD) by chkdsk")
	default:
		if h.Magic == [4]byte{} {
			return nil, f.notExist(ino, "MFT record is empty")
		}
		return nil, f.corrupt(ino, volOff, "MFT record has magic %q, not FILE", h.Magic[:])
	}
	if err := applyFixups(b, h.USAOfs, h.USACount); err != nil {
		return nil, f.corrupt(ino, volOff, "MFT record: %v", err)
	}
	if h.Flags&recordInUse == 0 {
		return nil, f.notExist(ino, "MFT record is not in use")
	}
	if h.USAOfs >= recordHeaderSize && uint64(h.MFTRecordNumber) != ino&0xFFFFFFFF {
		return nil, f.corrupt(ino, volOff, "MFT record says it is record %d", h.MFTRecordNumber)
	}
	inUse := int(h.BytesInUse)
	if inUse > len(b) || inUse < recordHeaderSize {
		return nil, f.corrupt(ino, volOff, "MFT record uses %d of %d bytes", h.BytesInUse, len(b))
	}
	base, _ := mftRef(h.BaseMFTRecord)
	rec := &record{ino: ino, seq: h.SequenceNumber, flags: h.Flags, linkCount: h.LinkCount, base: base}
	pos := int(h.AttrsOffset)
	for n := 0; ; n++ {
		if pos+4 > inUse || pos < recordHeaderSize-8 {
			return nil, f.corrupt(ino, volOff+int64(pos), "attributes run past the record's %d bytes in use", inUse)
		}
		if le32(b[pos:]) == atEnd {
			break
		}
		a, l, err := decodeAttr(b[pos:inUse])
		if err != nil {
			return nil, f.corrupt(ino, volOff+int64(pos), "attribute %d: %v", n, err)
		}
		a.rec, a.off = ino, volOff
		rec.attrs = append(rec.attrs, a)
		pos += l
	}
	return rec, nil
}

// decodeAttr decodes the attribute at the start of b (which ends where the
// record's used bytes end) and returns its length.
func decodeAttr(b []byte) (*attr, int, error) {
	var h attrHeader
	if len(b) < attrHeaderSize {
		return nil, 0, errors.New("truncated header")
	}
	decode(b, &h)
	l := int(h.Length)
	if l < attrHeaderSize || l > len(b) || l%8 != 0 {
		return nil, 0, fmt.Errorf("type %#x has length %d (%d bytes left)", h.Type, h.Length, len(b))
	}
	b = b[:l]
	a := &attr{typ: h.Type, flags: h.Flags, instance: h.Instance}
	if h.NameLength > 0 {
		no, nl := int(h.NameOffset), 2*int(h.NameLength)
		if no+nl > l {
			return nil, 0, fmt.Errorf("type %#x: name at %d+%d past its %d bytes", h.Type, no, nl, l)
		}
		a.name = utf16le(b[no : no+nl])
	}
	if h.NonResident == 0 {
		var r residentHeader
		if l < attrHeaderSize+residentHeaderSize {
			return nil, 0, fmt.Errorf("resident type %#x too short", h.Type)
		}
		decode(b[attrHeaderSize:], &r)
		vo, vl := int(r.ValueOffset), int(r.ValueLength)
		if vo+vl > l || vo < attrHeaderSize+residentHeaderSize && vl > 0 {
			return nil, 0, fmt.Errorf("resident type %#x: value at %d+%d past its %d bytes", h.Type, vo, vl, l)
		}
		a.resident = true
		a.value = b[vo : vo+vl]
		return a, l, nil
	}
	var nr nonResidentHeader
	if l < attrHeaderSize+nonResidentHeaderSize-8 {
		return nil, 0, fmt.Errorf("non-resident type %#x too short", h.Type)
	}
	hb := make([]byte, nonResidentHeaderSize)
	copy(hb, b[attrHeaderSize:])
	decode(hb, &nr)
	if h.Flags&(attrCompressionMask|attrSparse) == 0 || l < attrHeaderSize+nonResidentHeaderSize {
		nr.CompressedSize = nr.AllocatedSize
	}
	mp := int(nr.MappingPairsOffset)
	if mp > l || mp < attrHeaderSize+nonResidentHeaderSize-8 {
		return nil, 0, fmt.Errorf("non-resident type %#x: mapping pairs at %d of %d bytes", h.Type, mp, l)
	}
	if nr.LowestVCN < 0 || nr.HighestVCN < nr.LowestVCN-1 {
		return nil, 0, fmt.Errorf("non-resident type %#x: VCNs %d..%d", h.Type, nr.LowestVCN, nr.HighestVCN)
	}
	if nr.LowestVCN == 0 && (nr.DataSize < 0 || nr.InitializedSize < 0 || nr.AllocatedSize < 0 || nr.CompressedSize < 0 ||
		nr.InitializedSize > nr.DataSize) {
		return nil, 0, fmt.Errorf("non-resident type %#x: sizes data %d initialized %d allocated %d", h.Type, nr.DataSize, nr.InitializedSize, nr.AllocatedSize)
	}
	a.lowVCN, a.highVCN = nr.LowestVCN, nr.HighestVCN
	a.allocSize, a.dataSize, a.initSize, a.compSize = nr.AllocatedSize, nr.DataSize, nr.InitializedSize, nr.CompressedSize
	a.cuShift = nr.CompressionUnit
	a.pairs = b[mp:]
	return a, l, nil
}

// maxAttrList bounds $ATTRIBUTE_LIST, as ntfs-3g does (inode.c: 0x40000).
const maxAttrList = 0x40000

// readRecord reads base record ino with the attributes of its extension
// records.
func (f *FS) readRecord(ino uint64) (*record, error) {
	if f.mft == nil {
		return nil, f.corrupt(ino, -1, "no MFT")
	}
	off := int64(ino) * f.recSize
	if ino > uint64(f.mft.size)/uint64(f.recSize) || off+f.recSize > f.mft.size {
		return nil, f.notExist(ino, "MFT record beyond the end of the MFT")
	}
	rec, err := f.readRecordAt(f.mft, ino, off, f.mft.volOff(off))
	if err != nil {
		return nil, err
	}
	if rec.base != 0 {
		return nil, f.notExist(ino, fmt.Sprintf("MFT record is an extension of record %d", rec.base))
	}
	var list *attr
	for _, a := range rec.attrs {
		if a.typ == atAttributeList {
			list = a
		}
	}
	if list == nil {
		return rec, nil
	}
	return rec, f.expandAttrList(rec, list)
}

// expandAttrList adds the attributes the list places in extension records.
func (f *FS) expandAttrList(rec *record, list *attr) error {
	var data []byte
	if list.resident {
		data = list.value
	} else {
		if list.dataSize > maxAttrList {
			return f.corrupt(rec.ino, list.off, "attribute list of %d bytes", list.dataSize)
		}
		s, err := f.newStream(rec.ino, []*attr{list})
		if err != nil {
			return err
		}
		data = make([]byte, list.dataSize)
		if _, err := s.ReadAt(data, 0); err != nil && err != io.EOF {
			return err
		}
	}
	ext := map[uint64]*record{}
	for pos := 0; pos+attrListEntrySize <= len(data); {
		var e attrListEntry
		decode(data[pos:], &e)
		if e.Length < attrListEntrySize || pos+int(e.Length) > len(data) {
			return f.corrupt(rec.ino, list.off, "attribute list entry at %d has length %d", pos, e.Length)
		}
		name := ""
		if e.NameLength > 0 {
			no, nl := pos+int(e.NameOffset), 2*int(e.NameLength)
			if no+nl > pos+int(e.Length) {
				return f.corrupt(rec.ino, list.off, "attribute list entry at %d: name past its end", pos)
			}
			name = utf16le(data[no : no+nl])
		}
		pos += int(e.Length)
		r, _ := mftRef(e.MFTReference)
		if r == rec.ino {
			continue // in the base record, already decoded
		}
		x, ok := ext[r]
		if !ok {
			if len(ext) >= 4096 {
				return f.corrupt(rec.ino, list.off, "attribute list names more than 4096 extension records")
			}
			off := int64(r) * f.recSize
			if off+f.recSize > f.mft.size || r > uint64(f.mft.size) {
				return f.corrupt(rec.ino, list.off, "attribute list points to record %d beyond the MFT", r)
			}
			var err error
			x, err = f.readRecordAt(f.mft, r, off, f.mft.volOff(off))
			if err != nil {
				return err
			}
			if x.base != rec.ino {
				return f.corrupt(rec.ino, list.off, "extension record %d belongs to record %d", r, x.base)
			}
			ext[r] = x
		}
		found := false
		for _, a := range x.attrs {
			if a.typ == e.Type && a.instance == e.Instance && a.name == name {
				rec.attrs = append(rec.attrs, a)
				found = true
				break
			}
		}
		if !found {
			return f.corrupt(rec.ino, list.off, "attribute %#x instance %d missing from extension record %d", e.Type, e.Instance, r)
		}
	}
	return nil
}

// find returns the attributes of a type and name (the extents of one
// attribute when it is non-resident and split).
func (rec *record) find(typ uint32, name string) []*attr {
	var out []*attr
	for _, a := range rec.attrs {
		if a.typ == typ && a.name == name {
			out = append(out, a)
		}
	}
	return out
}

// first returns the first attribute of a type, or nil.
func (rec *record) first(typ uint32) *attr {
	for _, a := range rec.attrs {
		if a.typ == typ {
			return a
		}
	}
	return nil
}
