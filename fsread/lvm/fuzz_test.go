package lvm

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmmount/vmmount/testimages"
)

// fixtureSeeds returns files of the LVM fixture if it was built already
// (fuzzing does not build it).
func fixtureSeeds(names ...string) [][]byte {
	dir := filepath.Join(testimages.Root(), lvmFixtureName+"-"+lvmFixtureVersion)
	var out [][]byte
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err == nil {
			out = append(out, b)
		}
	}
	return out
}

func seedTexts() []string {
	return []string{
		vgText("vm-vg", 7, []string{uuidA, uuidB}, 7,
			lvText("root", true, linearSeg(0, 2, "pv0", 1), linearSeg(2, 1, "pv1", 6)),
			lvText("data", true, "start_extent = 0\nextent_count = 4\ntype = \"striped\"\nstripe_count = 2\nstripe_size = 128\nstripes = [\n\"pv1\", 0,\n\"pv0\", 2\n]"),
			lvText("r1", true, "start_extent = 0\nextent_count = 1\ntype = \"raid1\"\ndevice_count = 2\nraids = [\"r1_rmeta_0\", \"r1_rimage_0\", \"r1_rmeta_1\", \"r1_rimage_1\"]"),
			lvText("r1_rimage_0", false, linearSeg(0, 1, "pv0", 4)),
			lvText("r1_rimage_1", false, linearSeg(0, 1, "pv1", 4)),
			lvText("m", true, "start_extent = 0\nextent_count = 1\ntype = \"mirror\"\nmirror_count = 1\nmirrors = [\"r1_rimage_0\", 0]"),
			lvText("z", true, "start_extent = 0\nextent_count = 1\ntype = \"zero\""),
		),
		"a { b = [1, \"x\\\"y\", 'z', 1.5] c { } }\n",
	}
}

// FuzzReadPV feeds the start of a PV (label, PV header, metadata area and its
// text) to ReadPV and assembles what it finds.
func FuzzReadPV(f *testing.F) {
	// Small PVs keep the fuzzer and its minimizer fast; the fixture's text
	// seeds FuzzMetadata.
	text := vgText("vg", 3, []string{uuidA}, 7, lvText("lv", true, linearSeg(0, 1, "pv0", 0)))
	f.Add(buildPV(uuidA, 16<<10, 8<<10, 12<<10, text, 512))
	f.Add(buildPV(uuidA, 16<<10, 8<<10, 12<<10, text, 7000)) // wraps
	f.Fuzz(func(t *testing.T, b []byte) {
		pv, err := ReadPV(bytes.NewReader(b), int64(len(b)), "fuzz")
		if err != nil {
			return
		}
		for _, vg := range Assemble([]*PV{pv}).VGs {
			for _, lv := range vg.LVs {
				exerciseLV(t, lv)
			}
		}
	})
}

// FuzzMetadata feeds text metadata to the parser, builds the VG with every
// PV present (64 MiB of zeros each) and reads from every LV: the text
// parser and the LE -> PE mapping.
func FuzzMetadata(f *testing.F) {
	for _, s := range seedTexts() {
		f.Add([]byte(s))
	}
	for _, b := range fixtureSeeds("vg-raid.txt") {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		md, err := ParseMetadata(text)
		if err != nil {
			return
		}
		vg, err := decodeVG(md)
		if err != nil {
			return
		}
		for _, slot := range vg.PVs {
			slot.PV = &PV{Device: slot.Name, r: zeros{}, size: 64 << 20}
		}
		for _, lv := range vg.LVs {
			exerciseLV(t, lv)
		}
	})
}

type zeros struct{}

func (zeros) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > 64<<20 {
		panic("read outside the PV")
	}
	clear(p)
	return len(p), nil
}

func exerciseLV(t *testing.T, lv *LV) {
	r, err := lv.Open()
	if err != nil {
		return
	}
	if r.Size() != lv.Size() || r.Size() < 0 {
		t.Fatalf("reader size %d, LV size %d", r.Size(), lv.Size())
	}
	buf := make([]byte, 4096)
	for _, off := range []int64{0, r.Size() / 3, r.Size() - 100, r.Size()} {
		if off < 0 {
			continue
		}
		n, err := r.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			t.Fatalf("ReadAt %d of %d: %v", off, r.Size(), err)
		}
		if want := min(int64(len(buf)), r.Size()-off); int64(n) != want {
			t.Fatalf("ReadAt %d: %d bytes, want %d", off, n, want)
		}
	}
}
