package part

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vmmount/vmmount/fsread/fsys"
)

func sampleGPT(ss int64) gptSpec {
	k := uint64(mib / ss) // LBAs per MiB
	return gptSpec{ss: ss, size: 64 * mib, parts: []gptPart{
		{index: 0, typ: guidESP, uuid: [16]byte{1}, first: k, last: 9*k - 1, name: "EFI system"},
		// Entry 2 unused: partition 3 keeps its number.
		{index: 2, typ: guidLinux, uuid: [16]byte{3}, first: 9 * k, last: 40*k - 1, name: "root ☃", attributes: 1 << 2},
		{index: 3, typ: guidLinux, uuid: [16]byte{4}, first: 40 * k, last: 60*k - 1},
	}}
}

func TestGPT(t *testing.T) {
	for _, ss := range []int64{512, 4096} {
		disk := buildGPT(sampleGPT(ss))
		for _, hint := range []int{0, int(ss)} {
			tab := readBytes(t, disk, Options{SectorSize: hint})
			want := []brief{
				{1, 2048, 16384, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", false, false},
				{3, 18432, 63488, "0fc63daf-8483-4772-8e79-3d69d8477de4", false, false},
				{4, 81920, 40960, "0fc63daf-8483-4772-8e79-3d69d8477de4", false, false},
			}
			if d := cmp.Diff(want, briefs(tab)); d != "" {
				t.Errorf("ss %d: partitions (-want +got):\n%s", ss, d)
			}
			if tab.Scheme != "gpt" || tab.SectorSize != int(ss) || tab.Hybrid || len(tab.Warnings) != 0 {
				t.Errorf("ss %d: table %+v", ss, tab)
			}
			p := tab.Partitions[1]
			if p.Name != "root ☃" || !p.Bootable || p.UUID != "00000003-0000-0000-0000-000000000000" || p.TypeName != "Linux filesystem" {
				t.Errorf("ss %d: partition 3: %+v", ss, p)
			}
			if tab.DiskID != "04030201-0605-0807-090a-0b0c0d0e0f10" {
				t.Errorf("disk id %s", tab.DiskID)
			}
		}
	}
}

func TestGPTDamage(t *testing.T) {
	const ss = 512
	last := int64(64*mib/ss - 1)
	for _, c := range []struct {
		name    string
		spec    func(*gptSpec)
		damage  func(d []byte)
		warning string
		corrupt bool // Read fails with ErrCorrupt
		noTable bool
		parts   int
	}{
		{name: "primary header CRC", damage: func(d []byte) { d[ss+30] ^= 1 }, warning: "using the backup", parts: 3},
		{name: "primary entries CRC", damage: func(d []byte) { d[2*ss+40] ^= 1 }, warning: "entry array CRC32", parts: 3},
		{name: "primary zeroed", damage: func(d []byte) { clear(d[ss : 34*ss]) }, warning: "using the backup", parts: 3},
		{name: "backup damaged", damage: func(d []byte) { d[last*ss+30] ^= 1 }, warning: "backup header invalid", parts: 3},
		{
			name:    "both damaged",
			damage:  func(d []byte) { d[ss+30] ^= 1; d[last*ss+30] ^= 1 },
			corrupt: true,
		},
		{
			name:    "protective MBR without GPT",
			damage:  func(d []byte) { clear(d[ss : 2*ss]); clear(d[last*ss:]) },
			corrupt: true,
		},
		{
			name: "huge entry array",
			damage: func(d []byte) {
				for _, off := range []int64{ss, last * ss} {
					binary.LittleEndian.PutUint32(d[off+80:], 0xFFFFFFFF)
					binary.LittleEndian.PutUint32(d[off+84:], 0x80000000)
					fixHeaderCRC(d, off)
				}
			},
			corrupt: true,
		},
		{
			name: "entry size not 128*2^n",
			damage: func(d []byte) {
				for _, off := range []int64{ss, last * ss} {
					binary.LittleEndian.PutUint32(d[off+84:], 130)
					fixHeaderCRC(d, off)
				}
			},
			corrupt: true,
		},
		{
			name: "entry array past the end",
			damage: func(d []byte) {
				for _, off := range []int64{ss, last * ss} {
					binary.LittleEndian.PutUint64(d[off+72:], uint64(last-2))
					fixHeaderCRC(d, off)
				}
			},
			corrupt: true,
		},
		{
			name: "header size too big",
			damage: func(d []byte) {
				for _, off := range []int64{ss, last * ss} {
					binary.LittleEndian.PutUint32(d[off+12:], 4096)
					fixHeaderCRC(d, off)
				}
			},
			corrupt: true,
		},
		{
			name: "partitions past the end and reversed",
			spec: func(s *gptSpec) {
				s.parts = append(s.parts,
					gptPart{index: 4, typ: guidLinux, first: 100, last: uint64(last) + 1},
					gptPart{index: 5, typ: guidLinux, first: 1 << 62, last: 1 << 62},
					gptPart{index: 6, typ: guidLinux, first: 5000, last: 4000})
			},
			warning: "ends (LBA 4000) before it starts",
			parts:   3,
		},
		{
			name: "overlapping partitions",
			spec: func(s *gptSpec) {
				s.parts = append(s.parts, gptPart{index: 9, typ: guidLinux, first: 4096, last: 8191})
			},
			warning: "partitions 1 and 10 overlap",
			parts:   4,
		},
		{
			name:    "no protective MBR",
			spec:    func(s *gptSpec) { s.noPMBR = true },
			warning: "no MBR signature",
			parts:   3,
		},
		{
			name:  "hybrid MBR",
			spec:  func(s *gptSpec) { s.hybrid = []mbrPart{{typ: 0x0c, start: 2048, size: 16384}} },
			parts: 3,
		},
		{
			name: "entries past 255",
			spec: func(s *gptSpec) {
				s.numEntries = 300
				s.parts = append(s.parts, gptPart{index: 280, typ: guidLinux, first: 121000, last: 121100})
			},
			warning: "past 255",
			parts:   3,
		},
		{
			name:    "no GPT and no MBR",
			damage:  func(d []byte) { clear(d) },
			noTable: true,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := sampleGPT(ss)
			if c.spec != nil {
				c.spec(&spec)
			}
			disk := buildGPT(spec)
			if c.damage != nil {
				c.damage(disk)
			}
			tab, err := Read(bytes.NewReader(disk), int64(len(disk)), Options{Name: "vda"})
			switch {
			case c.corrupt:
				if !errors.Is(err, fsys.ErrCorrupt) {
					t.Fatalf("Read = %+v, %v; want ErrCorrupt", tab, err)
				}
				t.Logf("error: %v", err)
				return
			case c.noTable:
				if !errors.Is(err, ErrNoTable) {
					t.Fatalf("Read = %+v, %v; want ErrNoTable", tab, err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if len(tab.Partitions) != c.parts {
				t.Errorf("%d partitions, want %d: %+v", len(tab.Partitions), c.parts, briefs(tab))
			}
			if c.warning != "" {
				wantWarning(t, tab, c.warning)
			}
			if c.name == "hybrid MBR" && !tab.Hybrid {
				t.Errorf("Hybrid not set")
			}
		})
	}
}
