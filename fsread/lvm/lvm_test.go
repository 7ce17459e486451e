package lvm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/fsread/fsys"
)

const mib = 1 << 20

// pvSet builds in-memory PVs of 8 MiB (7 extents of 1 MiB from 1 MiB on)
// filled with random data, the first carrying text as its metadata.
func pvSet(t testing.TB, text string, uuids ...string) ([]*PV, [][]byte) {
	t.Helper()
	var pvs []*PV
	var disks [][]byte
	rng := rand.New(rand.NewPCG(1, 2))
	for i, u := range uuids {
		md := ""
		if i == 0 {
			md = text
		}
		d := buildPV(u, 8*mib, mib-4096, mib, md, 512)
		for j := mib; j < len(d); j += 8 {
			v := rng.Uint64()
			for k := 0; k < 8; k++ {
				d[j+k] = byte(v >> (8 * k))
			}
		}
		pv, err := ReadPV(bytes.NewReader(d), int64(len(d)), fmt.Sprintf("vd%c", 'a'+i))
		if err != nil {
			t.Fatalf("ReadPV %d: %v", i, err)
		}
		if len(pv.Warnings) != 0 {
			t.Fatalf("PV %d warnings: %q", i, pv.Warnings)
		}
		pvs = append(pvs, pv)
		disks = append(disks, d)
	}
	return pvs, disks
}

func readAll(t *testing.T, lv *LV) ([]byte, error) {
	t.Helper()
	r, err := lv.Open()
	if err != nil {
		return nil, err
	}
	b := make([]byte, r.Size())
	// Odd-sized reads cross stripe and segment boundaries.
	for off := 0; off < len(b); {
		n, err := r.ReadAt(b[off:min(len(b), off+77777)], int64(off))
		off += n
		if err == io.EOF && off == len(b) {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if n, err := r.ReadAt(make([]byte, 10), r.Size()-5); n != 5 || err != io.EOF {
		t.Errorf("read across the end: %d, %v", n, err)
	}
	return b, nil
}

// pe returns the bytes of extents [first, first+n) of PV disk d.
func pe(d []byte, first, n int) []byte { return d[mib+first*mib : mib+(first+n)*mib] }

func TestMapping(t *testing.T) {
	text := vgText("vm-vg", 7, []string{uuidA, uuidB, uuidC}, 7,
		lvText("root", true, linearSeg(0, 2, "pv0", 1), linearSeg(2, 1, "pv2", 6)),
		lvText("data", true, "start_extent = 0\nextent_count = 4\ntype = \"striped\"\nstripe_count = 2\nstripe_size = 128\nstripes = [\n\"pv1\", 0,\n\"pv2\", 2\n]"),
		lvText("r1", true, "start_extent = 0\nextent_count = 1\ntype = \"raid1\"\ndevice_count = 2\nregion_size = 1024\nraids = [\n\"r1_rmeta_0\", \"r1_rimage_0\",\n\"r1_rmeta_1\", \"r1_rimage_1\"\n]"),
		lvText("r1_rimage_0", false, linearSeg(0, 1, "pv0", 4)),
		lvText("r1_rmeta_0", false, linearSeg(0, 1, "pv0", 5)),
		lvText("r1_rimage_1", false, linearSeg(0, 1, "pv1", 4)),
		lvText("r1_rmeta_1", false, linearSeg(0, 1, "pv1", 5)),
		lvText("m", true, "start_extent = 0\nextent_count = 1\ntype = \"mirror\"\nmirror_count = 2\nmirrors = [\n\"m_mimage_0\", 0,\n\"m_mimage_1\", 0\n]"),
		lvText("m_mimage_0", false, linearSeg(0, 1, "pv2", 0)),
		lvText("m_mimage_1", false, linearSeg(0, 1, "pv1", 6)),
		lvText("z", true, "start_extent = 0\nextent_count = 1\ntype = \"zero\""),
	)
	pvs, d := pvSet(t, text, uuidA, uuidB, uuidC)
	as := Assemble(pvs)
	if len(as.VGs) != 1 || len(as.Errors) != 0 || len(as.Orphans) != 0 {
		t.Fatalf("assembly: %+v", as)
	}
	vg := as.VGs[0]
	if vg.Name != "vm-vg" || vg.Seqno != 7 || vg.ExtentSize != mib || len(vg.Warnings) != 0 {
		t.Fatalf("vg %+v", vg)
	}
	striped := make([]byte, 0, 4*mib)
	for c := 0; c < 4*mib/(64<<10); c++ { // 64 KiB chunks alternate pv1, pv2
		src := pe(d[1], 0, 2)
		if c%2 == 1 {
			src = pe(d[2], 2, 2)
		}
		off := (c / 2) * (64 << 10)
		striped = append(striped, src[off:off+64<<10]...)
	}
	for _, c := range []struct {
		lv, mapper string
		want       []byte
	}{
		{"root", "vm--vg-root", append(append([]byte{}, pe(d[0], 1, 2)...), pe(d[2], 6, 1)...)},
		{"data", "vm--vg-data", striped},
		{"r1", "vm--vg-r1", pe(d[0], 4, 1)},
		{"m", "vm--vg-m", pe(d[2], 0, 1)},
		{"z", "vm--vg-z", make([]byte, mib)},
	} {
		lv := vg.LV(c.lv)
		if lv.MapperName() != c.mapper || !lv.Visible {
			t.Errorf("%s: mapper name %s, visible %v", c.lv, lv.MapperName(), lv.Visible)
		}
		got, err := readAll(t, lv)
		if err != nil {
			t.Errorf("%s: %v", c.lv, err)
			continue
		}
		if !bytes.Equal(got, c.want) {
			t.Errorf("%s: content differs from the extents it maps", c.lv)
		}
	}

	// Without pv0: root fails, r1 reads from its second leg, data and m
	// do not need it.
	as = Assemble(pvs[1:])
	if len(as.VGs) != 0 {
		t.Fatalf("VG assembled without its only metadata copy")
	}
	pvs2, d2 := pvSet(t, text, uuidB, uuidA, uuidC) // metadata on B now
	as = Assemble([]*PV{pvs2[0], pvs2[2]})
	vg = as.VGs[0]
	if len(vg.Warnings) == 0 || !strings.Contains(vg.Warnings[0], "pv0") {
		t.Errorf("no warning about the missing PV: %q", vg.Warnings)
	}
	if _, err := vg.LV("root").Open(); !errors.Is(err, ErrMissingPV) {
		t.Errorf("root without pv0: %v", err)
	}
	got, err := readAll(t, vg.LV("r1"))
	if err != nil || !bytes.Equal(got, pe(d2[0], 4, 1)) {
		t.Errorf("r1 without pv0: err %v, content from the healthy leg: %v", err, bytes.Equal(got, pe(d2[0], 4, 1)))
	}
	if _, err := vg.LV("data").Open(); err != nil {
		t.Errorf("data without pv0: %v", err)
	}
}

func TestRefusedByName(t *testing.T) {
	text := vgText("vg", 1, []string{uuidA}, 7,
		lvText("lv", true, linearSeg(0, 1, "pv0", 0)),
		lvText("snap", true, linearSeg(0, 1, "pv0", 1)),
		lvText("snapshot0", false, "start_extent = 0\nextent_count = 1\ntype = \"snapshot\"\nchunk_size = 8\norigin = \"lv\"\ncow_store = \"snap\""),
		lvText("pool", true, "start_extent = 0\nextent_count = 1\ntype = \"thin-pool\"\nmetadata = \"pool_tmeta\"\npool = \"pool_tdata\"\ntransaction_id = 1\nchunk_size = 128"),
		lvText("thin", true, "start_extent = 0\nextent_count = 4\ntype = \"thin\"\nthin_pool = \"pool\"\ntransaction_id = 0\ndevice_id = 1"),
		lvText("c", true, "start_extent = 0\nextent_count = 1\ntype = \"cache\"\ncache_pool = \"cpool\"\norigin = \"c_corig\""),
		lvText("r5", true, "start_extent = 0\nextent_count = 2\ntype = \"raid5\"\ndevice_count = 3\nraids = [\"a\", \"b\", \"c\"]"),
		lvText("v", true, "start_extent = 0\nextent_count = 2\ntype = \"vdo\"\nvdo_pool = \"vpool\"\nvdo_offset = 0"),
	)
	pvs, _ := pvSet(t, text, uuidA)
	vg := Assemble(pvs).VGs[0]
	for name, want := range map[string]string{
		"snap": "snapshot of lv", "snapshot0": "snapshot of lv", "pool": "thin pool",
		"thin": "thin volume (in pool pool)", "c": "cache LV", "r5": `"raid5"`, "v": `"vdo"`,
	} {
		_, err := vg.LV(name).Open()
		if !errors.Is(err, fsys.ErrUnsupported) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want ErrUnsupported saying %q", name, err, want)
		}
	}
	if _, err := vg.LV("lv").Open(); err != nil {
		t.Errorf("origin: %v", err)
	}
}

func TestHostileMetadata(t *testing.T) {
	deep := strings.Repeat("a {\n", 40) + strings.Repeat("}\n", 40)
	for _, c := range []struct {
		name string
		text string
		lv   string // LV that must fail to open; "" means the VG fails
		want string
	}{
		{name: "deep nesting", text: deep, want: "nested deeper"},
		{name: "unterminated", text: "vg {\nid = \"x\nseqno = 1\n", want: "unterminated"},
		{name: "missing brace", text: "vg {\nid = \"x\"\nseqno = 1\n", want: "missing }"},
		{name: "two VGs", text: "a {\nid=\"x\"\nseqno=1\n}\nb {\nid=\"y\"\nseqno=1\n}\n", want: "more than one"},
		{name: "bad VG name", text: "../etc {\nid=\"x\"\nseqno=1\n}\n", want: "invalid"},
		{name: "huge extent size", text: strings.Replace(vgText("vg", 1, []string{uuidA}, 7), "extent_size = 2048", "extent_size = 99999999999999", 1), want: "extent_size"},
		{name: "huge pe_count", text: strings.Replace(vgText("vg", 1, []string{uuidA}, 7), "pe_count = 7", "pe_count = 999999999999", 1), want: "out of range"},
		{
			name: "PE range past the PV",
			text: vgText("vg", 1, []string{uuidA}, 7, lvText("lv", true, linearSeg(0, 3, "pv0", 6))),
			lv:   "lv", want: "past its 7 extents",
		},
		{
			name: "PE count lies about the device",
			text: strings.Replace(vgText("vg", 1, []string{uuidA}, 7, lvText("lv", true, linearSeg(0, 3, "pv0", 50))), "pe_count = 7", "pe_count = 100", 1),
			lv:   "lv", want: "past the end of vda",
		},
		{
			name: "segments overlap",
			text: vgText("vg", 1, []string{uuidA}, 7, lvText("lv", true, linearSeg(0, 2, "pv0", 0), linearSeg(1, 2, "pv0", 3))),
			lv:   "lv", want: "overlap",
		},
		{
			name: "gap in segments",
			text: vgText("vg", 1, []string{uuidA}, 7, lvText("lv", true, linearSeg(1, 2, "pv0", 0))),
			lv:   "lv", want: "gap",
		},
		{
			name: "huge extent counts",
			text: vgText("vg", 1, []string{uuidA}, 7, lvText("lv", true, linearSeg(0, 1<<45, "pv0", 0))),
			lv:   "lv", want: "out of range",
		},
		{
			name: "unknown PV",
			text: vgText("vg", 1, []string{uuidA}, 7, lvText("lv", true, linearSeg(0, 1, "pv9", 0))),
			lv:   "lv", want: "unknown PV",
		},
		{
			name: "stripes do not divide",
			text: vgText("vg", 1, []string{uuidA}, 7, lvText("lv", true, "start_extent = 0\nextent_count = 3\ntype = \"striped\"\nstripe_count = 2\nstripe_size = 128\nstripes = [\"pv0\", 0, \"pv0\", 3]")),
			lv:   "lv", want: "do not divide",
		},
		{
			name: "raid1 leg loop",
			text: vgText("vg", 1, []string{uuidA}, 7, lvText("lv", true, "start_extent = 0\nextent_count = 1\ntype = \"mirror\"\nmirror_count = 1\nmirrors = [\"lv\", 0]")),
			lv:   "lv", want: "no healthy mirror leg",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := buildPV(uuidA, 8*mib, mib-4096, mib, c.text, 512)
			pv, err := ReadPV(bytes.NewReader(d), int64(len(d)), "vda")
			if err != nil {
				t.Fatal(err)
			}
			as := Assemble([]*PV{pv})
			if c.lv == "" {
				msg := strings.Join(pv.Warnings, "; ")
				for _, e := range as.Errors {
					msg += "; " + e.Error()
				}
				if len(as.VGs) != 0 || !strings.Contains(msg, c.want) {
					t.Fatalf("VGs %d, messages %q; want a failure saying %q", len(as.VGs), msg, c.want)
				}
				return
			}
			if len(as.VGs) != 1 {
				t.Fatalf("no VG: %v %q", as.Errors, pv.Warnings)
			}
			_, err = as.VGs[0].LV(c.lv).Open()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open = %v; want an error saying %q", err, c.want)
			}
			t.Logf("%v", err)
		})
	}
}

func TestLabelAndMDADamage(t *testing.T) {
	text := vgText("vg", 3, []string{uuidA}, 7, lvText("lv", true, linearSeg(0, 1, "pv0", 0)))
	good := buildPV(uuidA, 8*mib, mib-4096, mib, text, 512)
	for _, c := range []struct {
		name    string
		damage  func(d []byte)
		notPV   bool
		corrupt bool
		warning string
	}{
		{name: "no label", damage: func(d []byte) { clear(d[512:1024]) }, notPV: true},
		{name: "label checksum", damage: func(d []byte) { d[512+40] ^= 1 }, corrupt: true},
		{name: "label sector field", damage: func(d []byte) {
			d[512+8] = 3
			putCRC(d[512:1024])
		}, corrupt: true},
		{name: "mda checksum", damage: func(d []byte) { d[4096+30] ^= 1 }, warning: "header checksum"},
		{name: "mda magic", damage: func(d []byte) { d[4096+5] ^= 1; putMDACRC(d[4096:]) }, warning: "bad magic"},
		{name: "text checksum", damage: func(d []byte) { d[4096+512+3] ^= 1 }, warning: "text checksum"},
		{name: "text location past area", damage: func(d []byte) {
			d[4096+40+7] = 0x10
			putMDACRC(d[4096:])
		}, warning: "outside the area"},
		{name: "mda past device", damage: func(d []byte) {
			d[512+32+40+32+7] = 0x40 // metadata area offset, after the data area list
			putCRC(d[512:1024])
		}, warning: "does not fit the device"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := bytes.Clone(good)
			c.damage(d)
			pv, err := ReadPV(bytes.NewReader(d), int64(len(d)), "vda")
			switch {
			case c.notPV:
				if !errors.Is(err, ErrNotPV) {
					t.Fatalf("err %v, want ErrNotPV", err)
				}
				return
			case c.corrupt:
				if !errors.Is(err, fsys.ErrCorrupt) {
					t.Fatalf("err %v, want ErrCorrupt", err)
				}
				t.Logf("%v", err)
				return
			case err != nil:
				t.Fatal(err)
			}
			if pv.Metadata != nil || len(pv.Warnings) != 1 || !strings.Contains(pv.Warnings[0], c.warning) {
				t.Fatalf("metadata %v, warnings %q; want one saying %q", pv.Metadata, pv.Warnings, c.warning)
			}
			t.Logf("%s", pv.Warnings[0])
		})
	}
}

// TestWrappedText puts the metadata text across the end of the circular
// buffer: LVM continues it right after the mda header.
func TestWrappedText(t *testing.T) {
	text := vgText("vg", 9, []string{uuidA}, 7, lvText("lv", true, linearSeg(0, 1, "pv0", 0)))
	const mdaSize = 64 << 10
	d := buildPV(uuidA, 8*mib, mdaSize, mib, text, mdaSize-700)
	pv, err := ReadPV(bytes.NewReader(d), int64(len(d)), "vda")
	if err != nil || pv.Metadata == nil || pv.Metadata.Seqno != 9 {
		t.Fatalf("ReadPV: %v, %+v (warnings %q)", err, pv, pv.Warnings)
	}
}

func putCRC(l []byte) {
	l[16], l[17], l[18], l[19] = 0, 0, 0, 0
	c := calcCRC(initialCRC, l[20:512])
	l[16], l[17], l[18], l[19] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
}

func putMDACRC(h []byte) {
	c := calcCRC(initialCRC, h[4:512])
	h[0], h[1], h[2], h[3] = byte(c), byte(c>>8), byte(c>>16), byte(c>>24)
}

func TestNewestSeqno(t *testing.T) {
	old := vgText("vg", 4, []string{uuidA, uuidB}, 7, lvText("old", true, linearSeg(0, 1, "pv0", 0)))
	cur := vgText("vg", 5, []string{uuidA, uuidB}, 7, lvText("new", true, linearSeg(0, 1, "pv1", 0)))
	a := buildPV(uuidA, 8*mib, mib-4096, mib, old, 512)
	b := buildPV(uuidB, 8*mib, mib-4096, mib, cur, 4096)
	pa, _ := ReadPV(bytes.NewReader(a), int64(len(a)), "vda")
	pb, _ := ReadPV(bytes.NewReader(b), int64(len(b)), "vdb")
	as := Assemble([]*PV{pa, pb})
	if len(as.VGs) != 1 || as.VGs[0].Seqno != 5 || as.VGs[0].LV("new") == nil {
		t.Fatalf("assembly %+v", as.VGs)
	}
	if w := as.VGs[0].Warnings; len(w) != 1 || !strings.Contains(w[0], "stale metadata (seqno 4) on vda") {
		t.Errorf("warnings %q", w)
	}
}
