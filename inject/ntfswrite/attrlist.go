package ntfswrite

import (
	"errors"
	"fmt"

	"github.com/vmmount/vmmount/fsread/ntfs"
)

// maxAttrList bounds $ATTRIBUTE_LIST, as ntfs-3g does (inode.c: 0x40000).
const maxAttrList = 0x40000

// expandList reads the attribute list of base record r and the
// extension records it names (ntfs-3g layout.h ATTR_LIST_ENTRY): r.all
// becomes every attribute of the file in list order. The writer changes
// such files only in place: an attribute keeps its record, and no
// attribute is added, so the list never changes.
func (f *FS) expandList(r *mrec, list *rattr) error {
	n := list.valueSize()
	if n > maxAttrList || n < 0 {
		return f.corrupt("MFT record %d: attribute list of %d bytes", r.num, n)
	}
	data := make([]byte, n)
	if err := f.valueRead(list, 0, data); err != nil {
		return fmt.Errorf("MFT record %d: attribute list: %w", r.num, err)
	}
	r.list = list
	r.all = nil
	seen := map[*rattr]bool{}
	type key struct {
		typ  uint32
		name string
	}
	extents := map[key]int{}
	for pos := 0; pos+ntfs.AttrListEntrySize <= len(data); {
		var e ntfs.AttrListEntry
		decodeStruct(data[pos:], &e)
		if e.Length < ntfs.AttrListEntrySize || e.Length%8 != 0 || pos+int(e.Length) > len(data) {
			return f.corrupt("MFT record %d: attribute list entry at %d has length %d", r.num, pos, e.Length)
		}
		var name []uint16
		if e.NameLength > 0 {
			no, nl := pos+int(e.NameOffset), 2*int(e.NameLength)
			if int(e.NameOffset) < ntfs.AttrListEntrySize || no+nl > pos+int(e.Length) {
				return f.corrupt("MFT record %d: attribute list entry at %d: name past its end", r.num, pos)
			}
			name = unitsOf(data[no : no+nl])
		}
		pos += int(e.Length)
		num, seq := splitRef(e.MFTReference)
		home := r
		if num != r.num {
			x, err := f.extRecord(num, seq, r)
			if err != nil {
				return err
			}
			home = x
		}
		var found *rattr
		for _, a := range home.attrs {
			if a.typ == e.Type && a.instance == e.Instance && a.isNamed(name) {
				found = a
				break
			}
		}
		if found == nil || seen[found] {
			return f.corrupt("MFT record %d: attribute %#x instance %d missing from record %d", r.num, e.Type, e.Instance, num)
		}
		if !found.resident && found.lowVCN != e.LowestVCN {
			return f.corrupt("MFT record %d: attribute %#x in record %d starts at VCN %d, the list says %d", r.num, e.Type, num, found.lowVCN, e.LowestVCN)
		}
		seen[found] = true
		k := key{e.Type, string(utf16Bytes(name))}
		if extents[k]++; extents[k] > 1 {
			r.multi = true
		}
		r.all = append(r.all, found)
	}
	for _, a := range r.attrs {
		if !seen[a] && a != list {
			return f.corrupt("MFT record %d: attribute %#x is not in its attribute list", r.num, a.typ)
		}
	}
	return nil
}

// extRecord reads extension record num of base record base.
func (f *FS) extRecord(num uint64, seq uint16, base *mrec) (*mrec, error) {
	if x, ok := f.recs[num]; ok {
		if x.base != base.num {
			return nil, f.corrupt("MFT record %d: its attribute list names record %d, which is not its extension", base.num, num)
		}
		return x, nil
	}
	b, err := f.recordBytes(num)
	if err != nil {
		return nil, err
	}
	x, err := parseRecord(b, num, f.clusters)
	if errors.Is(err, errRecordFree) {
		return nil, f.corrupt("MFT record %d: extension record %d is not in use", base.num, num)
	}
	if err != nil {
		return nil, f.corrupt("MFT record %d: %v", num, err)
	}
	if x.base != base.num || x.seq != seq {
		return nil, f.corrupt("MFT record %d: extension record %d belongs to record %d", base.num, num, x.base)
	}
	f.recs[num] = x
	return x, nil
}
