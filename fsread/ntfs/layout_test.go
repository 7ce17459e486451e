package ntfs

import (
	"encoding/binary"
	"testing"
)

// The structs mirror the on-disk layout byte for byte.
func TestStructSizes(t *testing.T) {
	for _, c := range []struct {
		name string
		v    any
		want int
	}{
		{"bootSector", bootSector{}, bootSectorSize},
		{"recordHeader", recordHeader{}, recordHeaderSize},
		{"attrHeader", attrHeader{}, attrHeaderSize},
		{"residentHeader", residentHeader{}, residentHeaderSize},
		{"nonResidentHeader", nonResidentHeader{}, nonResidentHeaderSize},
		{"standardInformation", standardInformation{}, standardInformationSize},
		{"fileNameHeader", fileNameHeader{}, fileNameHeaderSize},
		{"attrListEntry", attrListEntry{}, attrListEntrySize},
		{"indexRoot", indexRoot{}, indexRootSize},
		{"indexBlockHeader", indexBlockHeader{}, indexBlockHeaderSize},
		{"indexEntryHeader", indexEntryHeader{}, indexEntryHeaderSize},
	} {
		if got := binary.Size(c.v); got != c.want {
			t.Errorf("%s is %d bytes, want %d", c.name, got, c.want)
		}
	}
}

func TestNTFSTime(t *testing.T) {
	for in, want := range map[int64]string{
		ntfsEpochDelta:     "1970-01-01T00:00:00Z",
		ntfsEpochDelta - 5: "1969-12-31T23:59:59.9999995Z",
		0:                  "1601-01-01T00:00:00Z",
	} {
		if got := ntfsTime(in).Format("2006-01-02T15:04:05.999999999Z07:00"); got != want {
			t.Errorf("%d: %s, want %s", in, got, want)
		}
	}
}

func TestDecodeRuns(t *testing.T) {
	// 0x21: 1-byte length, 2-byte LCN; then a hole; then a negative delta.
	b := []byte{0x21, 0x10, 0x00, 0x01, 0x01, 0x08, 0x11, 0x04, 0xF0, 0x00}
	runs, err := decodeRuns(b, 0, 0x10+8+4-1, 1000)
	if err != nil {
		t.Fatal(err)
	}
	want := []run{{0, 256, 16}, {16, -1, 8}, {24, 240, 4}}
	if len(runs) != len(want) {
		t.Fatalf("got %v", runs)
	}
	for i := range want {
		if runs[i] != want[i] {
			t.Errorf("run %d: %v, want %v", i, runs[i], want[i])
		}
	}
	for name, bad := range map[string][]byte{
		"no terminator": {0x21, 0x10, 0x00, 0x01},
		"past volume":   {0x31, 0x10, 0xFF, 0xFF, 0x7F, 0x00},
		"before 0":      {0x21, 0x10, 0x00, 0x80, 0x00},
		"too long":      {0x01, 0xFF, 0x00},
		"header sizes":  {0x9F, 0x00},
	} {
		if _, err := decodeRuns(bad, 0, 0x0F, 1000); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
