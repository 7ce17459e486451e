package ntfswrite

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmmount/vmmount/fsread/ntfs"
)

// mrec is an MFT record open for change: its header fields and its
// attributes, each kept as it is on disk until changed.
type mrec struct {
	num          uint64
	seq          uint16
	linkCount    uint16
	flags        uint16
	base         uint64
	nextInstance uint16
	lsn          uint64
	usn          uint16 // update sequence number of the last write
	usaOfs       int
	usaCount     int
	attrsOff     int
	attrs        []*rattr // stored in this record
	dirty        bool

	// A base record with an attribute list: the list, every attribute
	// of the file in list order (some stored in extension records), and
	// the attributes split into several extents.
	list  *rattr
	all   []*rattr
	multi bool
}

// rattr is one attribute of a record.
type rattr struct {
	typ      uint32
	name     []uint16
	flags    uint16
	instance uint16
	resident bool

	// Resident.
	rflags uint8
	value  []byte

	// Non-resident.
	lowVCN, highVCN int64
	cuShift         uint8
	alloc, size     int64
	init, comp      int64
	runs            []run // decoded mapping pairs
	wideHeader      bool  // the header has the compressed size field

	// raw is the attribute as read; nil once changed or for a new one.
	raw []byte
	// home is the record the attribute is stored in (an extension record
	// for some attributes of a file with an attribute list).
	home *mrec
}

// errRecordFree says a record is not in use (or was never formatted).
var errRecordFree = errors.New("MFT record is not in use")

// parseRecord decodes record num from b (recSize bytes, fixups still
// applied). A record not in use returns errRecordFree with the record's
// sequence and update sequence numbers (for reuse).
func parseRecord(b []byte, num uint64, clusters int64) (*mrec, error) {
	if len(b) < recHeaderSize+8 {
		return nil, fmt.Errorf("record of %d bytes", len(b))
	}
	var h ntfs.RecordHeader
	if _, err := decodeStruct(b, &h); err != nil {
		return nil, err
	}
	r := &mrec{num: num, seq: h.SequenceNumber, linkCount: h.LinkCount, flags: h.Flags,
		nextInstance: h.NextAttrInst, lsn: h.LSN, usaOfs: int(h.USAOfs), usaCount: int(h.USACount)}
	r.base, _ = splitRef(h.BaseMFTRecord)
	if string(h.Magic[:]) != "FILE" {
		if string(h.Magic[:]) == "BAAD" {
			return nil, errors.New("record is marked bad (BAAD): an incomplete write")
		}
		return r, errRecordFree
	}
	if r.usaOfs >= 2 && r.usaOfs+2 <= len(b) {
		r.usn = le.Uint16(b[r.usaOfs:])
	}
	if err := ntfs.ApplyFixups(b, h.USAOfs, h.USACount); err != nil {
		if h.Flags&recordInUse == 0 {
			return r, errRecordFree
		}
		return nil, err
	}
	if h.Flags&recordInUse == 0 {
		return r, errRecordFree
	}
	if int(h.BytesAllocated) != len(b) {
		return nil, fmt.Errorf("record says it has %d bytes, not %d", h.BytesAllocated, len(b))
	}
	if h.USAOfs < recHeaderSize {
		return nil, fmt.Errorf("record has an NTFS 3.0 header (update sequence array at %d)", h.USAOfs)
	}
	if uint64(h.MFTRecordNumber) != num&0xFFFFFFFF {
		return nil, fmt.Errorf("record says it is record %d", h.MFTRecordNumber)
	}
	inUse := int(h.BytesInUse)
	r.attrsOff = int(h.AttrsOffset)
	if inUse > len(b) || inUse < recHeaderSize+8 || r.attrsOff%8 != 0 || r.attrsOff < r.usaOfs+2*r.usaCount || r.attrsOff+8 > inUse {
		return nil, fmt.Errorf("record uses %d bytes with attributes at %d", inUse, r.attrsOff)
	}
	for pos := r.attrsOff; ; {
		if pos+8 > inUse {
			return nil, fmt.Errorf("attributes run past the %d bytes in use", inUse)
		}
		if le.Uint32(b[pos:]) == atEnd {
			break
		}
		if len(r.attrs) >= 512 {
			return nil, errors.New("more than 512 attributes")
		}
		a, n, err := parseAttr(b[pos:inUse], clusters)
		if err != nil {
			return nil, fmt.Errorf("attribute at offset %d: %v", pos, err)
		}
		a.home = r
		r.attrs = append(r.attrs, a)
		pos += n
	}
	return r, nil
}

// extents counts the attributes of a type and name (the extents of a
// non-resident attribute split over records).
func (r *mrec) extents(typ uint32, name []uint16) int {
	n := 0
	for _, a := range r.view() {
		if a.typ == typ && a.isNamed(name) {
			n++
		}
	}
	return n
}

// add inserts a new attribute in type order (after the attributes of
// lower type, and of the same type with a name that collates before) and
// gives it the next instance number.
func (r *mrec) add(a *rattr) {
	a.instance = r.nextInstance
	r.nextInstance++
	a.raw = nil
	a.home = r
	i := 0
	for i < len(r.attrs) {
		b := r.attrs[i]
		if b.typ > a.typ || b.typ == a.typ && compareUnits(b.name, a.name) > 0 {
			break
		}
		i++
	}
	r.attrs = append(r.attrs[:i], append([]*rattr{a}, r.attrs[i:]...)...)
	r.dirty = true
}

// remove drops an attribute.
func (r *mrec) remove(a *rattr) {
	for i, b := range r.attrs {
		if b == a {
			r.attrs = append(r.attrs[:i], r.attrs[i+1:]...)
			r.dirty = true
			return
		}
	}
}

func compareUnits(a, b []uint16) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			if a[i] < b[i] {
				return -1
			}
			return 1
		}
	}
	return len(a) - len(b)
}

// used returns the bytes the record uses with its attributes as they are
// now (header, attributes, end marker).
func (r *mrec) used() (int, error) {
	n := r.attrsOff + 8
	for _, a := range r.attrs {
		b, err := a.encode()
		if err != nil {
			return 0, err
		}
		a.raw = b
		n += len(b)
	}
	return n, nil
}

// serialize builds the record's recSize bytes with fixups applied for a
// write, advancing the update sequence number.
func (r *mrec) serialize(recSize int) ([]byte, error) {
	b := make([]byte, recSize)
	n, err := r.used()
	if err != nil {
		return nil, err
	}
	if n > recSize {
		return nil, fmt.Errorf("record %d needs %d bytes, it has %d", r.num, n, recSize)
	}
	copy(b, "FILE")
	le.PutUint16(b[recUSAOfs:], uint16(r.usaOfs))
	le.PutUint16(b[recUSACount:], uint16(r.usaCount))
	le.PutUint64(b[recLSN:], r.lsn)
	le.PutUint16(b[recSeq:], r.seq)
	le.PutUint16(b[recLinkCount:], r.linkCount)
	le.PutUint16(b[recAttrsOffset:], uint16(r.attrsOff))
	le.PutUint16(b[recFlags:], r.flags)
	le.PutUint32(b[recBytesInUse:], uint32(n))
	le.PutUint32(b[recBytesAlloc:], uint32(recSize))
	le.PutUint64(b[recBase:], r.base)
	le.PutUint16(b[recNextInstance:], r.nextInstance)
	le.PutUint32(b[recNumber:], uint32(r.num))
	pos := r.attrsOff
	for _, a := range r.attrs {
		pos += copy(b[pos:], a.raw)
	}
	le.PutUint32(b[pos:], atEnd)
	r.usn = nextUSN(r.usn)
	if err := protect(b, r.usaOfs, r.usaCount, r.usn); err != nil {
		return nil, fmt.Errorf("record %d: %v", r.num, err)
	}
	return b, nil
}

// nextUSN advances an update sequence number, skipping 0 and 0xFFFF as
// ntfs-3g does (mst.c ntfs_mst_pre_write_fixup).
func nextUSN(u uint16) uint16 {
	u++
	if u == 0 || u == 0xFFFF {
		u = 1
	}
	return u
}

// protect applies update sequence fixups before a write: the last two
// bytes of every 512-byte stride go into the array and are replaced by
// usn (mst.c).
func protect(b []byte, usaOfs, usaCount int, usn uint16) error {
	if usaCount-1 != len(b)/ntfsBlock || usaOfs+2*usaCount > len(b) || usaOfs&1 != 0 {
		return fmt.Errorf("update sequence array at %d with %d entries for %d bytes", usaOfs, usaCount, len(b))
	}
	le.PutUint16(b[usaOfs:], usn)
	for i := 0; i < usaCount-1; i++ {
		p := (i+1)*ntfsBlock - 2
		copy(b[usaOfs+2+2*i:], b[p:p+2])
		le.PutUint16(b[p:], usn)
	}
	return nil
}

// newRecord lays out an empty record (ntfs-3g mft.c
// ntfs_mft_record_layout, NTFS 3.1 header).
func newRecord(num uint64, recSize int, seq, usn uint16) *mrec {
	usaCount := recSize/ntfsBlock + 1
	return &mrec{num: num, seq: seq, usn: usn, usaOfs: recHeaderSize, usaCount: usaCount,
		attrsOff: align8(recHeaderSize + 2*usaCount), dirty: true}
}

// formatFree is an empty record not in use, as ntfs-3g formats records
// when it extends the MFT (mft.c ntfs_mft_record_format).
func formatFree(num uint64, recSize int) ([]byte, error) {
	r := newRecord(num, recSize, 1, 0)
	return r.serialize(recSize)
}

// sameRecords compares two deprotected copies of a record up to its bytes
// in use, as ntfs-3g compares $MFT with $MFTMirr.
func sameRecords(a, b []byte) bool {
	if len(a) < recHeaderSize || len(b) < recHeaderSize {
		return false
	}
	n := int(le.Uint32(a[recBytesInUse:]))
	if n <= recHeaderSize || n > len(a) || n > len(b) {
		return false
	}
	return bytes.Equal(a[:n], b[:n])
}

// fixupsUndo undoes a record's fixups in place when they check.
func fixupsUndo(b []byte) {
	ntfs.ApplyFixups(b, le.Uint16(b[recUSAOfs:]), le.Uint16(b[recUSACount:]))
}

// stdInfo returns a file's $STANDARD_INFORMATION, which must be resident
// and hold at least the NTFS 1.2 fields.
func (f *FS) stdInfo(r *mrec) (*rattr, error) {
	si := r.find(atStandardInformation, nil)
	if si == nil || !si.resident || len(si.value) < siSizeV1 {
		return nil, f.corrupt("MFT record %d has no valid $STANDARD_INFORMATION", r.num)
	}
	return si, nil
}
