package lvm

import (
	"fmt"
	"slices"
	"strings"
)

// Metadata is one copy of a VG's text metadata.
type Metadata struct {
	VGName string
	VGID   string // displayed form
	Seqno  uint64
	// Source says where the copy was read ("vda/p2 (metadata area 1)").
	Source string
	vg     *Section
}

// ParseMetadata parses LVM2 text metadata ("contents = \"Text Format Volume
// Group\""): exactly one top-level section, the VG.
func ParseMetadata(text []byte) (*Metadata, error) {
	root, err := ParseConfig(text)
	if err != nil {
		return nil, err
	}
	var vg *Section
	for _, s := range root.Sections() {
		if vg != nil {
			return nil, fmt.Errorf("more than one volume group section (%q, %q)", vg.Name, s.Name)
		}
		vg = s
	}
	if vg == nil {
		return nil, fmt.Errorf("no volume group section")
	}
	if err := checkName(vg.Name); err != nil {
		return nil, fmt.Errorf("volume group name: %v", err)
	}
	id, ok := vg.Str("id")
	if !ok {
		return nil, fmt.Errorf("volume group %s has no id", vg.Name)
	}
	seq, ok := vg.Uint("seqno")
	if !ok {
		return nil, fmt.Errorf("volume group %s has no seqno", vg.Name)
	}
	return &Metadata{VGName: vg.Name, VGID: id, Seqno: seq, vg: vg}, nil
}

// checkName accepts the names LVM allows for VGs and LVs
// (lib/misc/lvm-string.c validate_name): letters, digits and "+_.-", not
// starting with "-", not "." or "..", at most 127 bytes. Anything else in
// metadata is hostile: names become path components.
func checkName(n string) error {
	if n == "" || len(n) > 127 || n == "." || n == ".." || n[0] == '-' {
		return fmt.Errorf("invalid name %q", n)
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("+_.-", c) >= 0) {
			return fmt.Errorf("invalid character in name %q", n)
		}
	}
	return nil
}

// VG is a volume group as its newest metadata describes it.
type VG struct {
	Name       string
	ID         string
	Seqno      uint64
	ExtentSize int64 // bytes
	PVs        []*PVSlot
	// LVs are all logical volumes, hidden sub-LVs (raid images, mirror
	// legs, thin pool data) included; Visible tells which users see.
	LVs []*LV
	// Warnings are stale or diverging metadata copies, missing PVs.
	Warnings []string
	// Metadata is the copy the VG was built from.
	Metadata *Metadata
}

// PVSlot is a PV as the VG metadata lists it, bound to the PV found on a
// device with the same UUID, if any.
type PVSlot struct {
	Name    string // "pv0"
	UUID    string
	Device  string // the device path LVM last saw it as ("/dev/vda2"), a hint
	PEStart int64  // bytes from the start of the PV
	PECount uint64
	// PV is nil when no device given carries this UUID.
	PV *PV
	// Missing is set when the metadata itself marks the PV missing.
	Missing bool
}

// LV is a logical volume.
type LV struct {
	VG       *VG
	Name     string
	UUID     string
	Status   []string
	Flags    []string
	Visible  bool
	Extents  uint64 // number of logical extents
	Segments []*Segment
	// role is set for LVs that are parts of others or snapshots.
	snapshotOf string // origin, when this LV is a snapshot's COW store
	err        error  // decoding error
}

// Segment maps a range of logical extents.
type Segment struct {
	Start, Count uint64 // logical extents
	Type         string // "striped", "raid1", "mirror", "thin", ...
	// StripeSize in bytes (striped and raid0 with more than one area).
	StripeSize int64
	Areas      []Area
	// DataOffset is where data starts on raid images, bytes.
	DataOffset int64
	// Origin and CowStore name the LVs of a snapshot segment; Pool the
	// pool of a thin volume or cache.
	Origin, CowStore, Pool string
}

// Area is where one stripe or leg of a segment lives: extents of a PV or of
// another (hidden) LV.
type Area struct {
	PV    *PVSlot // set for PV areas
	LV    string  // set for LV areas
	Start uint64  // first PE (PV areas) or LE (LV areas)
}

// Size is the LV size in bytes.
func (lv *LV) Size() int64 { return int64(lv.Extents) * lv.VG.ExtentSize }

// MapperName is the LV's device-mapper name, "<vg>-<lv>" with "-" doubled
// inside each name (libdm dm_build_dm_name).
func (lv *LV) MapperName() string {
	return strings.ReplaceAll(lv.VG.Name, "-", "--") + "-" + strings.ReplaceAll(lv.Name, "-", "--")
}

// Type is the segment type of the LV ("linear" for one one-stripe segment,
// else the first segment's type).
func (lv *LV) Type() string {
	if len(lv.Segments) == 0 {
		return ""
	}
	s := lv.Segments[0]
	if s.Type == "striped" && len(s.Areas) == 1 {
		return "linear"
	}
	return s.Type
}

// Bounds on what the metadata may declare. LVM itself keeps extent counts
// in uint32.
const (
	maxExtentSize = 1 << 40 // bytes; LVM allows up to 16 GiB
	maxAreas      = 1 << 10 // stripes or legs in one segment
)

// decodeVG builds the VG a metadata copy describes. Errors in one LV are
// kept on that LV; errors in the VG itself fail the VG.
func decodeVG(md *Metadata) (*VG, error) {
	s := md.vg
	vg := &VG{Name: md.VGName, ID: md.VGID, Seqno: md.Seqno, Metadata: md}
	es, ok := s.Uint("extent_size")
	if !ok || es == 0 || es*sectorSize > maxExtentSize {
		return nil, fmt.Errorf("VG %s: bad extent_size", vg.Name)
	}
	vg.ExtentSize = int64(es) * sectorSize
	pvs := s.Sub("physical_volumes")
	if pvs == nil {
		return nil, fmt.Errorf("VG %s: no physical_volumes section", vg.Name)
	}
	byName := map[string]*PVSlot{}
	for _, p := range pvs.Sections() {
		id, _ := p.Str("id")
		dev, _ := p.Str("device")
		start, ok1 := p.Uint("pe_start")
		count, ok2 := p.Uint("pe_count")
		if !ok1 || !ok2 || id == "" {
			return nil, fmt.Errorf("VG %s: PV %s lacks id, pe_start or pe_count", vg.Name, p.Name)
		}
		if count > 1<<32 || start > 1<<50 {
			return nil, fmt.Errorf("VG %s: PV %s: pe_start %d or pe_count %d out of range", vg.Name, p.Name, start, count)
		}
		if byName[p.Name] != nil {
			return nil, fmt.Errorf("VG %s: PV %s listed twice", vg.Name, p.Name)
		}
		slot := &PVSlot{Name: p.Name, UUID: formatUUID(plainUUID(id)), Device: dev,
			PEStart: int64(start) * sectorSize, PECount: count,
			Missing: slices.Contains(p.Strings("flags"), "MISSING") || slices.Contains(p.Strings("status"), "MISSING")}
		byName[p.Name] = slot
		vg.PVs = append(vg.PVs, slot)
	}
	if lvs := s.Sub("logical_volumes"); lvs != nil {
		seen := map[string]bool{}
		for _, l := range lvs.Sections() {
			if seen[l.Name] {
				return nil, fmt.Errorf("VG %s: LV %s listed twice", vg.Name, l.Name)
			}
			seen[l.Name] = true
			vg.LVs = append(vg.LVs, decodeLV(vg, l, byName))
		}
	}
	// A snapshot's COW store is an ordinary-looking LV; the hidden
	// "snapshotN" LV with a snapshot segment says what it is.
	for _, lv := range vg.LVs {
		for _, sg := range lv.Segments {
			if sg.Type == "snapshot" {
				if cow := vg.LV(sg.CowStore); cow != nil {
					cow.snapshotOf = sg.Origin
				}
			}
		}
	}
	return vg, nil
}

// LV finds an LV by name.
func (vg *VG) LV(name string) *LV {
	for _, lv := range vg.LVs {
		if lv.Name == name {
			return lv
		}
	}
	return nil
}

func decodeLV(vg *VG, l *Section, pvs map[string]*PVSlot) *LV {
	lv := &LV{VG: vg, Name: l.Name, Status: l.Strings("status"), Flags: l.Strings("flags")}
	lv.UUID, _ = l.Str("id")
	lv.Visible = slices.Contains(lv.Status, "VISIBLE")
	fail := func(format string, args ...any) *LV {
		lv.err = fmt.Errorf(format, args...)
		lv.Segments = nil
		return lv
	}
	if err := checkName(lv.Name); err != nil {
		return fail("%v", err)
	}
	for _, sn := range l.Sections() {
		if len(lv.Segments) >= maxAreas*64 {
			return fail("too many segments")
		}
		sg, err := decodeSegment(sn, pvs)
		if err != nil {
			return fail("%s: %v", sn.Name, err)
		}
		lv.Segments = append(lv.Segments, sg)
	}
	slices.SortFunc(lv.Segments, func(a, b *Segment) int {
		switch {
		case a.Start < b.Start:
			return -1
		case a.Start > b.Start:
			return 1
		}
		return 0
	})
	// Segments must tile [0, extents) (import_vsn1.c checks the same).
	var next uint64
	for _, sg := range lv.Segments {
		if sg.Start != next {
			if sg.Start < next {
				return fail("segments overlap at extent %d", sg.Start)
			}
			return fail("gap in segments before extent %d", sg.Start)
		}
		next = sg.Start + sg.Count
	}
	lv.Extents = next
	if vg.ExtentSize > 0 && lv.Extents > uint64(1<<62/vg.ExtentSize) {
		return fail("size of %d extents overflows", lv.Extents)
	}
	return lv
}

func decodeSegment(s *Section, pvs map[string]*PVSlot) (*Segment, error) {
	start, ok1 := s.Uint("start_extent")
	count, ok2 := s.Uint("extent_count")
	typ, ok3 := s.Str("type")
	if !ok1 || !ok2 || !ok3 {
		return nil, fmt.Errorf("missing start_extent, extent_count or type")
	}
	if count == 0 || start > 1<<40 || count > 1<<40 {
		return nil, fmt.Errorf("extents %d+%d out of range", start, count)
	}
	sg := &Segment{Start: start, Count: count, Type: typ}
	sg.Origin, _ = s.Str("origin")
	sg.CowStore, _ = s.Str("cow_store")
	if p, ok := s.Str("thin_pool"); ok {
		sg.Pool = p
	} else if p, ok := s.Str("cache_pool"); ok {
		sg.Pool = p
	}
	if ss, ok := s.Uint("stripe_size"); ok {
		if ss > 1<<30 {
			return nil, fmt.Errorf("stripe_size %d out of range", ss)
		}
		sg.StripeSize = int64(ss) * sectorSize
	}
	if do, ok := s.Uint("data_offset"); ok {
		if do > 1<<40 {
			return nil, fmt.Errorf("data_offset %d out of range", do)
		}
		sg.DataOffset = int64(do) * sectorSize
	}
	var err error
	switch typ {
	case "striped":
		sg.Areas, err = pvAreas(s, "stripes", pvs)
	case "mirror":
		sg.Areas, err = lvAreas(s.Get("mirrors"), true)
	case "raid1":
		sg.Areas, err = raidAreas(s, "raids")
	case "raid0", "raid0_meta":
		key := "raids"
		if s.Get("raid0_lvs") != nil {
			key = "raid0_lvs"
		}
		sg.Areas, err = raidAreas(s, key)
	}
	if err != nil {
		return nil, err
	}
	return sg, nil
}

// pvAreas decodes ["pv0", 0, "pv1", 0]: PV names and their first PE.
func pvAreas(s *Section, key string, pvs map[string]*PVSlot) ([]Area, error) {
	v := s.Get(key)
	if v == nil || v.Kind != KindArray || len(v.Arr) == 0 || len(v.Arr)%2 != 0 || len(v.Arr)/2 > maxAreas {
		return nil, fmt.Errorf("bad %s list", key)
	}
	var out []Area
	for i := 0; i < len(v.Arr); i += 2 {
		name, pe := v.Arr[i], v.Arr[i+1]
		if name.Kind != KindString || pe.Kind != KindInt || pe.Int < 0 {
			return nil, fmt.Errorf("bad %s entry %d", key, i/2)
		}
		slot := pvs[name.Str]
		if slot == nil {
			return nil, fmt.Errorf("%s names unknown PV %q", key, name.Str)
		}
		out = append(out, Area{PV: slot, Start: uint64(pe.Int)})
	}
	if n, ok := s.Uint("stripe_count"); ok && n != uint64(len(out)) {
		return nil, fmt.Errorf("stripe_count %d but %d stripes listed", n, len(out))
	}
	return out, nil
}

// lvAreas decodes ["lv_mimage_0", 0, ...] (with extents) or, for raid,
// ["lv_rimage_0", ...].
func lvAreas(v *Value, withLE bool) ([]Area, error) {
	if v == nil || v.Kind != KindArray || len(v.Arr) == 0 {
		return nil, fmt.Errorf("missing list of sub-LVs")
	}
	step := 1
	if withLE {
		step = 2
	}
	if len(v.Arr)%step != 0 || len(v.Arr)/step > maxAreas {
		return nil, fmt.Errorf("bad list of sub-LVs")
	}
	var out []Area
	for i := 0; i < len(v.Arr); i += step {
		if v.Arr[i].Kind != KindString {
			return nil, fmt.Errorf("bad sub-LV entry %d", i/step)
		}
		a := Area{LV: v.Arr[i].Str}
		if withLE {
			le := v.Arr[i+1]
			if le.Kind != KindInt || le.Int < 0 {
				return nil, fmt.Errorf("bad extent of sub-LV %s", a.LV)
			}
			a.Start = uint64(le.Int)
		}
		out = append(out, a)
	}
	return out, nil
}

// raidAreas decodes raids = ["lv_rmeta_0", "lv_rimage_0", ...]: metadata and
// image pairs, or images alone (export.c out_areas). The images are the data.
func raidAreas(s *Section, key string) ([]Area, error) {
	all, err := lvAreas(s.Get(key), false)
	if err != nil {
		return nil, err
	}
	n, ok := s.Uint("device_count")
	if !ok {
		n, ok = s.Uint("stripe_count")
	}
	if !ok || n == 0 {
		return nil, fmt.Errorf("missing device_count")
	}
	switch uint64(len(all)) {
	case n:
		return all, nil
	case 2 * n:
		var imgs []Area
		for i := 1; i < len(all); i += 2 {
			imgs = append(imgs, all[i])
		}
		return imgs, nil
	}
	return nil, fmt.Errorf("device_count %d but %d sub-LVs listed", n, len(all))
}
