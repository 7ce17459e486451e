package part

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
		{"MBREntry", MBREntry{}, mbrEntrySize},
		{"GPTHeader", GPTHeader{}, gptHeaderSize},
		{"GPTEntry", GPTEntry{}, gptEntrySize},
	} {
		if got := binary.Size(c.v); got != c.want {
			t.Errorf("binary.Size(%s) = %d, want %d", c.name, got, c.want)
		}
	}
}

func TestFormatGUID(t *testing.T) {
	if got, want := FormatGUID(guidLinux), "0fc63daf-8483-4772-8e79-3d69d8477de4"; got != want {
		t.Errorf("FormatGUID = %s, want %s", got, want)
	}
	if got := gptTypeName(FormatGUID(guidESP)); got != "EFI System" {
		t.Errorf("ESP type name = %q", got)
	}
}
