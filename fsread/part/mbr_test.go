package part

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const mib = 1 << 20

// brief is the part of a partition a crafted test checks.
type brief struct {
	N           int
	Start, Size int64 // sectors of 512
	Type        string
	Ext, Log    bool
}

func briefs(t *Table) []brief {
	var out []brief
	for _, p := range t.Partitions {
		out = append(out, brief{p.Number, p.Start / 512, p.Size / 512, p.Type, p.Extended, p.Logical})
	}
	return out
}

func readBytes(t *testing.T, disk []byte, opts Options) *Table {
	t.Helper()
	tab, err := Read(bytes.NewReader(disk), int64(len(disk)), opts)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return tab
}

func wantWarning(t *testing.T, tab *Table, substr string) {
	t.Helper()
	for _, w := range tab.Warnings {
		if strings.Contains(w, substr) {
			return
		}
	}
	t.Errorf("no warning containing %q in %q", substr, tab.Warnings)
}

func TestMBRNumbering(t *testing.T) {
	// Slot 1 empty, slot 2 Linux, slot 3 extended with three logicals,
	// slot 4 empty: Linux gives 2, 3 (the container), 5, 6, 7.
	disk := make([]byte, 64*mib)
	putMBR(disk, 0, 0xdeadbeef,
		mbrPart{},
		mbrPart{boot: 0x80, typ: 0x83, start: 2048, size: 4096},
		mbrPart{typ: 0x0f, start: 8192, size: 65536},
	)
	// EBR 1 at the start of the extended partition: data relative to the
	// EBR, link relative to the extended partition.
	putMBR(disk, 8192*512, 0, mbrPart{typ: 0x83, start: 2048, size: 2048}, mbrPart{typ: 0x05, start: 8192, size: 8192})
	putMBR(disk, (8192+8192)*512, 0, mbrPart{typ: 0x82, start: 2048, size: 4096}, mbrPart{typ: 0x05, start: 20480, size: 8192})
	putMBR(disk, (8192+20480)*512, 0, mbrPart{typ: 0x8e, start: 1, size: 100})
	tab := readBytes(t, disk, Options{})
	want := []brief{
		{2, 2048, 4096, "0x83", false, false},
		{3, 8192, 65536, "0x0f", true, false},
		{5, 8192 + 2048, 2048, "0x83", false, true},
		{6, 8192 + 8192 + 2048, 4096, "0x82", false, true},
		{7, 8192 + 20480 + 1, 100, "0x8e", false, true},
	}
	if d := cmp.Diff(want, briefs(tab)); d != "" {
		t.Errorf("partitions (-want +got):\n%s", d)
	}
	if tab.Scheme != "dos" || tab.DiskID != "deadbeef" {
		t.Errorf("scheme %q id %q", tab.Scheme, tab.DiskID)
	}
	if p := tab.Partitions[0]; !p.Bootable || p.UUID != "deadbeef-02" || p.TypeName != "Linux" {
		t.Errorf("partition 2: %+v", p)
	}
	if len(tab.Warnings) != 0 {
		t.Errorf("warnings: %q", tab.Warnings)
	}
}

func TestMBRBadInput(t *testing.T) {
	for _, c := range []struct {
		name    string
		build   func(d []byte)
		want    []brief
		warning string
		noTable bool
	}{
		{
			name: "EBR loop",
			build: func(d []byte) {
				putMBR(d, 0, 1, mbrPart{typ: 0x05, start: 2048, size: 16384})
				putMBR(d, 2048*512, 0, mbrPart{typ: 0x83, start: 1, size: 10}, mbrPart{typ: 0x05, start: 100, size: 100})
				// The second EBR links back to the first.
				putMBR(d, 2148*512, 0, mbrPart{typ: 0x83, start: 1, size: 10}, mbrPart{typ: 0x05, start: 0, size: 100})
			},
			want:    []brief{{1, 2048, 16384, "0x05", true, false}, {5, 2049, 10, "0x83", false, true}, {6, 2149, 10, "0x83", false, true}},
			warning: "loops back",
		},
		{
			name: "EBR self loop without data",
			build: func(d []byte) {
				putMBR(d, 0, 1, mbrPart{typ: 0x85, start: 2048, size: 16384})
				putMBR(d, 2048*512, 0, mbrPart{typ: 0x05, start: 0, size: 100})
			},
			want:    []brief{{1, 2048, 16384, "0x85", true, false}},
			warning: "loops back",
		},
		{
			name: "partitions past the end",
			build: func(d []byte) {
				putMBR(d, 0, 1, mbrPart{typ: 0x83, start: 2048, size: 1 << 30}, mbrPart{typ: 0x83, start: 1 << 30, size: 10})
			},
			want:    []brief{{1, 2048, 64*mib/512 - 2048, "0x83", false, false}},
			warning: "truncated",
		},
		{
			name: "overlap",
			build: func(d []byte) {
				putMBR(d, 0, 1, mbrPart{typ: 0x83, start: 2048, size: 4096}, mbrPart{typ: 0x83, start: 4096, size: 4096})
			},
			want:    []brief{{1, 2048, 4096, "0x83", false, false}, {2, 4096, 4096, "0x83", false, false}},
			warning: "partitions 1 and 2 overlap",
		},
		{
			name: "EBR past the end of the disk",
			build: func(d []byte) {
				putMBR(d, 0, 1, mbrPart{typ: 0x05, start: 2048, size: 8192})
				putMBR(d, 2048*512, 0, mbrPart{typ: 0x83, start: 1, size: 10}, mbrPart{typ: 0x05, start: 0xF0000000, size: 100})
			},
			want:    []brief{{1, 2048, 8192, "0x05", true, false}, {5, 2049, 10, "0x83", false, true}},
			warning: "past the end of the disk",
		},
		{
			name: "EBR without signature",
			build: func(d []byte) {
				putMBR(d, 0, 1, mbrPart{typ: 0x05, start: 2048, size: 8192})
			},
			want:    []brief{{1, 2048, 8192, "0x05", true, false}},
			warning: "no 0x55AA signature",
		},
		{
			name: "garbage in 3rd and 4th EBR entries",
			build: func(d []byte) {
				putMBR(d, 0, 1, mbrPart{typ: 0x05, start: 2048, size: 8192})
				putMBR(d, 2048*512, 0, mbrPart{typ: 0x83, start: 1, size: 10}, mbrPart{},
					mbrPart{typ: 0x83, start: 0x7000000, size: 5}, mbrPart{typ: 0x83, start: 20, size: 5})
			},
			// msdos.c keeps a 3rd or 4th entry only if it lies inside both
			// the EBR's range and the extended partition: the 3rd is out,
			// the 4th is in.
			want: []brief{{1, 2048, 8192, "0x05", true, false}, {5, 2049, 10, "0x83", false, true}, {6, 2068, 5, "0x83", false, true}},
		},
		{
			name: "100 empty links",
			build: func(d []byte) {
				putMBR(d, 0, 1, mbrPart{typ: 0x05, start: 2048, size: 40000})
				for i := 0; i < 150; i++ {
					putMBR(d, int64(2048+i*2)*512, 0, mbrPart{typ: 0x05, start: uint32(i*2 + 2), size: 2})
				}
			},
			want:    []brief{{1, 2048, 40000, "0x05", true, false}},
			warning: "links without a partition",
		},
		{
			name:    "bad boot indicator",
			build:   func(d []byte) { putMBR(d, 0, 1, mbrPart{boot: 0x12, typ: 0x83, start: 2048, size: 10}) },
			noTable: true,
		},
		{
			name: "FAT boot sector",
			build: func(d []byte) {
				putMBR(d, 0, 1)
				copy(d, []byte{0xEB, 0x3C, 0x90, 'm', 'k', 'f', 's', '.', 'f', 'a', 't', 0x00, 0x02, 4, 4, 0, 2, 0, 2, 0, 0, 0xF8})
			},
			noTable: true,
		},
		{
			name:    "NTFS boot sector",
			build:   func(d []byte) { putMBR(d, 0, 1); copy(d[3:], "NTFS    ") },
			noTable: true,
		},
		{name: "zeros", build: func([]byte) {}, noTable: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			disk := make([]byte, 64*mib)
			c.build(disk)
			tab, err := Read(bytes.NewReader(disk), int64(len(disk)), Options{Name: "vda"})
			if c.noTable {
				if !errors.Is(err, ErrNoTable) {
					t.Fatalf("Read = %v, %v; want ErrNoTable", tab, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(c.want, briefs(tab), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("partitions (-want +got):\n%s", d)
			}
			if c.warning != "" {
				wantWarning(t, tab, c.warning)
			}
		})
	}
}

func TestMBR4KSectors(t *testing.T) {
	disk := make([]byte, 64*mib)
	putMBR(disk, 0, 7, mbrPart{typ: 0x83, start: 256, size: 1024}, mbrPart{typ: 0x05, start: 2048, size: 4096})
	putMBR(disk, 2048*4096, 0, mbrPart{typ: 0x83, start: 1, size: 10})
	tab := readBytes(t, disk, Options{SectorSize: 4096})
	want := []brief{{1, 256 * 8, 1024 * 8, "0x83", false, false}, {2, 2048 * 8, 4096 * 8, "0x05", true, false}, {5, 2049 * 8, 80, "0x83", false, true}}
	if d := cmp.Diff(want, briefs(tab)); d != "" {
		t.Errorf("partitions (-want +got):\n%s", d)
	}
}
