package extwrite

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmmount/vmmount/testimages"
)

// mkfsImage makes a filesystem image of sizeMiB with mkfs and args, holding
// files (path -> content; a path ending in "/" is a directory).
func mkfsImage(t testing.TB, mkfs string, args []string, sizeMiB int64, files map[string]string) string {
	t.Helper()
	testimages.RequireTools(t, mkfs, "e2fsck", "debugfs")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	for p, c := range files {
		full := filepath.Join(tree, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "fs.img")
	if err := testimages.Truncate(img, sizeMiB<<20); err != nil {
		t.Fatal(err)
	}
	a := append([]string{"-q", "-F", "-E", "root_owner=0:0", "-d", tree}, args...)
	a = append(a, img)
	if out, err := exec.Command(mkfs, a...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", mkfs, a, err, out)
	}
	return img
}

// openImage opens an image file for a transaction.
func openImage(t testing.TB, img string) (*FS, *os.File) {
	t.Helper()
	fh, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	st, _ := fh.Stat()
	f, err := Open(fh, st.Size(), Options{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return f, fh
}

// apply writes a finished transaction into the image file.
func apply(t testing.TB, f *FS, img string) {
	t.Helper()
	if err := f.Finish(); err != nil {
		t.Fatal(err)
	}
	chs, err := f.Changes()
	if err != nil {
		t.Fatal(err)
	}
	if err := writeChanges(img, chs); err != nil {
		t.Fatal(err)
	}
}

func writeChanges(img string, chs []Change) error {
	w, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer w.Close()
	for _, c := range chs {
		buf := c.Data
		if !c.Metadata() {
			buf = make([]byte, c.Len)
			if _, err := c.Src.ReadAt(buf[:c.SrcLen], c.SrcOff); err != nil && err != io.EOF {
				return err
			}
		}
		if _, err := w.WriteAt(buf, c.Off); err != nil {
			return err
		}
	}
	return w.Sync()
}

// fsck runs e2fsck -fn and fails the test unless it finds nothing.
func fsck(t testing.TB, img, what string) {
	t.Helper()
	out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: e2fsck -fn: %v\n%s", what, err, out)
	}
}

// debugfs runs one debugfs request on the image.
func debugfs(t testing.TB, img, req string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", req, img).Output()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v", req, err)
	}
	return string(out)
}

// debugfsCat returns a file's content as debugfs reads it.
func debugfsCat(t testing.TB, img, path string) []byte {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, img).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s: %v", path, err)
	}
	return out
}

// content is an in-memory Content.
func content(b []byte) Content { return bytes.NewReader(b) }

func pattern(n, seed int) []byte { return testimages.Pattern(n, seed) }

// lookupPath resolves a slash path from the root in a transaction.
func lookupPath(f *FS, p string) (uint32, error) {
	ino := uint32(RootIno)
	for _, c := range strings.Split(strings.Trim(p, "/"), "/") {
		if c == "" || c == "." {
			continue
		}
		var err error
		if ino, err = f.Lookup(ino, c); err != nil {
			return 0, fmt.Errorf("%s: %w", p, err)
		}
	}
	return ino, nil
}

var testTime = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
