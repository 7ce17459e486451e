package backup

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/imagefmt"
	"github.com/vmmount/vmmount/imagefmt/raw"
)

// TestCopyMappedSource: a raw source is copied from its mapping, and a
// file truncated under the mapping is a clear error for both outputs,
// not a crash.
func TestCopyMappedSource(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "disk.raw")
	data := bytes.Repeat([]byte("mapped source! "), (8<<20)/15)
	data = append(data, make([]byte, 8<<20-len(data))...)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	whole := ReadPlan{Ranges: func(off, n int64) ([]Range, error) { return []Range{{off, n}}, nil }}
	for _, format := range []string{imagefmt.FormatQcow2, imagefmt.FormatRaw} {
		img, err := imagefmt.Open(src)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := img.(*raw.Image); !ok {
			t.Fatalf("%T is not a raw image", img)
		}
		out := filepath.Join(dir, "out."+format)
		if _, err := copyDisk(context.Background(), copySpec{src: img, plan: whole, out: out, format: format}); err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		back, err := imagefmt.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(data))
		if _, err := back.ReadAt(got, 0); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: copy differs from the source (%v)", format, err)
		}
		back.Close()

		// Truncated under the mapping.
		if err := os.Truncate(src, 1<<20); err != nil {
			t.Fatal(err)
		}
		_, err = copyDisk(context.Background(), copySpec{src: img, plan: whole, out: out + ".2", format: format})
		if err == nil || !strings.Contains(err.Error(), "truncated") {
			t.Errorf("%s: copy of a truncated source: %v, want an error naming the truncation", format, err)
		}
		img.Close()
		os.WriteFile(src, data, 0o644)
	}
}
