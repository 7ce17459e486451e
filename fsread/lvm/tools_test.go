package lvm

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

// openFixturePVs reads the PVs of the named fixture images.
func openFixturePVs(t *testing.T, dir string, names ...string) []*PV {
	t.Helper()
	var pvs []*PV
	for _, n := range names {
		f, err := vdisk.OpenOSFile(filepath.Join(dir, n+".img"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		pv, err := ReadPV(f, f.Size(), n)
		if err != nil {
			t.Fatalf("ReadPV %s: %v", n, err)
		}
		if len(pv.Warnings) != 0 {
			t.Errorf("PV %s: %q", n, pv.Warnings)
		}
		pvs = append(pvs, pv)
	}
	return pvs
}

// oracleContent computes an LV's bytes from LVM's own report of its
// segments, reading the PV images directly: linear and striped segments from
// their PE ranges, raid1 from the image named first.
func oracleContent(t *testing.T, dir string, rep *lvsReport, name string, extent int64, pes map[string]int64) []byte {
	t.Helper()
	var out []byte
	for _, s := range rep.Report[0].Seg {
		if strings.Trim(s.LV, "[]") != name {
			continue
		}
		ranges := strings.Fields(s.Ranges)
		type area struct {
			dev   string
			first int64
		}
		var areas []area
		for _, r := range ranges {
			dev, span, _ := strings.Cut(r, ":")
			lo, _, _ := strings.Cut(span, "-")
			first, _ := strconv.ParseInt(lo, 10, 64)
			areas = append(areas, area{dev, first})
		}
		size := s.Size * extent
		switch s.Type {
		case "raid1":
			sub := oracleContent(t, dir, rep, areas[0].dev, extent, pes)
			out = append(out, sub[areas[0].first*extent:areas[0].first*extent+size]...)
		case "linear", "striped":
			per := size / int64(len(areas))
			var data [][]byte
			for _, a := range areas {
				b, err := os.ReadFile(filepath.Join(dir, a.dev+".img"))
				if err != nil {
					t.Fatal(err)
				}
				off := pes[a.dev] + a.first*extent
				data = append(data, b[off:off+per])
			}
			if len(areas) == 1 {
				out = append(out, data[0]...)
				continue
			}
			ss := s.StripeSz
			for c := int64(0); c*ss < size; c++ {
				d := data[c%int64(len(areas))]
				o := (c / int64(len(areas))) * ss
				out = append(out, d[o:o+ss]...)
			}
		default:
			t.Fatalf("oracle: segment type %s", s.Type)
		}
	}
	return out
}

// ranges formats our view of a segment like lvs' seg_pe_ranges.
func ranges(vg *VG, sg *Segment) string {
	var parts []string
	per := sg.Count / uint64(len(sg.Areas))
	for _, a := range sg.Areas {
		if a.PV != nil {
			parts = append(parts, fmt.Sprintf("%s:%d-%d", a.PV.PV.Device, a.Start, a.Start+per-1))
		} else {
			parts = append(parts, fmt.Sprintf("%s:%d-%d", a.LV, a.Start, a.Start+sg.Count-1))
		}
	}
	return strings.Join(parts, " ")
}

func TestAgainstLVMTools(t *testing.T) {
	dir := lvmFixture(t)
	var vgs vgsReport
	var pvsRep pvsReport
	var lvs lvsReport
	readReport(t, dir, "vgs.json", &vgs)
	readReport(t, dir, "pvs.json", &pvsRep)
	readReport(t, dir, "lvs.json", &lvs)

	pvs := openFixturePVs(t, dir, fixturePVs...)
	as := Assemble(pvs)
	if len(as.VGs) != 1 || len(as.Errors) != 0 || len(as.Orphans) != 0 {
		t.Fatalf("assembly: %d VGs, errors %v, %d orphans", len(as.VGs), as.Errors, len(as.Orphans))
	}
	vg := as.VGs[0]
	ov := vgs.Report[0].VG[0]
	if vg.Name != ov.Name || vg.ID != ov.UUID || vg.Seqno != ov.Seqno || vg.ExtentSize != ov.ExtentSize {
		t.Errorf("VG %s %s seqno %d extent %d; lvm says %+v", vg.Name, vg.ID, vg.Seqno, vg.ExtentSize, ov)
	}
	if len(vg.Warnings) != 0 {
		t.Errorf("VG warnings: %q", vg.Warnings)
	}
	pes := map[string]int64{}
	for _, op := range pvsRep.Report[0].PV {
		pes[op.Name] = op.PEStart
		var slot *PVSlot
		for _, s := range vg.PVs {
			if s.PV != nil && s.PV.Device == op.Name {
				slot = s
			}
		}
		if slot == nil || slot.UUID != op.UUID || slot.PEStart != op.PEStart || slot.PECount != op.PECount {
			t.Errorf("PV %s: ours %+v, lvm %+v", op.Name, slot, op)
		}
	}
	for _, pv := range pvs {
		if pv.Metadata == nil || pv.Metadata.Seqno != ov.Seqno {
			t.Errorf("PV %s: newest metadata %+v, want seqno %d", pv.Device, pv.Metadata, ov.Seqno)
		}
	}
	if len(pvs[2].MetadataAreas) != 2 {
		t.Errorf("d3 has %d metadata areas, want 2", len(pvs[2].MetadataAreas))
	}

	// Segments, as lvs reports them.
	type seg struct {
		LV, Type    string
		Start, Size int64
		Ranges      string
		Stripes     int
		StripeSize  int64
	}
	var want, got []seg
	for _, s := range lvs.Report[0].Seg {
		want = append(want, seg{strings.Trim(s.LV, "[]"), s.Type, s.Start, s.Size, s.Ranges, s.Stripes, s.StripeSz})
	}
	for _, o := range want {
		lv := vg.LV(o.LV)
		if lv == nil {
			t.Errorf("LV %s missing", o.LV)
			continue
		}
		if lv.Visible != !strings.HasPrefix(o.LV, "r1_") {
			t.Errorf("LV %s visible = %v", o.LV, lv.Visible)
		}
		for _, sg := range lv.Segments {
			if int64(sg.Start) != o.Start {
				continue
			}
			typ := sg.Type
			if typ == "striped" && len(sg.Areas) == 1 {
				typ = "linear"
			}
			got = append(got, seg{lv.Name, typ, int64(sg.Start), int64(sg.Count), ranges(vg, sg), len(sg.Areas), sg.StripeSize})
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("segments (-lvs +ours):\n%s", d)
	}

	// Content: every visible LV reads the extents lvm says it has.
	content := map[string][]byte{}
	for _, lv := range vg.LVs {
		if !lv.Visible {
			continue
		}
		b, err := readAll(t, lv)
		if err != nil {
			t.Errorf("LV %s: %v", lv.Name, err)
			continue
		}
		w := oracleContent(t, dir, &lvs, lv.Name, vg.ExtentSize, pes)
		if !bytes.Equal(b, w) {
			t.Errorf("LV %s: %d bytes differ from lvm's extents (%d bytes)", lv.Name, len(b), len(w))
		}
		content[lv.Name] = b
		if lv.Name == "seg-lv" && lv.MapperName() != "vm--unit-seg--lv" {
			t.Errorf("mapper name %s", lv.MapperName())
		}
	}

	// Without d3: LVs on it fail alone.
	vg = Assemble(openFixturePVs(t, dir, "d1", "d2")).VGs[0]
	for _, lv := range vg.LVs {
		_, err := lv.Open()
		switch lv.Name {
		case "data", "seg-lv":
			if !errors.Is(err, ErrMissingPV) {
				t.Errorf("without d3, %s: %v; want ErrMissingPV", lv.Name, err)
			}
		default:
			if err != nil {
				t.Errorf("without d3, %s: %v", lv.Name, err)
			}
		}
	}
	// Without d1: r1 reads from its other leg.
	vg = Assemble(openFixturePVs(t, dir, "d2", "d3")).VGs[0]
	b, err := readAll(t, vg.LV("r1"))
	if err != nil {
		t.Fatalf("r1 without d1: %v", err)
	}
	if !bytes.Equal(b, oracleContent(t, dir, &lvs, "r1_rimage_1", vg.ExtentSize, pes)) {
		t.Errorf("r1 without d1 does not read r1_rimage_1")
	}
	if bytes.Equal(b, content["r1"]) {
		t.Errorf("the legs of r1 hold the same bytes; the test proves nothing")
	}
}
