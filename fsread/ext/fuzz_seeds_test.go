package ext

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmmount/vmmount/testimages"
)

// Fuzz seeds are three tiny images committed gzip-compressed under
// testdata/ (each a few KiB): ext4 with metadata_csum (an htree directory,
// a file with an extent tree block, an xattr block, symlinks), ext2 with
// block maps up to double indirect, and ext4 with inline_data.
// VMMOUNT_REGEN_FUZZ_SEEDS=1 go test -run TestRegenFuzzSeeds rebuilds them
// (root and a kernel mount needed).
var seedNames = []string{"ext4", "ext2", "inline"}

func TestRegenFuzzSeeds(t *testing.T) {
	if os.Getenv("VMMOUNT_REGEN_FUZZ_SEEDS") != "1" {
		t.Skip("set VMMOUNT_REGEN_FUZZ_SEEDS=1 to rebuild testdata/fuzz-*.img.gz")
	}
	testimages.RequireRoot(t)
	for _, c := range []struct {
		name string
		mkfs []string
	}{
		{"ext4", []string{"mkfs.ext4", "-b", "1024", "-N", "256", "-O", "metadata_csum,^resize_inode,^has_journal"}},
		{"ext2", []string{"mkfs.ext2", "-b", "1024", "-N", "128"}},
		{"inline", []string{"mkfs.ext4", "-b", "1024", "-N", "128", "-I", "512", "-O", "inline_data,^resize_inode,^has_journal"}},
	} {
		img := filepath.Join(t.TempDir(), "img")
		if err := testimages.Truncate(img, 640<<10); err != nil {
			t.Fatal(err)
		}
		args := append(c.mkfs[1:], "-q", "-F", "-E", "hash_seed=1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718", img)
		testimages.MustRun(t, c.mkfs[0], args...)
		err := withMount(img, "", func(mnt string) error { return seedTree(mnt, c.name) })
		if err != nil {
			t.Fatal(err)
		}
		testimages.MustRun(t, "e2fsck", "-fn", img)
		raw, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		var z bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
		zw.Write(raw)
		zw.Close()
		if z.Len() > 60<<10 {
			t.Fatalf("%s: %d bytes compressed, over the 64 KiB budget", c.name, z.Len())
		}
		if err := os.WriteFile(filepath.Join("testdata", "fuzz-"+c.name+".img.gz"), z.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func seedTree(mnt, kind string) error {
	big := filepath.Join(mnt, "dir")
	if err := os.Mkdir(big, 0o755); err != nil {
		return err
	}
	for i := range 60 {
		if err := os.WriteFile(filepath.Join(big, fmt.Sprintf("entry-with-a-longish-name-%03d", i)), []byte(fmt.Sprint(i)), 0o644); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(mnt, "small"), []byte("small file"), 0o644); err != nil {
		return err
	}
	fr, err := os.Create(filepath.Join(mnt, "frag"))
	if err != nil {
		return err
	}
	defer fr.Close()
	n := int64(20)
	if kind == "ext2" {
		n = 140 // 280 KiB: through the double indirect block
	}
	for i := int64(0); i < n; i++ {
		if _, err := fr.WriteAt([]byte(fmt.Sprintf("%08d", i)), i*2048); err != nil {
			return err
		}
	}
	x := filepath.Join(mnt, "xattrs")
	if err := os.WriteFile(x, []byte("x"), 0o644); err != nil {
		return err
	}
	for i := range 6 {
		if err := unix.Setxattr(x, fmt.Sprintf("user.a%d", i), bytes.Repeat([]byte{'v'}, 80), 0); err != nil {
			return err
		}
	}
	if err := os.Symlink("small", filepath.Join(mnt, "fast")); err != nil {
		return err
	}
	return os.Symlink(strings.Repeat("long/", 30), filepath.Join(mnt, "slow"))
}

var seedImages = sync.OnceValues(func() (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, n := range seedNames {
		z, err := os.ReadFile(filepath.Join("testdata", "fuzz-"+n+".img.gz"))
		if err != nil {
			return nil, err
		}
		zr, err := gzip.NewReader(bytes.NewReader(z))
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(zr)
		if err != nil {
			return nil, err
		}
		out[n] = b
	}
	return out, nil
})
