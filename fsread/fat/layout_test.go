package fat

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
		{"bpb", bpb{}, bpbSize},
		{"bpb16", bpb16{}, bpb16Size},
		{"bpb32", bpb32{}, bpb32Size},
		{"dirEntry", dirEntry{}, dirEntrySize},
		{"lfnEntry", lfnEntry{}, dirEntrySize},
	} {
		if got := binary.Size(c.v); got != c.want {
			t.Errorf("%s is %d bytes, want %d", c.name, got, c.want)
		}
	}
	if bpbSize+bpb16Size != 62 || bpbSize+bpb32Size != 90 {
		t.Error("extended BPBs do not end where the spec says (62, 90)")
	}
}

func TestSurrogatePairName(t *testing.T) {
	tv := newTiny()
	name := [11]byte{}
	copy(name[:], "SMILE~1 TXT")
	// lfn() writes one unit per rune; write the pair by hand.
	k := tv.lfn(tinyRoot, 0, "smile XX.txt", shortNameChecksum(&name))
	e := tv.b[tinyRoot : tinyRoot+32]
	binary.LittleEndian.PutUint16(e[14+2*1:], 0xD83D) // units 6, 7: "XX" -> U+1F600
	binary.LittleEndian.PutUint16(e[14+2*2:], 0xDE00)
	tv.entry(tinyRoot, k, "SMILE~1 TXT", attrArchive, 0, 0)
	f := openTiny(t, tv.b)
	ents, err := f.ReadDir(rootIno)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name != "smile 😀.txt" {
		t.Errorf("got %+v", ents)
	}
}
