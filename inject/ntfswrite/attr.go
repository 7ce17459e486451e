package ntfswrite

import (
	"errors"
	"fmt"

	"github.com/vmmount/vmmount/fsread/ntfs"
)

// parseAttr decodes the attribute at the start of b.
func parseAttr(b []byte, clusters int64) (*rattr, int, error) {
	var h ntfs.AttrHeader
	if len(b) < ntfs.AttrHeaderSize {
		return nil, 0, errors.New("truncated header")
	}
	decodeStruct(b, &h)
	l := int(h.Length)
	if l < ntfs.AttrHeaderSize || l > len(b) || l%8 != 0 {
		return nil, 0, fmt.Errorf("type %#x has length %d", h.Type, h.Length)
	}
	b = b[:l]
	a := &rattr{typ: h.Type, flags: h.Flags, instance: h.Instance, raw: append([]byte(nil), b...)}
	if h.NameLength > 0 {
		no, nl := int(h.NameOffset), 2*int(h.NameLength)
		if no+nl > l || no < ntfs.AttrHeaderSize {
			return nil, 0, fmt.Errorf("type %#x: name at %d+%d outside its %d bytes", h.Type, no, nl, l)
		}
		a.name = unitsOf(b[no : no+nl])
	}
	if h.NonResident == 0 {
		var r ntfs.ResidentHeader
		if l < ntfs.AttrHeaderSize+ntfs.ResidentHeaderSize {
			return nil, 0, fmt.Errorf("resident type %#x too short", h.Type)
		}
		decodeStruct(b[ntfs.AttrHeaderSize:], &r)
		vo, vl := int(r.ValueOffset), int(r.ValueLength)
		if vo+vl > l || (vo < ntfs.AttrHeaderSize+ntfs.ResidentHeaderSize && vl > 0) {
			return nil, 0, fmt.Errorf("resident type %#x: value at %d+%d outside its %d bytes", h.Type, vo, vl, l)
		}
		a.resident = true
		a.rflags = r.ResidentFlags
		a.value = append([]byte(nil), b[vo:vo+vl]...)
		return a, l, nil
	}
	var nr ntfs.NonResidentHeader
	if l < ntfs.AttrHeaderSize+ntfs.NonResidentHeaderSize-8 {
		return nil, 0, fmt.Errorf("non-resident type %#x too short", h.Type)
	}
	hb := make([]byte, ntfs.NonResidentHeaderSize)
	copy(hb, b[ntfs.AttrHeaderSize:])
	decodeStruct(hb, &nr)
	mp := int(nr.MappingPairsOffset)
	if mp > l || mp < ntfs.AttrHeaderSize+ntfs.NonResidentHeaderSize-8 {
		return nil, 0, fmt.Errorf("non-resident type %#x: mapping pairs at %d of %d bytes", h.Type, mp, l)
	}
	a.wideHeader = mp >= ntfs.AttrHeaderSize+ntfs.NonResidentHeaderSize && h.Flags&(attrCompressionMask|attrSparse) != 0
	if !a.wideHeader {
		nr.CompressedSize = 0
	}
	if nr.LowestVCN < 0 || nr.HighestVCN < nr.LowestVCN-1 || nr.HighestVCN >= clusters {
		return nil, 0, fmt.Errorf("non-resident type %#x: VCNs %d..%d", h.Type, nr.LowestVCN, nr.HighestVCN)
	}
	if nr.LowestVCN == 0 && (nr.DataSize < 0 || nr.InitializedSize < 0 || nr.AllocatedSize < 0 || nr.InitializedSize > nr.DataSize ||
		nr.DataSize > nr.AllocatedSize && h.Flags&(attrCompressionMask|attrSparse) == 0) {
		return nil, 0, fmt.Errorf("non-resident type %#x: sizes data %d initialized %d allocated %d", h.Type, nr.DataSize, nr.InitializedSize, nr.AllocatedSize)
	}
	a.lowVCN, a.highVCN, a.cuShift = nr.LowestVCN, nr.HighestVCN, nr.CompressionUnit
	a.alloc, a.size, a.init, a.comp = nr.AllocatedSize, nr.DataSize, nr.InitializedSize, nr.CompressedSize
	runs, err := ntfs.DecodeRuns(b[mp:], nr.LowestVCN, nr.HighestVCN, clusters)
	if err != nil {
		return nil, 0, fmt.Errorf("non-resident type %#x: %v", h.Type, err)
	}
	a.runs = runs
	return a, l, nil
}

// encode returns the attribute's bytes. An attribute changed since it
// was read keeps its header layout (name and mapping pairs offsets).
func (a *rattr) encode() ([]byte, error) {
	if a.raw != nil {
		return a.raw, nil
	}
	name := utf16Bytes(a.name)
	var b []byte
	if a.resident {
		vo := align8(ntfs.AttrHeaderSize + ntfs.ResidentHeaderSize + len(name))
		b = make([]byte, align8(vo+len(a.value)))
		b[8] = 0
		le.PutUint16(b[10:], uint16(ntfs.AttrHeaderSize+ntfs.ResidentHeaderSize))
		le.PutUint32(b[16:], uint32(len(a.value)))
		le.PutUint16(b[20:], uint16(vo))
		b[22] = a.rflags
		copy(b[ntfs.AttrHeaderSize+ntfs.ResidentHeaderSize:], name)
		copy(b[vo:], a.value)
	} else {
		pairs, err := encodeRuns(a.runs, a.lowVCN)
		if err != nil {
			return nil, err
		}
		no := ntfs.AttrHeaderSize + ntfs.NonResidentHeaderSize - 8
		if a.wideHeader {
			no += 8
		}
		mp := align8(no + len(name))
		b = make([]byte, align8(mp+len(pairs)))
		b[8] = 1
		le.PutUint16(b[10:], uint16(no))
		le.PutUint64(b[16:], uint64(a.lowVCN))
		le.PutUint64(b[24:], uint64(a.highVCN))
		le.PutUint16(b[32:], uint16(mp))
		b[34] = a.cuShift
		le.PutUint64(b[40:], uint64(a.alloc))
		le.PutUint64(b[48:], uint64(a.size))
		le.PutUint64(b[56:], uint64(a.init))
		if a.wideHeader {
			le.PutUint64(b[64:], uint64(a.comp))
		}
		copy(b[no:], name)
		copy(b[mp:], pairs)
	}
	le.PutUint32(b[0:], a.typ)
	le.PutUint32(b[4:], uint32(len(b)))
	b[9] = byte(len(a.name))
	le.PutUint16(b[12:], a.flags)
	le.PutUint16(b[14:], a.instance)
	if len(b) > 1<<16 {
		return nil, fmt.Errorf("attribute %#x of %d bytes", a.typ, len(b))
	}
	return b, nil
}

// changed marks the attribute as to be encoded from its fields, and its
// record as to be written.
func (a *rattr) changed() {
	a.raw = nil
	if a.home != nil {
		a.home.dirty = true
	}
}

// isNamed says whether the attribute has the given name.
func (a *rattr) isNamed(name []uint16) bool {
	if len(a.name) != len(name) {
		return false
	}
	for i := range name {
		if a.name[i] != name[i] {
			return false
		}
	}
	return true
}

var nameI30 = utf16Units("$I30")

// view is every attribute of the file: the list's when it has one.
func (r *mrec) view() []*rattr {
	if r.all != nil {
		return r.all
	}
	return r.attrs
}

// find returns the first attribute of a type and name.
func (r *mrec) find(typ uint32, name []uint16) *rattr {
	for _, a := range r.view() {
		if a.typ == typ && a.isNamed(name) {
			return a
		}
	}
	return nil
}

// findAll returns every attribute of a type.
func (r *mrec) findAll(typ uint32) []*rattr {
	var out []*rattr
	for _, a := range r.view() {
		if a.typ == typ {
			out = append(out, a)
		}
	}
	return out
}
