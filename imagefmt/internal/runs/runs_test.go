package runs

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/vmmount/vmmount/imagefmt/vdisk"
)

// A layer over a 64-byte file: [0,16) data at file offset 32, [16,32)
// zero, [32,48) backing, [48,64) data at file offset 48 (contiguous with
// nothing), [64,80) decoded.
func testLayer(backing vdisk.Image) *Layer {
	file := vdisk.BytesFile("f", bytes.Repeat([]byte("0123456789abcdef"), 4))
	m := MapperFunc(func(off int64) (Run, error) {
		switch {
		case off < 16:
			return Run{Kind: Data, Len: 16 - off, File: file, Off: 32 + off}, nil
		case off < 32:
			return Run{Kind: Zero, Len: 32 - off}, nil
		case off < 48:
			return Run{Kind: Backing, Len: 48 - off}, nil
		case off < 64:
			return Run{Kind: Data, Len: 64 - off, File: file, Off: off}, nil
		}
		start := off
		return Run{Kind: Decoded, Len: 80 - off, Read: func(p []byte, skip int64) error {
			for i := range p {
				p[i] = byte('A' + start - 64 + skip + int64(i))
			}
			return nil
		}}, nil
	})
	return &Layer{Name: "test", Size: 80, Mapper: m, Backing: backing}
}

func TestLayerRead(t *testing.T) {
	l := testLayer(nil)
	want := []byte("0123456789abcdef" + string(make([]byte, 32)) + "0123456789abcdef" + "ABCDEFGHIJKLMNOP")
	for off := 0; off < 80; off++ {
		for n := 0; n <= 90-off; n++ {
			p := make([]byte, n)
			got, err := l.ReadAt(p, int64(off))
			wantN := min(n, 80-off)
			if got != wantN || !bytes.Equal(p[:got], want[off:off+wantN]) {
				t.Fatalf("ReadAt(%d, %d) = %d %q", n, off, got, p[:got])
			}
			if (n > wantN) != (err == io.EOF) || (err != nil && err != io.EOF) {
				t.Fatalf("ReadAt(%d, %d) err %v", n, off, err)
			}
		}
	}
	if _, err := l.ReadAt(make([]byte, 1), -1); err == nil {
		t.Errorf("negative offset accepted")
	}
}

func TestLayerExtents(t *testing.T) {
	ext, err := testLayer(nil).Extents(8, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := []vdisk.Extent{{Off: 8, Len: 8, Kind: vdisk.Data}, {Off: 16, Len: 16, Kind: vdisk.Zero},
		{Off: 32, Len: 16, Kind: vdisk.Unallocated, Layer: -1}, {Off: 48, Len: 32, Kind: vdisk.Data}}
	if len(ext) != len(want) {
		t.Fatalf("extents %+v", ext)
	}
	for i := range want {
		if ext[i] != want[i] {
			t.Errorf("extent %d = %+v, want %+v", i, ext[i], want[i])
		}
	}
	if ext, _ := testLayer(nil).Extents(200, 5); len(ext) != 0 {
		t.Errorf("past the end: %+v", ext)
	}
}

func TestDecodeError(t *testing.T) {
	boom := errors.New("boom")
	l := &Layer{Name: "e", Size: 1 << 20, Mapper: MapperFunc(func(off int64) (Run, error) {
		return Run{Kind: Decoded, Len: 4096, Read: func([]byte, int64) error { return boom }}, nil
	})}
	if _, err := l.ReadAt(make([]byte, 64<<10), 0); !errors.Is(err, boom) {
		t.Errorf("err %v", err)
	}
}

func TestCache(t *testing.T) {
	c := NewCache[int, int](2)
	c.Put(1, 1)
	c.Put(2, 2)
	c.Get(1)
	c.Put(3, 3) // evicts 2, the least recently used
	if _, ok := c.Get(2); ok {
		t.Errorf("2 not evicted")
	}
	if v, ok := c.Get(1); !ok || v != 1 {
		t.Errorf("1 lost")
	}
}
