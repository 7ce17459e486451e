package restore

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vmmount/vmmount/testimages"
)

// hostileExt makes an ext4 image whose directory entries name what no
// kernel lets a program create: "..", ".", names with "/" and NUL, and
// a directory with the name of a symlink to outside. mkfs.ext4 -d writes
// placeholder names, then their bytes are patched in the directory block
// (ext4 linear directory entry: inode u32, rec_len u16, name_len u8,
// file_type u8, name; kernel Documentation/filesystems/ext4/directory.rst).
// No metadata_csum, so the patched blocks stay valid; no dir_index, so
// the directory is one linear block.
func hostileExt(t *testing.T, out string) string {
	t.Helper()
	testimages.RequireTools(t, "mkfs.ext4")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree", "d")
	os.MkdirAll(filepath.Join(tree, "FFFFFFFF"), 0o755)
	os.WriteFile(filepath.Join(tree, "FFFFFFFF", "pwned"), []byte("must stay inside DEST"), 0o644)
	for _, n := range []string{"AAAAAAAA", "BBBBBBBB", "CCCCCCCC", "DDDDDDDD", "GGGGGGGG", "keep.txt"} {
		os.WriteFile(filepath.Join(tree, n), []byte("content of "+strings.ToLower(n)), 0o644)
	}
	os.Symlink(out, filepath.Join(tree, "EEEEEEEE"))
	img := filepath.Join(dir, "hostile.img")
	if err := testimages.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	testimages.MustRun(t, "mkfs.ext4", "-q", "-F", "-O", "^metadata_csum,^dir_index", "-d", filepath.Join(dir, "tree"), img)
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	patch := func(old, name string) {
		i := bytes.Index(b, []byte(old))
		if i < 8 || bytes.Index(b[i+1:], []byte(old)) >= 0 || int(b[i-2]) != len(old) {
			t.Fatalf("placeholder %s not found once as a directory entry name", old)
		}
		b[i-2] = byte(len(name))
		copy(b[i:i+len(old)], name+strings.Repeat("\x00", len(old)-len(name)))
	}
	patch("AAAAAAAA", "../../xx")
	patch("BBBBBBBB", "a/b/c/dd")
	patch("CCCCCCCC", "..")
	patch("DDDDDDDD", "x\x00yyyyyy")
	patch("GGGGGGGG", ".")
	patch("FFFFFFFF", "EEEEEEEE")
	if err := os.WriteFile(img, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return img
}

func TestHostileExtImage(t *testing.T) {
	for _, policy := range []Existing{Refuse, Overwrite, Skip} {
		t.Run([]string{"refuse", "overwrite", "skip"}[policy], func(t *testing.T) {
			dest, out, check := outside(t)
			img := hostileExt(t, out)
			src, err := ImageSource(context.Background(), []string{img}, "raw")
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			items, _, err := src.Items([]string{"/fs/d"}, false)
			if err != nil {
				t.Fatal(err)
			}
			var log errLog
			sum, err := RestoreFiles(context.Background(), dest, items, FilesOptions{Existing: policy, OnError: log.add})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v; errors %q", *sum, log.errs)
			check()
			// The ext reader itself leaves out entries named "." and
			// ".." whatever their inode; the others reach the restore.
			for _, n := range []string{"../../xx", "a/b/c/dd", "x\x00yyyyyy"} {
				log.has(t, "/fs/d/"+n, ErrBadName)
			}
			if b, err := os.ReadFile(filepath.Join(dest, "d", "keep.txt")); err != nil || string(b) != "content of keep.txt" {
				t.Errorf("keep.txt: %q %v", b, err)
			}
			if got, err := os.Readlink(filepath.Join(dest, "d", "EEEEEEEE")); policy != Overwrite && (err != nil || got != out) {
				// Overwrite may have put the directory in its place.
				t.Errorf("symlink EEEEEEEE: %q %v", got, err)
			}
			var buf bytes.Buffer
			if _, err := WriteTar(context.Background(), &buf, items, TarOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
