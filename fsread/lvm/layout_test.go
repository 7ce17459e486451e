package lvm

import (
	"encoding/binary"
	"testing"
)

func TestStructSizes(t *testing.T) {
	for _, c := range []struct {
		name string
		v    any
		want int
	}{
		{"LabelHeader", LabelHeader{}, labelHeaderSize},
		{"DiskLocn", DiskLocn{}, diskLocnSize},
		{"PVHeaderFixed", PVHeaderFixed{}, pvHeaderFixedSize},
		{"MDAHeaderFixed", MDAHeaderFixed{}, mdaHeaderFixedSize},
		{"RawLocn", RawLocn{}, rawLocnSize},
	} {
		if got := binary.Size(c.v); got != c.want {
			t.Errorf("binary.Size(%s) = %d, want %d", c.name, got, c.want)
		}
	}
}

// TestCalcCRC checks calcCRC against LVM2's calc_crc computed by hand with
// the nibble-free bytewise definition: crc = table[(crc^b)&0xff] ^ crc>>8.
func TestCalcCRC(t *testing.T) {
	ref := func(crc uint32, b []byte) uint32 {
		for _, c := range b {
			crc ^= uint32(c)
			for k := 0; k < 8; k++ {
				if crc&1 != 0 {
					crc = crc>>1 ^ 0xedb88320
				} else {
					crc >>= 1
				}
			}
		}
		return crc
	}
	for _, s := range []string{"", "a", "LVM2 001 and some longer text to cross 16-byte blocks"} {
		if got, want := calcCRC(initialCRC, []byte(s)), ref(initialCRC, []byte(s)); got != want {
			t.Errorf("calcCRC(%q) = %#x, want %#x", s, got, want)
		}
	}
}

func TestUUIDForm(t *testing.T) {
	if got := formatUUID(plainUUID(uuidA)); got != uuidA {
		t.Errorf("formatUUID = %s", got)
	}
}
