package lvm

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"sort"
	"strings"

	"github.com/vmmount/vmmount/fsread/fsys"
)

// maxLVDepth bounds LVs stacked on LVs (a raid1 LV on its images is depth
// 1); it stops reference loops in hostile metadata.
const maxLVDepth = 4

// ErrMissingPV means an LV uses a PV that is not among the devices given.
var ErrMissingPV = errors.New("physical volume missing")

// Reader reads an LV: an io.ReaderAt that maps logical extents to the
// physical extents of its PVs. It is safe for concurrent use when the PV
// devices are.
type Reader struct {
	name string
	size int64
	segs []mapped // sorted by start, tiling [0, size)
}

// mapped is one segment: bytes [start, end) of the LV spread over areas
// in chunks of stripe bytes (stripe 0: one area, no striping); zero
// segments have no areas.
type mapped struct {
	start, end int64
	stripe     int64
	areas      []target
}

type target struct {
	r   io.ReaderAt
	off int64 // byte offset of the segment's first extent in r
}

// Size is the LV size in bytes.
func (r *Reader) Size() int64 { return r.size }

// Open returns a reader of the LV's content, or an error naming why it
// cannot be read: a segment type vmmount does not read (wrapping
// fsys.ErrUnsupported), a missing PV (ErrMissingPV), or extents that do not
// fit their PV (fsys.ErrCorrupt).
func (lv *LV) Open() (*Reader, error) {
	return (&opener{opened: map[*LV]openResult{}, active: map[*LV]bool{}}).open(lv, 0)
}

// opener opens an LV and its sub-LVs once each: hostile metadata with many
// legs referring to many legs must not cost exponential work, and a sub-LV
// that refers back to an LV being opened is a loop.
type opener struct {
	opened map[*LV]openResult
	active map[*LV]bool
}

type openResult struct {
	r   *Reader
	err error
}

func (o *opener) open(lv *LV, depth int) (*Reader, error) {
	name := lv.VG.Name + "/" + lv.Name
	if res, ok := o.opened[lv]; ok {
		return res.r, res.err
	}
	if o.active[lv] {
		return nil, corrupt("LVM "+name, -1, "LV is its own sub-LV (a loop)")
	}
	if depth > maxLVDepth {
		return nil, corrupt("LVM "+name, -1, "sub-LVs nested deeper than %d", maxLVDepth)
	}
	o.active[lv] = true
	r, err := lv.openWith(o, depth)
	delete(o.active, lv)
	o.opened[lv] = openResult{r, err}
	return r, err
}

func (lv *LV) openWith(o *opener, depth int) (*Reader, error) {
	name := lv.VG.Name + "/" + lv.Name
	if lv.err != nil {
		return nil, corrupt("LVM "+name, -1, "%v", lv.err)
	}
	if lv.snapshotOf != "" {
		return nil, fmt.Errorf("LV %s is a snapshot of %s (copy-on-write store): %w", name, lv.snapshotOf, fsys.ErrUnsupported)
	}
	es := lv.VG.ExtentSize
	rd := &Reader{name: name, size: lv.Size()}
	for _, sg := range lv.Segments {
		m := mapped{start: int64(sg.Start) * es, end: int64(sg.Start+sg.Count) * es}
		switch sg.Type {
		case "striped":
			n := uint64(len(sg.Areas))
			if sg.Count%n != 0 {
				return nil, corrupt("LVM "+name, -1, "%d extents do not divide into %d stripes", sg.Count, n)
			}
			if n > 1 {
				if sg.StripeSize <= 0 || es%sg.StripeSize != 0 {
					return nil, corrupt("LVM "+name, -1, "stripe size %d does not divide the extent size %d", sg.StripeSize, es)
				}
				m.stripe = sg.StripeSize
			}
			for _, a := range sg.Areas {
				t, err := pvTarget(name, a, sg.Count/n, es)
				if err != nil {
					return nil, err
				}
				m.areas = append(m.areas, t)
			}
		case "zero":
			// Reads as zeros (dm-zero).
		case "raid1", "mirror":
			t, err := lv.pickLeg(o, sg, depth)
			if err != nil {
				return nil, err
			}
			m.areas = []target{t}
		case "raid0", "raid0_meta":
			n := uint64(len(sg.Areas))
			if sg.Count%n != 0 {
				return nil, corrupt("LVM "+name, -1, "%d extents do not divide into %d raid0 images", sg.Count, n)
			}
			if n > 1 {
				if sg.StripeSize <= 0 || es%sg.StripeSize != 0 {
					return nil, corrupt("LVM "+name, -1, "stripe size %d does not divide the extent size %d", sg.StripeSize, es)
				}
				m.stripe = sg.StripeSize
			}
			for _, a := range sg.Areas {
				t, err := lv.subTarget(o, a, sg.Count/n, sg.DataOffset, depth)
				if err != nil {
					return nil, err
				}
				m.areas = append(m.areas, t)
			}
		default:
			return nil, fmt.Errorf("LV %s: %s: %w", name, describeType(sg), fsys.ErrUnsupported)
		}
		rd.segs = append(rd.segs, m)
	}
	return rd, nil
}

func describeType(sg *Segment) string {
	switch sg.Type {
	case "thin":
		return fmt.Sprintf("thin volume (in pool %s) is not readable", sg.Pool)
	case "thin-pool":
		return "thin pool is not readable (its thin volumes are refused too)"
	case "snapshot":
		return fmt.Sprintf("snapshot of %s is not readable", sg.Origin)
	case "cache", "writecache":
		return fmt.Sprintf("%s LV (pool %s) is not readable: its newest data may be in the cache", sg.Type, sg.Pool)
	}
	return fmt.Sprintf("segment type %q is not readable", sg.Type)
}

// pvTarget places count extents from PE a.Start of a PV, checking they lie
// inside both the PV's PE range and the device.
func pvTarget(lvName string, a Area, count uint64, es int64) (target, error) {
	slot := a.PV
	if slot.PV == nil {
		what := "not found on any disk given"
		if slot.Missing {
			what = "marked missing in the metadata"
		}
		return target{}, fmt.Errorf("LV %s: PV %s (%s, last seen as %s) %s: %w", lvName, slot.Name, slot.UUID, slot.Device, what, ErrMissingPV)
	}
	if a.Start > slot.PECount || count > slot.PECount-a.Start {
		return target{}, corrupt("LVM "+lvName, -1, "extents %d-%d of %s lie past its %d extents", a.Start, a.Start+count-1, slot.Name, slot.PECount)
	}
	hi, lo := bits.Mul64(a.Start+count, uint64(es))
	end := lo + uint64(slot.PEStart)
	if hi != 0 || end < lo || end > uint64(slot.PV.size) {
		return target{}, corrupt("LVM "+lvName, -1, "extents %d-%d of %s lie past the end of %s (%d bytes)", a.Start, a.Start+count-1, slot.Name, slot.PV.Device, slot.PV.size)
	}
	return target{r: slot.PV.r, off: slot.PEStart + int64(a.Start)*es}, nil
}

// subTarget places count extents from LE a.Start of a sub-LV.
func (lv *LV) subTarget(o *opener, a Area, count uint64, dataOffset int64, depth int) (target, error) {
	sub := lv.VG.LV(a.LV)
	if sub == nil {
		return target{}, corrupt("LVM "+lv.VG.Name+"/"+lv.Name, -1, "sub-LV %s does not exist", a.LV)
	}
	r, err := o.open(sub, depth+1)
	if err != nil {
		return target{}, err
	}
	es := lv.VG.ExtentSize
	if a.Start > sub.Extents || count > sub.Extents-a.Start || dataOffset > r.size-int64(a.Start+count)*es {
		return target{}, corrupt("LVM "+lv.VG.Name+"/"+lv.Name, -1, "extents %d-%d lie past the end of sub-LV %s", a.Start, a.Start+count-1, a.LV)
	}
	return target{r: r, off: int64(a.Start)*es + dataOffset}, nil
}

// pickLeg chooses the first healthy leg of a raid1 or mirror segment: one
// whose sub-LV opens (its PVs are all there) and that is not marked for
// rebuild. dm-raid and dm-mirror read from any in-sync leg, so any healthy
// one gives what the guest reads.
func (lv *LV) pickLeg(o *opener, sg *Segment, depth int) (target, error) {
	var errs []error
	for _, a := range sg.Areas {
		if sub := lv.VG.LV(a.LV); sub != nil && slices.Contains(sub.Status, "REBUILD") {
			errs = append(errs, fmt.Errorf("%s is being rebuilt", a.LV))
			continue
		}
		t, err := lv.subTarget(o, a, sg.Count, sg.DataOffset, depth)
		if err == nil {
			return t, nil
		}
		errs = append(errs, err)
	}
	return target{}, &legsError{lv: lv.VG.Name + "/" + lv.Name, typ: sg.Type, errs: errs}
}

// legsError says why no leg of a raid1 or mirror LV can be read; errors.Is
// finds ErrMissingPV or fsys.ErrCorrupt in the legs' errors.
type legsError struct {
	lv, typ string
	errs    []error
}

func (e *legsError) Error() string {
	var parts []string
	for _, err := range e.errs {
		parts = append(parts, err.Error())
	}
	return fmt.Sprintf("LV %s: no healthy %s leg (%s)", e.lv, e.typ, strings.Join(parts, "; "))
}

func (e *legsError) Unwrap() []error { return e.errs }

// ReadAt reads the LV with exact io.ReaderAt semantics.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("LV %s: negative offset", r.name)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > r.size-off {
		p = p[:r.size-off]
	}
	n := 0
	i := sort.Search(len(r.segs), func(i int) bool { return r.segs[i].end > off })
	for n < len(p) && i < len(r.segs) {
		m := &r.segs[i]
		o := off + int64(n) - m.start // offset in the segment
		chunk := min(int64(len(p)-n), m.end-m.start-o)
		var err error
		var k int
		switch {
		case len(m.areas) == 0:
			clear(p[n : n+int(chunk)])
			k = int(chunk)
		case m.stripe == 0:
			k, err = m.areas[0].r.ReadAt(p[n:n+int(chunk)], m.areas[0].off+o)
		default:
			c := o / m.stripe
			nAreas := int64(len(m.areas))
			t := m.areas[c%nAreas]
			in := o % m.stripe
			chunk = min(chunk, m.stripe-in)
			k, err = t.r.ReadAt(p[n:n+int(chunk)], t.off+(c/nAreas)*m.stripe+in)
		}
		n += k
		if k < int(chunk) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, fmt.Errorf("LV %s: at byte %d: %w", r.name, off+int64(n), err)
		}
		if o+chunk >= m.end-m.start {
			i++
		}
	}
	if n < want {
		return n, io.EOF
	}
	return n, nil
}
